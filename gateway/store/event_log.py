"""The event log: what happened to each caller's mail, appended in the transaction that made it happen, read by
WatchEvents in the order of `position`.

Positions are given after commit, by the sequencer (sequence()): a record committed later can never get a smaller
position than one a watcher has already read, which an id taken at insert time (a PostgreSQL sequence) would not
promise. Each sequencing transaction first locks the one event_position row, so sequencers of every process on the
database take turns and their positions follow their commit order.
"""

import datetime

import peewee
from peewee import Value

from gateway.core.states import EventType, MessageState
from gateway.store.database import database, insert_row, is_postgres, prepared, utcnow
from gateway.store.models import Contact, EventPosition, EventRecord, Message

LOG = "events"
BATCH = 1000  # records a sequencing transaction gives positions to, at most
RECORD_COLUMNS = (
    EventRecord.caller,
    EventRecord.type,
    EventRecord.message_id,
    EventRecord.request_id,
    EventRecord.contact_id,
    EventRecord.tenant,
    EventRecord.priority,
    EventRecord.state,
    EventRecord.previous_state,
    EventRecord.bounce_type,
    EventRecord.bounce_subtype,
    EventRecord.diagnostic,
    EventRecord.time,
    EventRecord.created_at,
)
# A failure's reason and description, for the records of the states a failure leads to.
FAILURE_TEXT = peewee.Case(
    None, [(Message.error_reason == "", "")], Message.error_reason.concat(": ").concat(Message.error_detail)
)
# What a caller sees of a dispatcher's hold on a message, or of its wait for send_at: it is still queued.
SHOWN_STATE = {
    MessageState.SENDING.value: MessageState.QUEUED.value,
    MessageState.SCHEDULED.value: MessageState.QUEUED.value,
}


def note_messages(
    where: peewee.Node,
    *,
    previous: str = "",
    type_: EventType | None = None,
    failure: bool = False,
    bounce: tuple[str, str, str] | None = None,
) -> int:
    """A record for each message `where` selects, as the message is now (after its change, in the same
    transaction): of type `type_`, else its state's; `previous` its state before (SENDING shows as QUEUED); the
    failure's text when `failure`; a bounce's (type, subtype, diagnostic)."""
    now = utcnow()
    bounce_type, bounce_subtype, diagnostic = bounce or ("", "", "")
    query = (
        Message.select(
            Message.caller,
            Value(type_.value) if type_ else Message.state,
            Message.message_id,
            peewee.fn.COALESCE(Message.request_id, ""),
            Contact.contact_id,
            Message.tenant,
            Message.priority,
            Message.state,
            Value(SHOWN_STATE.get(previous, previous)),
            Value(bounce_type[:32]),
            Value(bounce_subtype[:64]),
            FAILURE_TEXT if failure else Value(diagnostic[:500]),
            Value(now),
            Value(now),
        )
        .join(Contact)
        .where(where)
    )
    return EventRecord.insert_from(query, RECORD_COLUMNS).execute()


def note_contact(contact_pk: int, contact_id: str, type_: EventType, reason: str) -> int:
    """A record of a recipient's change for every caller that has mailed it (never naming another caller's
    message)."""
    now = utcnow()
    query = (
        Message.select(
            Message.caller,
            Value(type_.value),
            Value(""),
            Value(""),
            Value(contact_id),
            *[Value("")] * 5,  # tenant, state, previous_state, bounce_type, bounce_subtype
            Value(EventRecord.diagnostic.db_value(reason)),
            Value(now),
            Value(now),
        )
        .where(Message.contact == contact_pk)
        .distinct()
    )
    return EventRecord.insert_from(query, [c for c in RECORD_COLUMNS if c is not EventRecord.priority]).execute()


@prepared
def _give_position(pk, position):
    return EventRecord.update(position=position).where(EventRecord.id == pk)


def has_unsequenced() -> bool:
    """Whether a committed record waits for its position (one index probe; no lock taken)."""
    return EventRecord.select().where(EventRecord.position.is_null()).exists()


def sequence(limit: int = BATCH) -> int:
    """Positions for up to `limit` committed records that have none, in insert order, after the last one given: in
    a transaction of its own. How many."""
    if not is_postgres():
        return _sequence_one_writer(limit)
    with database.atomic():
        # The row lock first: another process's sequencer waits until this one commits.
        if not EventPosition.update(last=EventPosition.last).where(EventPosition.name == LOG).execute():
            insert_row(EventPosition, ignore_conflict=True, name=LOG)
            EventPosition.update(last=EventPosition.last).where(EventPosition.name == LOG).execute()
        last = EventPosition.select(EventPosition.last).where(EventPosition.name == LOG).scalar()
        waiting = (
            EventRecord.select(EventRecord.id)
            .where(EventRecord.position.is_null())
            .order_by(EventRecord.id)
            .limit(limit)
        )
        pks = [pk for (pk,) in waiting.tuples()]
        if not pks:
            return 0
        _give_position.executemany([{"pk": pk, "position": last + n} for n, pk in enumerate(pks, start=1)])
        EventPosition.update(last=last + len(pks)).where(EventPosition.name == LOG).execute()
    return len(pks)


def _sequence_one_writer(limit: int) -> int:
    """SQLite: one writer at a time, whose transaction (BEGIN IMMEDIATE) holds the write lock from its start, so the
    records without a position are the newest ids, all committed and consecutive: one UPDATE numbers them after the
    last position (a statement per record held the lock long enough to double the accept line's p99)."""
    with database.atomic():
        first = EventRecord.select(peewee.fn.MIN(EventRecord.id)).where(EventRecord.position.is_null()).scalar()
        if first is None:
            return 0
        insert_row(EventPosition, ignore_conflict=True, name=LOG)
        last = EventPosition.select(EventPosition.last).where(EventPosition.name == LOG).scalar()
        given = (
            EventRecord.update(position=EventRecord.id - first + last + 1)
            .where(EventRecord.position.is_null() & (EventRecord.id < first + limit))
            .execute()
        )
        EventPosition.update(last=last + given).where(EventPosition.name == LOG).execute()
    return given


def last_position() -> int:
    """The last position given (0 before any)."""
    return EventPosition.select(EventPosition.last).where(EventPosition.name == LOG).scalar() or 0


def oldest_position() -> int:
    """The smallest position still in the log; one past the last given when the log holds none."""
    oldest = EventRecord.select(peewee.fn.MIN(EventRecord.position)).scalar()
    return oldest if oldest is not None else last_position() + 1


def after(caller: str, position: int, *, limit: int, types: tuple[str, ...] = (), tenant: str = "") -> list:
    """The caller's records after `position`, in position order (the (caller, position) index)."""
    scope = (EventRecord.caller == caller) & (EventRecord.position > position)
    if types:
        scope &= EventRecord.type.in_(types)
    if tenant:
        scope &= EventRecord.tenant == tenant
    return list(EventRecord.select().where(scope).order_by(EventRecord.position).limit(limit))


def purge_batch(cutoff: datetime.datetime, limit: int = 1000) -> int:
    """Up to `limit` records that were given a position before `cutoff` (MAILGW_EVENT_RETENTION_DAYS), in a
    transaction of its own; how many."""
    with database.atomic():
        old = (
            EventRecord.select(EventRecord.id)
            .where((EventRecord.created_at < cutoff) & EventRecord.position.is_null(False))
            .order_by(EventRecord.id)
            .limit(limit)
        )
        return EventRecord.delete().where(EventRecord.id.in_(old)).execute()
