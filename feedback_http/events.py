"""SES event JSON (the Message inside an SNS notification) → which recipients move to which status.

Reads both configuration-set event publishing (`eventType`) and identity notifications
(`notificationType`). Pure: no database, no network. Fields we act on must be present and
well typed; optional ones (`mail`, `mail.tags`, `diagnosticCode`, `complaintFeedbackType`…)
may be missing, and unknown fields are ignored, since SES adds fields at any time.
"""

import json
from dataclasses import dataclass

from gateway.contacts import InvalidAddress, email_key
from gateway.models import ContactStatus

MAX_REASON = 500

# Recorded against the sent message by ses_message_id; no contact changes status.
RECORD_ONLY_TYPES = frozenset({"Delivery", "Send", "Reject", "DeliveryDelay", "Open", "Click", "Rendering Failure"})
KNOWN_TYPES = RECORD_ONLY_TYPES | {"Bounce", "Complaint", "Subscription"}

# The receiving side refused our message, not the address: never held against the recipient.
OUR_FAULT_SUBTYPES = frozenset({"MessageTooLarge", "ContentRejected", "AttachmentRejected"})


class MalformedEvent(ValueError):
    """The Message is not an SES event we can read."""


@dataclass(frozen=True)
class RecipientOutcome:
    """What one event means for one recipient."""

    email: str
    status: ContactStatus | None  # None: record only
    reason: str
    soft_bounce: bool = False  # counts toward an optional soft-bounce limit


@dataclass(frozen=True)
class SesEvent:
    """One SES event, reduced to what the sidecar stores and changes."""

    event_type: str
    ses_message_id: str | None
    contact_id: str | None
    outcomes: tuple[RecipientOutcome, ...]
    known: bool


def parse_ses_event(message: str) -> SesEvent:
    """Read the JSON text of an SNS `Message`; raise MalformedEvent when it is not an SES event."""
    try:
        event = json.loads(message)
    except (TypeError, ValueError, RecursionError):
        raise MalformedEvent("the Message is not JSON") from None
    if not isinstance(event, dict):
        raise MalformedEvent("the Message is not a JSON object")
    event_type = event["eventType"] if "eventType" in event else event.get("notificationType")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("neither eventType nor notificationType is a non-empty string")

    # Optional: SES's AmazonSnsSubscriptionSucceeded notice, for one, has no mail object.
    mail = _field(event, "mail", dict, required=False) or {}
    if event_type == "Bounce":
        outcomes = _bounce_outcomes(_field(event, "bounce", dict))
    elif event_type == "Complaint":
        outcomes = _complaint_outcomes(_field(event, "complaint", dict))
    elif event_type == "Subscription":
        outcomes = _subscription_outcomes(_field(event, "subscription", dict), mail)
    else:
        outcomes = []
    return SesEvent(
        event_type=event_type,
        ses_message_id=_text(mail, "messageId") or None,
        contact_id=_contact_id(mail),
        outcomes=_unique(outcomes),
        known=event_type in KNOWN_TYPES,
    )


def _bounce_outcomes(bounce: dict) -> list[tuple[str, ContactStatus | None, str, bool]]:
    bounce_type = _field(bounce, "bounceType", str)
    subtype = _text(bounce, "bounceSubType")
    kind = f"{bounce_type}/{subtype}" if subtype else bounce_type
    outcomes = []
    for recipient in _recipients(bounce, "bouncedRecipients"):
        # No DSN, no status: absent on some bounces (django-ses crashed on `.get("status").startswith`).
        dsn_status = _text(recipient, "status").strip()
        diagnostic = " ".join(_text(recipient, "diagnosticCode").split())
        reason = f"{kind}: {diagnostic}" if diagnostic else kind
        if bounce_type == "Permanent":
            status, soft = ContactStatus.BOUNCED, False
        elif bounce_type == "Transient" and subtype in OUR_FAULT_SUBTYPES:
            status, soft = None, False
        elif bounce_type == "Transient" and dsn_status.startswith("5."):
            # A permanent DSN (e.g. 5.4.4 invalid domain) that SES filed as transient.
            status, soft = ContactStatus.BOUNCED, False
        else:
            status, soft = None, True
        outcomes.append((recipient["emailAddress"], status, reason, soft))
    return outcomes


def _complaint_outcomes(complaint: dict) -> list[tuple[str, ContactStatus | None, str, bool]]:
    feedback_type = _text(complaint, "complaintFeedbackType")
    # not-spam: the recipient rescued the mail from a spam folder, the opposite of a complaint.
    status = None if feedback_type == "not-spam" else ContactStatus.COMPLAINED
    reason = f"Complaint/{feedback_type}" if feedback_type else "Complaint"
    return [(r["emailAddress"], status, reason, False) for r in _recipients(complaint, "complainedRecipients")]


def _subscription_outcomes(subscription: dict, mail: dict) -> list[tuple[str, ContactStatus | None, str, bool]]:
    preferences = _field(subscription, "newTopicPreferences", dict, required=False) or {}
    if preferences.get("unsubscribeAll") is not True:
        return []
    destination = _field(mail, "destination", list)
    if not all(isinstance(address, str) for address in destination):
        raise MalformedEvent("mail.destination is not a list of strings")
    return [
        (address, ContactStatus.UNSUBSCRIBED, "SES list management: unsubscribeAll", False) for address in destination
    ]


def _unique(outcomes: list[tuple[str, ContactStatus | None, str, bool]]) -> tuple[RecipientOutcome, ...]:
    """Normalised outcomes, first one per address; an address email_key rejects is skipped."""
    by_email: dict[str, RecipientOutcome] = {}
    for address, status, reason, soft in outcomes:
        try:
            email = email_key(address)
        except InvalidAddress:
            continue
        by_email.setdefault(email, RecipientOutcome(email, status, reason[:MAX_REASON], soft))
    return tuple(by_email.values())


def _recipients(obj: dict, key: str) -> list[dict]:
    recipients = _field(obj, key, list)
    if not all(isinstance(r, dict) and isinstance(r.get("emailAddress"), str) for r in recipients):
        raise MalformedEvent(f"{key} has an entry without a string emailAddress")
    return recipients


def _contact_id(mail: dict) -> str | None:
    # Event publishing returns our EmailTags as lists of strings; identity notifications carry no tags.
    tags = mail.get("tags")
    values = tags.get("contact_id") if isinstance(tags, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str) and values[0]:
        return values[0]
    return None


def _field(obj: dict, key: str, kind: type, *, required: bool = True):
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise MalformedEvent(f"{key} is missing or not a {kind.__name__}")
    return value


def _text(obj: dict, key: str) -> str:
    """An optional string field; missing or not a string reads as empty."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""
