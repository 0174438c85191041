"""The states of the domain: a contact's status (with its severity order) and who changes it, a message's state, the
reputation guard's level. The database stores them (store/models.py); everything else reads them from here."""

import enum


class ContactStatus(enum.StrEnum):
    """A recipient's mailing status; the order of SEVERITY decides which event wins."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def severity(self) -> int:
        return _SEVERITY.index(self)

    @property
    def suppressed(self) -> bool:
        return self is not ContactStatus.ACTIVE


_SEVERITY = [ContactStatus.ACTIVE, ContactStatus.UNSUBSCRIBED, ContactStatus.BOUNCED, ContactStatus.COMPLAINED]


class StatusSource(enum.StrEnum):
    """Who changed a contact's status: the `source` of its history row and of the status-change metric."""

    UNSUBSCRIBE_PAGE = "unsubscribe-page"  # the confirm button on the unsubscribe page
    ONE_CLICK = "one-click"  # a mail client's RFC 8058 POST (List-Unsubscribe=One-Click)
    UNSUBSCRIBE_LINK = "unsubscribe-link"  # a GET of the link, when MAILGW_UNSUBSCRIBE_ON_GET is on
    RECIPIENT = "recipient"  # the recipient's undo on the page (see store/contacts.py)
    # SES's account-level suppression list: the sync's import, or an SES event whose subtype is
    # OnAccountSuppressionList (the address was on the list; SES never tried it).
    SES_LIST = "ses-suppression-list"
    ADMIN = "admin"  # an operator, through the admin service
    IMPORT = "import"  # an operator's import (the admin service's ImportContacts)
    SES_BOUNCE = "ses:Bounce"  # SES events: the three types that change a status
    SES_COMPLAINT = "ses:Complaint"
    SES_SUBSCRIPTION = "ses:Subscription"

    @classmethod
    def of_ses_event(cls, event_type: str) -> "StatusSource":
        """The source of a status change an SES event of `event_type` makes; ValueError for a type that makes none."""
        source = _SES_EVENT_SOURCES.get(event_type)
        if source is None:
            raise ValueError(f"an SES {event_type!r} event changes no contact's status")
        return source


_SES_EVENT_SOURCES = {
    "Bounce": StatusSource.SES_BOUNCE,
    "Complaint": StatusSource.SES_COMPLAINT,
    "Subscription": StatusSource.SES_SUBSCRIPTION,
}


class MessageState(enum.StrEnum):
    """Where an accepted message is: waiting, in flight, or settled (see SETTLED)."""

    QUEUED = "queued"  # waiting for its first attempt, or for a retry after a failure that sent nothing
    SCHEDULED = "scheduled"  # waiting for its send_at (shown as QUEUED): then queued, its turn taken at that time
    SENDING = "sending"  # claimed by a dispatcher; due_at is when its lease ends
    SENT = "sent"  # SES accepted it
    UNKNOWN = "unknown"  # the request may have reached SES and no answer came; due_at is when it is sent again
    SUPPRESSED = "suppressed"  # the guard refused it at dispatch: the recipient opted out after acceptance
    FAILED = "failed"  # SES refused it for good
    EXPIRED = "expired"  # it could not be sent within MAILGW_MAX_MESSAGE_AGE_SECONDS
    DELIVERED = "delivered"  # SES events, in the order they can follow each other
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    CANCELLED = "cancelled"  # CancelMessage stopped it while it was queued

    @property
    def settled(self) -> bool:
        """Nothing more is sent: the body is deleted."""
        return self not in (MessageState.QUEUED, MessageState.SCHEDULED, MessageState.SENDING, MessageState.UNKNOWN)

    @property
    def shown(self) -> "MessageState":
        """The state the API shows: a wait for send_at is QUEUED to the caller."""
        return MessageState.QUEUED if self is MessageState.SCHEDULED else self


class ReputationLevel(enum.StrEnum):
    """What the reputation guard (sending/reputation.py) does to dispatch, for every gateway on the database."""

    NORMAL = "normal"  # full pace
    SLOWED = "slowed"  # a fraction of the pace, until the rates fall back below the first thresholds
    PAUSED = "paused"  # no sends, until an operator resumes


class Priority(enum.IntEnum):
    """How urgent a message is; the database stores the number, so the most urgent sorts first. The name (lower case)
    is what the caller policy, the EmailTag "priority" and metric labels say."""

    CRITICAL = 0  # password resets, sign-in codes, security notices
    TRANSACTIONAL = 1  # what a request without a priority is
    BULK = 2  # newsletters, digests: what the rate leaves

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, label: str) -> "Priority":
        """The priority a policy or a tag names ("critical"); ValueError for any other word."""
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"not a priority: {label!r} (critical, transactional or bulk)") from None


class EventType(enum.StrEnum):
    """What a record of the event log says happened (WatchEvents' EventType, lower case). A message's state change is
    its new state's name, so a statement can write the state as the type."""

    QUEUED = "queued"
    SENT = "sent"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    EXPIRED = "expired"
    DELIVERED = "delivered"
    DELIVERY_DELAYED = "delivery_delayed"
    BOUNCED = "bounced"
    SOFT_BOUNCED = "soft_bounced"
    COMPLAINED = "complained"
    REJECTED = "rejected"
    CONTACT_UNSUBSCRIBED = "contact_unsubscribed"
    CONTACT_BOUNCED = "contact_bounced"
    CONTACT_COMPLAINED = "contact_complained"
    CONTACT_REACTIVATED = "contact_reactivated"
    CANCELLED = "cancelled"

    @classmethod
    def of_contact_status(cls, status: ContactStatus) -> "EventType":
        return {
            ContactStatus.UNSUBSCRIBED: cls.CONTACT_UNSUBSCRIBED,
            ContactStatus.BOUNCED: cls.CONTACT_BOUNCED,
            ContactStatus.COMPLAINED: cls.CONTACT_COMPLAINED,
        }.get(status, cls.CONTACT_REACTIVATED)
