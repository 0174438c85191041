"""The send queue: messages SendEmail accepted, claimed by dispatchers under a lease, settled by SES's answers and
events. Every state change of a message is one statement here."""

import datetime
import re
import secrets
from dataclasses import dataclass

import peewee

from gateway.store.database import database, insert_row, is_postgres, prepared, utcnow
from gateway.store.models import Contact, FeedbackEvent, Message, MessageState

QUEUED, SENDING, SENT, UNKNOWN = MessageState.QUEUED, MessageState.SENDING, MessageState.SENT, MessageState.UNKNOWN
# The EmailTag every message carries, so each SES event about it names it.
MESSAGE_TAG = "message_id"
# Ids the gateway gives ("msg_" + 128 random bits); ids carried over from before the queue are SES's own.
MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,128}")
IN_FLIGHT = (QUEUED.value, SENDING.value, UNKNOWN.value)


def new_message_id() -> str:
    """Unguessable and URL-safe, so it can travel as an SES tag value and never names another caller's message."""
    return "msg_" + secrets.token_urlsafe(16)


def is_message_id(text: str) -> bool:
    return MESSAGE_ID.fullmatch(text) is not None


# --- accepting ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Earlier:
    """The message an earlier call with the same request_id was given."""

    message_id: str
    contact_id: str
    request_hash: str | None


def enqueue(*, contact: Contact, caller: str, request_id: str | None, request_hash: str | None, payload: str) -> str:
    """A new queued message, due now; its message_id. IntegrityError when (caller, request_id) exists already."""
    message_id, now = new_message_id(), utcnow()
    with database.atomic():
        insert_row(
            Message,
            message_id=message_id,
            contact=contact.id,
            caller=caller,
            request_id=request_id,
            request_hash=request_hash,
            payload=payload,
            due_at=now,
            created_at=now,
            updated_at=now,
        )
    return message_id


@prepared
def _by_request():
    return (
        Message.select(Message.message_id, Contact.contact_id, Message.request_hash)
        .join(Contact)
        .where((Message.caller == "") & (Message.request_id == ""))
    )


def by_request(caller: str, request_id: str) -> Earlier | None:
    row = database.execute_sql(_by_request(), (caller, request_id)).fetchone()
    return Earlier(*row) if row else None


def for_caller(message_id: str, caller: str) -> Message | None:
    """A message by its id, only for the caller that sent it (another caller's id reads as unknown)."""
    return (
        Message.select(Message, Contact.contact_id)
        .join(Contact)
        .where((Message.message_id == message_id) & (Message.caller == caller))
        .get_or_none()
    )


def events_of(message: Message) -> list[FeedbackEvent]:
    return list(message.events.order_by(FeedbackEvent.received_at, FeedbackEvent.id))


# --- dispatching ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A message a dispatcher holds under a lease until it records the outcome."""

    pk: int
    message_id: str
    contact_pk: int
    payload: str | None
    attempts: int
    created_at: datetime.datetime


CLAIMED_COLUMNS = (
    Message.id,
    Message.message_id,
    Message.contact,
    Message.payload,
    Message.attempts,
    Message.created_at,
)


def claim(limit: int, *, lease_seconds: float, worker: str) -> list[Claimed]:
    """Up to `limit` due queued messages, oldest due first, now SENDING under a lease held by `worker`.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so replicas claiming at once take different rows. SQLite: the statement
    runs under its single writer lock (BEGIN IMMEDIATE). Either way the subquery reads only due queued rows through
    the (state, due_at) index, however many settled rows the table holds.
    """
    now = utcnow()
    lease_end = now + datetime.timedelta(seconds=lease_seconds)
    due = Message.select(Message.id).where((Message.state == QUEUED) & (Message.due_at <= now))
    due = due.order_by(Message.due_at).limit(limit)
    if is_postgres():
        due = due.for_update("FOR UPDATE SKIP LOCKED")
    query = (
        Message.update(state=SENDING, due_at=lease_end, claimed_by=worker, updated_at=now)
        .where(Message.id.in_(due))
        .returning(*CLAIMED_COLUMNS)
    )
    with database.atomic():
        rows = list(query.tuples().execute())
    return [Claimed(*row) for row in rows]


def release(pks: list[int]) -> None:
    """Claimed messages this dispatcher will not attempt after all (it is stopping): due again at once."""
    if pks:
        now = utcnow()
        Message.update(state=QUEUED, due_at=now, claimed_by=None, updated_at=now).where(
            Message.id.in_(pks) & (Message.state == SENDING)
        ).execute()


def record_sent(pk: int, ses_message_id: str) -> None:
    """SES took it: SENT (unless an event settled it further already), the body deleted."""
    now = utcnow()
    Message.update(
        state=peewee.Case(None, [(Message.state.in_(IN_FLIGHT), SENT.value)], Message.state),
        ses_message_id=ses_message_id,
        attempts=Message.attempts + 1,
        payload=None,
        claimed_by=None,
        updated_at=now,
        settled_at=now,
    ).where(Message.id == pk).execute()


def record_outcome(
    pk: int,
    state: MessageState,
    *,
    reason: str,
    ses_error_code: str = "",
    detail: str = "",
    due_at: datetime.datetime | None = None,
    attempted: bool = True,
) -> None:
    """Any outcome but success: the new state, the failure as GetMessage shows it, when the message is due next.
    A message that an SES event settled meanwhile keeps that state."""
    now = utcnow()
    changes = {
        Message.state: state,
        Message.error_reason: reason,
        Message.error_code: ses_error_code,
        Message.error_detail: detail,
        Message.attempts: Message.attempts + int(attempted),
        Message.claimed_by: None,
        Message.updated_at: now,
        Message.due_at: due_at or now,
    }
    if state.settled:
        changes |= {Message.payload: None, Message.settled_at: now}
    Message.update(changes).where((Message.id == pk) & Message.state.in_(IN_FLIGHT)).execute()


# --- housekeeping -------------------------------------------------------------------------------------------


def end_expired_leases(*, reason: str, detail: str, resend_at: datetime.datetime) -> int:
    """Messages whose dispatcher died holding them: the SES call may have been made, so UNKNOWN (not retried)."""
    now = utcnow()
    return (
        Message.update(
            state=UNKNOWN,
            attempts=Message.attempts + 1,
            error_reason=reason,
            error_code="",
            error_detail=detail,
            due_at=resend_at,
            claimed_by=None,
            updated_at=now,
        )
        .where((Message.state == SENDING) & (Message.due_at <= now))
        .execute()
    )


def queue_unknown_for_resend() -> int:
    """UNKNOWN messages whose resend time came and that no event settled: queued once more (at most once)."""
    now = utcnow()
    return (
        Message.update(state=QUEUED, resends=Message.resends + 1, due_at=now, updated_at=now)
        .where(
            (Message.state == UNKNOWN)
            & (Message.due_at <= now)
            & (Message.resends == 0)
            & Message.payload.is_null(False)
        )
        .execute()
    )


def expire_older_than(created_before: datetime.datetime, *, reason: str) -> int:
    """Queued messages past their maximum age, however long they waited (a paused queue, say): EXPIRED."""
    now = utcnow()
    return (
        Message.update(
            state=MessageState.EXPIRED,
            error_reason=reason,
            error_detail="not sent within MAILGW_MAX_MESSAGE_AGE_SECONDS",
            payload=None,
            updated_at=now,
            settled_at=now,
        )
        .where((Message.state == QUEUED) & (Message.created_at <= created_before))
        .execute()
    )


def purge_settled_before(cutoff: datetime.datetime) -> int:
    """Settled messages, and unknown ones no event settled, past their retention: deleted, with the feedback events
    of that age. Contacts and their history stay: they are the suppression list."""
    stale_unknown = (Message.state == UNKNOWN) & (Message.updated_at < cutoff)
    with database.atomic():
        messages = Message.delete().where((Message.settled_at < cutoff) | stale_unknown).execute()
        FeedbackEvent.delete().where(FeedbackEvent.received_at < cutoff).execute()
    return messages


# --- SES events ----------------------------------------------------------------------------------------------

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
    now = utcnow()
    changes = {
        Message.state: state,
        Message.payload: None,
        Message.claimed_by: None,
        Message.updated_at: now,
        Message.settled_at: peewee.fn.COALESCE(Message.settled_at, now),
    }
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


def find_for_event(message_id: str | None, ses_message_id: str | None) -> int | None:
    """The queued message an SES event is about: by the message-id tag it carries, else by SES's message id."""
    if message_id:
        row = Message.select(Message.id).where(Message.message_id == message_id).tuples().first()
        if row:
            return row[0]
    if ses_message_id:
        row = Message.select(Message.id).where(Message.ses_message_id == ses_message_id).tuples().first()
        if row:
            return row[0]
    return None
