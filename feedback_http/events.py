"""SES event JSON (the Message inside an SNS notification) → which recipients move to which status.

Reads both configuration-set event publishing (`eventType`) and identity notifications
(`notificationType`). Pure: no database, no network. Fields we act on must be present and
well typed; optional ones (`mail`, `mail.tags`, `diagnosticCode`, `complaintFeedbackType`…)
may be missing, and unknown fields are ignored, since SES adds fields at any time.
"""

import json
from dataclasses import dataclass, replace

from gateway.core.addresses import MAX_ADDRESS_FIELD, InvalidAddress, email_key
from gateway.core.ids import is_contact_id, is_token
from gateway.store.contacts import CONTACT_TAG
from gateway.store.models import ContactStatus, MessageState
from gateway.store.queue import MESSAGE_TAG

# Events that change no contact's status (a Delivery ends a run of soft bounces); each still settles its message.
RECORD_ONLY_TYPES = frozenset({"Delivery", "Send", "Reject", "DeliveryDelay", "Open", "Click", "Rendering Failure"})
KNOWN_TYPES = RECORD_ONLY_TYPES | {"Bounce", "Complaint", "Subscription"}

# The receiving side refused our message, not the address: never held against the recipient.
OUR_FAULT_SUBTYPES = frozenset({"MessageTooLarge", "ContentRejected", "AttachmentRejected"})
# The bounce subtype (and complaint subtype) of a message SES accepted and never tried to deliver, because the address
# is on the account-level suppression list: the list, not the mailbox, is what refused it.
ON_ACCOUNT_SUPPRESSION_LIST = "OnAccountSuppressionList"


class MalformedEvent(ValueError):
    """The Message is not an SES event we can read."""


@dataclass(frozen=True)
class RecipientOutcome:
    """What one event means for one recipient."""

    email: str  # the recipient as SES reports it: for a bounce, the DSN's final recipient, not always the one we mailed
    status: ContactStatus | None  # None: record only
    reason: str
    soft_bounce: bool = False  # one more in a row toward the optional soft-bounce limit
    delivered: bool = False  # a delivery ends a run of soft bounces
    on_ses_list: bool = False  # SES's account suppression list refused it: the status is that list's


@dataclass(frozen=True)
class SesEvent:
    """One SES event, reduced to what the sidecar stores and changes."""

    event_type: str
    ses_message_id: str | None
    message_id: str | None  # our EmailTag: the gateway's id of the message
    contact_id: str | None  # our EmailTag: the contact the message was sent to
    message_state: MessageState | None  # what the event proves about the message (None: nothing)
    message_error: str  # why SES rejected the message, for a Reject
    destination: tuple[str, ...]  # mail.destination, normalised: the envelope recipients the message was sent to
    outcomes: tuple[RecipientOutcome, ...]
    unreadable: tuple[tuple[str, str], ...]  # (address, why) for each reported address the validator refuses
    known: bool
    bounce: tuple[str, str, str] = ("", "", "")  # a Bounce's bounceType, bounceSubType, first diagnosticCode


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
    elif event_type == "Delivery":
        outcomes = _delivery_outcomes(event.get("delivery"))
    else:
        outcomes = []
    unreadable: list[tuple[str, str]] = []
    destination = mail.get("destination")
    destination = [a for a in destination if isinstance(a, str)] if isinstance(destination, list) else []
    ses_message_id = _text(mail, "messageId")
    outcomes = _unique(outcomes, unreadable)
    reject = event.get("reject")
    return SesEvent(
        event_type=event_type,
        ses_message_id=ses_message_id if is_token(ses_message_id) else None,  # else not one to look up
        message_id=_tag(mail, MESSAGE_TAG, is_token),
        contact_id=_tag(mail, CONTACT_TAG, is_contact_id),
        message_state=_message_state(event_type, outcomes),
        message_error=_text(reject, "reason") if isinstance(reject, dict) else "",
        destination=tuple(_normalised(destination, unreadable)),
        outcomes=outcomes,
        unreadable=tuple(dict.fromkeys(unreadable)),
        known=event_type in KNOWN_TYPES,
        bounce=_bounce_kind(event.get("bounce")) if event_type == "Bounce" else ("", "", ""),
    )


def _bounce_kind(bounce: dict) -> tuple[str, str, str]:
    """bounceType, bounceSubType and the first recipient's diagnosticCode (whitespace folded), as SES wrote them."""
    recipients = bounce.get("bouncedRecipients") or [{}]
    diagnostic = " ".join(_text(recipients[0], "diagnosticCode").split())
    return _text(bounce, "bounceType"), _text(bounce, "bounceSubType"), diagnostic


def _bounce_outcomes(bounce: dict) -> list[RecipientOutcome]:
    bounce_type = _field(bounce, "bounceType", str)
    subtype = _text(bounce, "bounceSubType")
    kind = f"{bounce_type}/{subtype}" if subtype else bounce_type
    outcomes = []
    for recipient in _recipients(bounce, "bouncedRecipients"):
        # No DSN, no status: absent on some bounces (django-ses crashed on `.get("status").startswith`).
        dsn_status = _text(recipient, "status").strip()
        diagnostic = " ".join(_text(recipient, "diagnosticCode").split())
        reason = f"{kind}: {diagnostic}" if diagnostic else kind
        if subtype == ON_ACCOUNT_SUPPRESSION_LIST or bounce_type == "Permanent":
            # OnAccountSuppressionList whatever the bounce type: the address is on the list, so every message to it
            # is dropped until it comes off (a reactivation does that).
            status, soft = ContactStatus.BOUNCED, False
        elif bounce_type == "Transient" and subtype in OUR_FAULT_SUBTYPES:
            status, soft = None, False
        elif bounce_type == "Transient" and dsn_status.startswith("5."):
            # A permanent DSN (e.g. 5.4.4 invalid domain) that SES filed as transient.
            status, soft = ContactStatus.BOUNCED, False
        else:
            status, soft = None, True
        on_list = subtype == ON_ACCOUNT_SUPPRESSION_LIST
        outcomes.append(
            RecipientOutcome(recipient["emailAddress"], status, reason, soft_bounce=soft, on_ses_list=on_list)
        )
    return outcomes


def _complaint_outcomes(complaint: dict) -> list[RecipientOutcome]:
    feedback_type = _text(complaint, "complaintFeedbackType")
    on_list = _text(complaint, "complaintSubType") == ON_ACCOUNT_SUPPRESSION_LIST
    # not-spam: the recipient rescued the mail from a spam folder, the opposite of a complaint.
    status = None if feedback_type == "not-spam" and not on_list else ContactStatus.COMPLAINED
    kind = ON_ACCOUNT_SUPPRESSION_LIST if on_list else feedback_type
    reason = f"Complaint/{kind}" if kind else "Complaint"
    return [
        RecipientOutcome(r["emailAddress"], status, reason, on_ses_list=on_list)
        for r in _recipients(complaint, "complainedRecipients")
    ]


def _subscription_outcomes(subscription: dict, mail: dict) -> list[RecipientOutcome]:
    preferences = _field(subscription, "newTopicPreferences", dict, required=False) or {}
    if preferences.get("unsubscribeAll") is not True:
        return []
    destination = _field(mail, "destination", list)
    if not all(isinstance(address, str) for address in destination):
        raise MalformedEvent("mail.destination is not a list of strings")
    reason = "SES list management: unsubscribeAll"
    return [RecipientOutcome(address, ContactStatus.UNSUBSCRIBED, reason) for address in destination]


def _delivery_outcomes(delivery) -> list[RecipientOutcome]:
    # Read when well formed, never a reason to refuse the notification: a delivery changes no status.
    recipients = delivery.get("recipients") if isinstance(delivery, dict) else None
    if not isinstance(recipients, list):
        return []
    return [RecipientOutcome(r, None, "Delivery", delivered=True) for r in recipients if isinstance(r, str)]


def _unique(outcomes: list[RecipientOutcome], unreadable: list[tuple[str, str]]) -> tuple[RecipientOutcome, ...]:
    """Outcomes with normalised addresses, the first one per address; an address the validator refuses goes to
    `unreadable` instead."""
    by_email: dict[str, RecipientOutcome] = {}
    for outcome in outcomes:
        for email in _normalised([outcome.email], unreadable):
            if email not in by_email:
                by_email[email] = replace(outcome, email=email)
    return tuple(by_email.values())


def _normalised(addresses: list[str], unreadable: list[tuple[str, str]]) -> list[str]:
    keys = []
    for address in addresses:
        try:
            keys.append(email_key(address))
        except InvalidAddress as exc:
            unreadable.append((address[:MAX_ADDRESS_FIELD], str(exc)))
    return keys


def _recipients(obj: dict, key: str) -> list[dict]:
    recipients = _field(obj, key, list)
    if not all(isinstance(r, dict) and isinstance(r.get("emailAddress"), str) for r in recipients):
        raise MalformedEvent(f"{key} has an entry without a string emailAddress")
    return recipients


def _tag(mail: dict, name: str, valid) -> str | None:
    # Event publishing returns our EmailTags as lists of strings; identity notifications carry no tags.
    tags = mail.get("tags")
    values = tags.get(name) if isinstance(tags, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str) and valid(values[0]):
        return values[0]
    return None


# What an event proves about the message it reports on; a bounce or complaint only when it changes a contact.
MESSAGE_STATES = {"Send": MessageState.SENT, "Delivery": MessageState.DELIVERED, "Reject": MessageState.FAILED}


def _message_state(event_type: str, outcomes: tuple[RecipientOutcome, ...]) -> MessageState | None:
    statuses = {outcome.status for outcome in outcomes}
    if event_type == "Bounce" and ContactStatus.BOUNCED in statuses:
        return MessageState.BOUNCED
    if event_type == "Complaint" and ContactStatus.COMPLAINED in statuses:
        return MessageState.COMPLAINED
    return MESSAGE_STATES.get(event_type)


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
