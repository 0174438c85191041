"""What SES's events do to the messages they are about: found by the message-id tag (else SES's id), moved forward
only. The sidecar's feedback (feedback_http/feedback.py) is the one caller."""

import peewee

from gateway.store.database import database, prepared, utcnow
from gateway.store.models import Message, MessageState
from gateway.store.queue import SENT, settled_changes

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


def settle_by_event(pk: int, state: MessageState, ses_message_id: str | None, *, detail: str = "") -> None:
    """Move a message to the state an SES event proves (one of EVENT_RANKS), if that is a step forward; a Reject's
    reason (`detail`) becomes the message's last error."""
    earlier = [s.value for s in MessageState if EVENT_RANKS.get(s, 0) < EVENT_RANKS[state]]
    changes = {Message.state: state} | settled_changes(utcnow(), keep_settled_at=True)
    if state is MessageState.FAILED:
        changes |= {Message.error_reason: "SES_REJECTED", Message.error_code: "", Message.error_detail: detail}
    scope = (Message.id == pk) & Message.state.in_(earlier)
    if ses_message_id:
        with_id = changes | {Message.ses_message_id: peewee.fn.COALESCE(Message.ses_message_id, ses_message_id)}
        try:
            with database.atomic():  # a savepoint, so a failed attempt leaves the transaction usable
                Message.update(with_id).where(scope).execute()
            return
        except peewee.IntegrityError:
            pass  # another message holds that SES id: settle this one without it rather than lose the event
    Message.update(changes).where(scope).execute()


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
