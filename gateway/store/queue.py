"""The send queue: messages SendEmail accepted, claimed by dispatchers under a lease, settled by SES's answers and
events. Every state change of a message is one statement here."""

import contextlib
import datetime
from dataclasses import dataclass

import peewee

from gateway.core.ids import new_message_id
from gateway.core.states import Priority
from gateway.store import lanes, tenants
from gateway.store.database import database, database_now, is_postgres, prepared, utcnow
from gateway.store.models import Contact, FeedbackEvent, Message, MessageAttachment, MessageState

QUEUED, SENDING, SENT, UNKNOWN = MessageState.QUEUED, MessageState.SENDING, MessageState.SENT, MessageState.UNKNOWN
SCHEDULED, CANCELLED = MessageState.SCHEDULED, MessageState.CANCELLED
# The EmailTag every message carries, so each SES event about it names it.
MESSAGE_TAG = "message_id"
# Its lane, so every SES event names it too: the priority's name, and the tenant (absent when there is none).
PRIORITY_TAG, TENANT_TAG = "priority", "tenant"
IN_FLIGHT = tuple(state.value for state in MessageState if not state.settled)  # queued, sending, unknown


# --- accepting ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Earlier:
    """The message an earlier call with the same request_id was given."""

    message_id: str
    contact_id: str
    request_hash: str | None


def enqueue(
    *,
    contact_pk: int,
    caller: str,
    request_id: str | None,
    request_hash: str | None,
    payload: str,
    priority: int = int(Priority.TRANSACTIONAL),
    tenant: str = "",
    send_at: datetime.datetime | None = None,
    attachments: tuple = (),
) -> str:
    """A new queued message, due now, in the lane of its priority and caller, its turn after its tenant's last one
    (store/lanes.py); or, with a `send_at` still ahead, SCHEDULED until then (promote_due gives it its turn). Its
    message_id; IntegrityError when (caller, request_id) exists already.

    One INSERT, committed on its own: the message and its request id are one row, and the database's trigger appends
    its QUEUED record to the event log in the same statement (models.queued_records_by_trigger)."""
    lanes.ensure(priority, caller)
    if tenant:
        tenants.ensure(tenant)
    message_id, now = new_message_id(), database_now()
    row = {
        "message_id": message_id,
        "contact": contact_pk,
        "caller": caller,
        "request_id": request_id,
        "request_hash": request_hash,
        "payload": payload,
        "priority": priority,
        "tenant": tenant,
        "now": now,
    }
    with database.atomic() if attachments else contextlib.nullcontext():  # the message and its files, or neither
        if send_at is not None and send_at > now:
            _schedule(**row, send_at=send_at)
        else:
            _insert(**row)
        if attachments:
            pk = Message.select(Message.id).where(Message.message_id == message_id).scalar()
            MessageAttachment.insert_many(
                [
                    {
                        "message": pk,
                        "number": number,
                        "filename": attachment.filename,
                        "content_type": attachment.content_type,
                        "content_id": attachment.content_id,
                        "content": attachment.content,
                    }
                    for number, attachment in enumerate(attachments)
                ]
            ).execute()
    return message_id


def attachments_of(pk: int) -> list[tuple[str, str, bytes, str]]:
    """A queued message's files, in their order: (filename, content_type, content, content_id) each."""
    query = (
        MessageAttachment.select(
            MessageAttachment.filename,
            MessageAttachment.content_type,
            MessageAttachment.content,
            MessageAttachment.content_id,
        )
        .where(MessageAttachment.message == pk)
        .order_by(MessageAttachment.number)
    )
    return [(name, kind, bytes(content), content_id) for name, kind, content, content_id in query.tuples()]


@prepared
def _insert(message_id, contact, caller, request_id, request_hash, payload, priority, tenant, now):
    return Message.insert(
        message_id=message_id,
        contact=contact,
        caller=caller,
        request_id=request_id,
        request_hash=request_hash,
        payload=payload,
        priority=priority,
        tenant=tenant,
        turn=lanes.next_turn(priority, caller, tenant),
        held=tenants.held(tenant),  # a held tenant's new mail waits with the rest of it
        state=peewee.SQL(f"'{QUEUED.value}'"),
        due_at=now,
        created_at=now,
        updated_at=now,
    )


@prepared
def _schedule(message_id, contact, caller, request_id, request_hash, payload, priority, tenant, now, send_at):
    return Message.insert(
        message_id=message_id,
        contact=contact,
        caller=caller,
        request_id=request_id,
        request_hash=request_hash,
        payload=payload,
        priority=priority,
        tenant=tenant,
        state=peewee.SQL(f"'{SCHEDULED.value}'"),
        due_at=send_at,
        send_at=send_at,
        created_at=now,
        updated_at=now,
    )


def promote_due(now: datetime.datetime, limit: int = 1000) -> int:
    """Scheduled messages whose send_at came: QUEUED, each taking its turn now, as a message accepted now would (a
    turn taken at acceptance would put a tenant's new mail behind its scheduled mail, and the scheduled mail, once
    due, ahead of everyone's), in send_at order; held when its tenant is. How many, in a transaction of its own
    (begun only when one is due: on SQLite a transaction takes the write lock)."""
    came = (Message.state == SCHEDULED) & (Message.due_at <= now)
    if not Message.select().where(came).exists():
        return 0
    with database.atomic():
        due = (
            Message.select(Message.id, Message.priority, Message.caller, Message.tenant)
            .where(came)
            .order_by(Message.due_at, Message.id)
            .limit(limit)
        )
        if is_postgres():
            due = due.for_update("FOR UPDATE SKIP LOCKED")
        lanes_of: dict[tuple[int, str, str], list[int]] = {}
        for pk, priority, caller, tenant in due.tuples():
            lanes_of.setdefault((priority, caller, tenant), []).append(pk)
        for (priority, caller, tenant), pks in lanes_of.items():
            first, step = lanes.turns_from(priority, caller, tenant)
            _promote.executemany([{"pk": pk, "turn": first + n * step, "now": now} for n, pk in enumerate(pks)])
    return sum(len(pks) for pks in lanes_of.values())


@prepared
def _promote(pk, turn, now):
    return Message.update(state=QUEUED, turn=turn, held=tenants.held(Message.tenant), due_at=now, updated_at=now).where(
        (Message.id == pk) & (Message.state == SCHEDULED)
    )


@prepared
def _by_request(caller, request_id):
    return (
        Message.select(Message.message_id, Contact.contact_id, Message.request_hash)
        .join(Contact)
        .where((Message.caller == caller) & (Message.request_id == request_id))
    )


def by_request(caller: str, request_id: str) -> Earlier | None:
    row = _by_request(caller=caller, request_id=request_id).fetchone()
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
    resends: int
    priority: int
    tenant: str
    turn: int
    ready_at: datetime.datetime  # when it could first be sent: accepted, or its send_at; its age counts from here


CLAIMED_COLUMNS = (
    Message.id,
    Message.message_id,
    Message.contact,
    Message.payload,
    Message.attempts,
    Message.resends,
    Message.priority,
    Message.tenant,
    Message.turn,
    lanes.READY_AT,
)


def _claiming(priority, caller, now, lease_end, worker, limit, *, ses_tenants: bool):
    condition = (
        lanes.IS_QUEUED
        & lanes.NOT_HELD
        & (Message.priority == priority)
        & (Message.caller == caller)
        & (Message.due_at <= now)
        & ~tenants.held(Message.tenant)  # one accepted as its tenant was paused, before it was held
    )
    if ses_tenants:
        condition &= tenants.sendable_in_ses(Message.tenant)
    due = Message.select(Message.id).where(condition).order_by(Message.turn, Message.id).limit(limit)
    if is_postgres():
        due = due.for_update("FOR UPDATE SKIP LOCKED")
    return (
        Message.update(state=SENDING, due_at=lease_end, claimed_by=worker, updated_at=now)
        .where(Message.id.in_(due))
        .returning(*CLAIMED_COLUMNS)
    )


@prepared
def _claim(priority, caller, now, lease_end, worker, limit):
    return _claiming(priority, caller, now, lease_end, worker, limit, ses_tenants=False)


@prepared
def _claim_through_ses_tenants(priority, caller, now, lease_end, worker, limit):
    return _claiming(priority, caller, now, lease_end, worker, limit, ses_tenants=True)


def claim(
    priority: int,
    caller: str,
    limit: int,
    *,
    now: datetime.datetime,
    lease_seconds: float,
    worker: str,
    ses_tenants: bool = False,
) -> list[Claimed]:
    """Up to `limit` due queued messages of one lane, in turn order, now SENDING under a lease held by `worker`
    (sending/order.py decides how many from which lane).

    PostgreSQL: FOR UPDATE SKIP LOCKED, so a row another transaction holds is passed over. SQLite: the statement
    runs under its single writer lock. Either way it reads only the lane's queued rows, through the
    (state, held, priority, caller, turn) index, however many settled rows the table holds. With `ses_tenants`
    (MAILGW_SES_TENANTS) a tenant's message is claimed only once SES's status of the tenant was read and allows it.
    """
    lease_end = now + datetime.timedelta(seconds=lease_seconds)
    statement = _claim_through_ses_tenants if ses_tenants else _claim
    rows = statement(priority=priority, caller=caller, now=now, lease_end=lease_end, worker=worker, limit=limit)
    created = Message.created_at.python_value
    return [Claimed(*row[:-1], ready_at=created(row[-1])) for row in rows.fetchall()]


def release(pks: list[int]) -> None:
    """Claimed messages this dispatcher will not attempt after all (it is stopping): due again at once."""
    if pks:
        now = utcnow()
        Message.update(state=QUEUED, due_at=now, claimed_by=None, updated_at=now).where(
            Message.id.in_(pks) & (Message.state == SENDING)
        ).execute()


def depth_by_state() -> dict[str, tuple[int, datetime.datetime | None]]:
    """In-flight state -> (messages, the oldest one's creation time), for the metrics. One statement that reads only
    in-flight rows through the (state, due_at) index: its cost grows with the queue, never with the settled history."""
    query = (
        Message.select(Message.state, peewee.fn.COUNT(Message.id), peewee.fn.MIN(lanes.READY_AT))
        .where(Message.state.in_(IN_FLIGHT))
        .group_by(Message.state)
    )
    created = Message.created_at.python_value
    return {str(state): (count, created(oldest)) for state, count, oldest in query.tuples()}
