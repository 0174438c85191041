"""What SES's events do to the messages they are about: found by the message-id tag (else SES's id), moved forward
only. The sidecar's feedback (feedback_http/feedback.py) is the one caller."""

import peewee

from gateway.core.states import EventType
from gateway.store import event_log
from gateway.store.database import database, is_postgres, prepared, utcnow
from gateway.store.models import Message, MessageState
from gateway.store.queue import SENT
from gateway.store.settling import settled_changes

# What an SES event proves about its message, in the order events can follow each other: an event only moves a
# message forward (a late Delivery does not undo a Complaint). States an event can find before it (queued, unknown,
# even suppressed or expired after an unknown first attempt) count 0: the event proves the message went out.
EVENT_RANKS = {
    SENT: 1,
    MessageState.DELIVERED: 2,
    MessageState.FAILED: 2,  # a Reject event: SES took the call, then refused the message
    MessageState.BOUNCED: 3,
    MessageState.COMPLAINED: 4,
}


def settle_by_event(pk: int, state: MessageState, ses_message_id: str | None, *, detail: str = "") -> bool:
    """Move a message to the state an SES event proves (one of EVENT_RANKS), if that is a step forward; a Reject's
    reason (`detail`) becomes the message's last error. Whether it moved."""
    earlier = [s.value for s in MessageState if EVENT_RANKS.get(s, 0) < EVENT_RANKS[state]]
    changes = {Message.state: state} | settled_changes(utcnow(), keep_settled_at=True)
    if state is MessageState.FAILED:
        changes |= {Message.error_reason: "SES_REJECTED", Message.error_code: "", Message.error_detail: detail}
    scope = (Message.id == pk) & Message.state.in_(earlier)
    if ses_message_id:
        with_id = changes | {Message.ses_message_id: peewee.fn.COALESCE(Message.ses_message_id, ses_message_id)}
        try:
            with database.atomic():  # a savepoint, so a failed attempt leaves the transaction usable
                return bool(Message.update(with_id).where(scope).execute())
        except peewee.IntegrityError:
            pass  # another message holds that SES id: settle this one without it rather than lose the event
    return bool(Message.update(changes).where(scope).execute())


# The event log's type for an SES event about a message (a Bounce: BOUNCED when it is a hard bounce, else
# SOFT_BOUNCED); the types with none (Open, Click, Subscription: a recipient's change) get no message record.
EVENT_TYPES = {
    "Send": EventType.SENT,
    "Delivery": EventType.DELIVERED,
    "DeliveryDelay": EventType.DELIVERY_DELAYED,
    "Complaint": EventType.COMPLAINED,
    "Reject": EventType.REJECTED,
    "Rendering Failure": EventType.FAILED,  # SES's spelling
}


def note_event(
    pk: int, event_type: str, *, hard_bounce: bool, previous: str, bounce: tuple[str, str, str], detail: str
) -> None:
    """The event log's record of an SES event about message `pk`; `previous`: its state before, when it moved."""
    if event_type == "Bounce":
        type_ = EventType.BOUNCED if hard_bounce else EventType.SOFT_BOUNCED
    elif event_type in EVENT_TYPES:
        type_ = EVENT_TYPES[event_type]
    else:
        return
    bounce = bounce if event_type == "Bounce" else ("", "", detail)
    event_log.note_messages(Message.id == pk, type_=type_, previous=previous, bounce=bounce)


def state_of(pk: int) -> str:
    """A message's state now (locked until the transaction ends, on PostgreSQL)."""
    query = Message.select(Message.state).where(Message.id == pk)
    return (query.for_update() if is_postgres() else query).scalar()


@prepared
def _message_by_id(message_id):
    return Message.select(Message.id).where(Message.message_id == message_id)


@prepared
def _message_by_ses_id(ses_message_id):
    return Message.select(Message.id).where(Message.ses_message_id == ses_message_id)


def find_for_event(message_id: str | None, ses_message_id: str | None) -> int | None:
    """The queued message an SES event is about: by the message-id tag it carries, else by SES's message id."""
    if message_id and (row := _message_by_id(message_id=message_id).fetchone()):
        return row[0]
    if ses_message_id and (row := _message_by_ses_id(ses_message_id=ses_message_id).fetchone()):
        return row[0]
    return None
