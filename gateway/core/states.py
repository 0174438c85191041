"""The states of the domain: a contact's status (with its severity order), a message's state, the reputation guard's
level. The database stores them (store/models.py); everything else reads them from here."""

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


class MessageState(enum.StrEnum):
    """Where an accepted message is: waiting, in flight, or settled (see SETTLED)."""

    QUEUED = "queued"  # waiting for its first attempt, or for a retry after a failure that sent nothing
    SENDING = "sending"  # claimed by a dispatcher; due_at is when its lease ends
    SENT = "sent"  # SES accepted it
    UNKNOWN = "unknown"  # the request may have reached SES and no answer came; due_at is when it is sent again
    SUPPRESSED = "suppressed"  # the guard refused it at dispatch: the recipient opted out after acceptance
    FAILED = "failed"  # SES refused it for good
    EXPIRED = "expired"  # it could not be sent within MAILGW_MAX_MESSAGE_AGE_SECONDS
    DELIVERED = "delivered"  # SES events, in the order they can follow each other
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def settled(self) -> bool:
        """Nothing more is sent: the body is deleted."""
        return self not in (MessageState.QUEUED, MessageState.SENDING, MessageState.UNKNOWN)


class ReputationLevel(enum.StrEnum):
    """What the reputation guard (sending/reputation.py) does to dispatch, for every gateway on the database."""

    NORMAL = "normal"  # full pace
    SLOWED = "slowed"  # a fraction of the pace, until the rates fall back below the first thresholds
    PAUSED = "paused"  # no sends, until an operator resumes
