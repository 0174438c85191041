"""The queue's upkeep, run by every dispatching replica's housekeeping loop (sending/housekeeping.py): leases of
dispatchers that died, the one resend of an unknown outcome, messages past their age, and the retention purge in
batches. Each is one idempotent statement (or one batch) however many replicas run it."""

import datetime

import peewee

from gateway.store import event_log
from gateway.store.database import database, database_now
from gateway.store.lanes import READY_AT
from gateway.store.models import FeedbackEvent, Message, MessageState
from gateway.store.queue import QUEUED, SENDING, UNKNOWN
from gateway.store.settling import settled_changes


def end_expired_leases(*, reason: str, detail: str, resend_after: datetime.timedelta) -> int:
    """Messages whose dispatcher died holding them: the SES call may have been made, so UNKNOWN (not retried)."""
    now = database_now()
    with database.atomic():
        ended = (
            Message.update(
                state=UNKNOWN,
                attempts=Message.attempts + 1,
                error_reason=reason,
                error_code="",
                error_detail=detail,
                due_at=now + resend_after,
                claimed_by=None,
                updated_at=now,
            )
            .where((Message.state == SENDING) & (Message.due_at <= now))
            .returning(Message.id)
        )
        return _noted(ended, previous=QUEUED, failure=True)


def _noted(update: peewee.Query, *, previous: MessageState, failure: bool = False) -> int:
    """Run `update` (which returns the ids it changed) and put a record of each change in the event log."""
    pks = [pk for (pk,) in update.tuples()]
    if pks:
        event_log.note_messages(Message.id.in_(pks), previous=previous.value, failure=failure)
    return len(pks)


def queue_unknown_for_resend(max_age: datetime.timedelta) -> int:
    """UNKNOWN messages whose resend time came and that no event settled: queued once more (at most once), while
    they are younger than `max_age`; older ones stay UNKNOWN."""
    now = database_now()
    with database.atomic():
        queued = (
            Message.update(state=QUEUED, resends=Message.resends + 1, due_at=now, updated_at=now)
            .where(
                (Message.state == UNKNOWN)
                & (Message.due_at <= now)
                & (Message.resends == 0)
                & Message.payload.is_null(False)
                & (READY_AT > now - max_age)
            )
            .returning(Message.id)
        )
        return _noted(queued, previous=UNKNOWN)


def expire_older_than(max_age: datetime.timedelta, *, reason: str) -> int:
    """Queued messages past their maximum age, however long they waited (a paused queue, say): EXPIRED. A resend
    after an unknown outcome goes back to UNKNOWN instead (its first request may have been delivered). The last
    failure stays the message's last error (SES_UNAVAILABLE says more than "too old"); one never tried gets
    `reason`, as the dispatcher's expiry of a retry that would come too late does (sending/dispatch.py)."""
    now = database_now()
    never_failed = Message.error_reason == ""
    changes = {
        Message.error_reason: peewee.Case(None, [(never_failed, reason)], Message.error_reason),
        Message.error_detail: peewee.Case(
            None, [(never_failed, "not sent within MAILGW_MAX_MESSAGE_AGE_SECONDS")], Message.error_detail
        ),
    }
    too_old = (Message.state == QUEUED) & (READY_AT <= now - max_age)
    with database.atomic():
        expired = (
            Message.update(changes | {Message.state: MessageState.EXPIRED} | settled_changes(now))
            .where(too_old & (Message.resends == 0))
            .returning(Message.id)
        )
        count = _noted(expired, previous=QUEUED, failure=True)
        unknown = (
            Message.update(changes | {Message.state: UNKNOWN, Message.updated_at: now})
            .where(too_old & (Message.resends > 0))
            .returning(Message.id)
        )
        _noted(unknown, previous=QUEUED, failure=True)
    return count


PURGE_BATCH = 1000  # rows a purge deletes per transaction: SQLite's write lock is held for one batch at a time


def purge_batch(cutoff: datetime.datetime, limit: int = PURGE_BATCH) -> int:
    """One batch of what is past its retention, in a transaction of its own: up to `limit` settled messages (and
    unknown ones no event settled), else up to `limit` feedback events of that age. The rows deleted; 0 when nothing
    is left. Contacts and their history stay: they are the suppression list."""
    stale = Message.select(Message.id).where(Message.settled_at < cutoff).limit(limit)
    unknown = Message.select(Message.id).where((Message.state == UNKNOWN) & (Message.updated_at < cutoff))
    events = FeedbackEvent.select(FeedbackEvent.id).where(FeedbackEvent.received_at < cutoff).limit(limit)
    with database.atomic():
        for model, due in ((Message, stale), (Message, unknown.limit(limit)), (FeedbackEvent, events)):
            # Ids first, then the rows by id: MySQL-style "DELETE ... LIMIT" is neither SQLite's default nor SQL.
            ids = [row[0] for row in due.tuples()]
            if ids:
                return model.delete().where(model.id.in_(ids)).execute()
    return 0
