"""How a claimed message's attempt ends, and every other way a message is settled: the outcomes the recorder writes
(sent, or the state a failure leads to), with their records in the event log, and a caller's cancel. Settling clears
the body (settled_changes), whose files a trigger deletes with it (models.files_go_with_the_payload)."""

import datetime
from dataclasses import dataclass

import peewee

from gateway.store import event_log, lanes, tenants
from gateway.store.database import database, database_now, prepared, utcnow
from gateway.store.models import Message, MessageState
from gateway.store.queue import CANCELLED, IN_FLIGHT, QUEUED, SENDING, SENT, UNKNOWN


@dataclass(frozen=True)
class AttemptOutcome:
    """What became of one claimed message: SENT with SES's id, or the state a failure leads to (failures.py)."""

    pk: int
    state: MessageState
    ses_message_id: str | None = None
    reason: str = ""
    ses_error_code: str = ""
    detail: str = ""
    due_at: datetime.datetime | None = None
    attempted: bool = True  # an SES call was made (or may have been)


def record_outcomes(outcomes: list[AttemptOutcome]) -> None:
    """Outcomes of many attempts in one transaction; the sends SES took in one executemany. A message an SES event
    settled meanwhile keeps that state (an event only moves a message forward)."""
    sent = [outcome for outcome in outcomes if outcome.state is SENT]
    try:
        with database.atomic():
            unknown = _unknown_among([outcome.pk for outcome in sent])
            _record_sent(sent)
            _record_failures(outcomes)
            _note(sent, unknown)
    except peewee.IntegrityError:  # an SES id another message holds (SES never reuses one): row by row instead
        with database.atomic():
            unknown = _unknown_among([outcome.pk for outcome in sent])
            _record_sent_one_by_one(sent)
            _record_failures(outcomes)
            _note(sent, unknown)


def _unknown_among(pks: list[int]) -> set[int]:
    """Those of the messages whose lease ended while SES was sending them (UNKNOWN since): their record's previous
    state is that, not QUEUED. Usually none; one primary-key lookup for the batch."""
    if not pks:
        return set()
    return {pk for (pk,) in Message.select(Message.id).where(Message.id.in_(pks) & (Message.state == UNKNOWN)).tuples()}


def _note(sent: list[AttemptOutcome], unknown: set[int]) -> None:
    """The event log's records of the sends SES took (record_outcome notes the failures' own). A message an SES event
    settled meanwhile kept its state, and gets none."""
    pks = [outcome.pk for outcome in sent]
    for previous, some in (
        (QUEUED, [pk for pk in pks if pk not in unknown]),
        (UNKNOWN, [pk for pk in pks if pk in unknown]),
    ):
        if some:
            event_log.note_messages(Message.id.in_(some) & (Message.state == SENT), previous=previous.value)


def _record_failures(outcomes: list[AttemptOutcome]) -> None:
    for outcome in outcomes:
        if outcome.state is not SENT:
            record_outcome(
                outcome.pk,
                outcome.state,
                reason=outcome.reason,
                ses_error_code=outcome.ses_error_code,
                detail=outcome.detail,
                due_at=outcome.due_at,
                attempted=outcome.attempted,
            )


@prepared
def _sent(pk, ses_message_id, now):
    """SES took the message: SENT, unless an SES event settled it meanwhile."""
    changes = {
        Message.state: peewee.Case(None, [(Message.state.in_(IN_FLIGHT), SENT.value)], Message.state),
        Message.ses_message_id: ses_message_id,
        Message.attempts: _one_more_attempt(),
        Message.sent_at: peewee.fn.COALESCE(Message.sent_at, now),
    }
    return Message.update(changes | settled_changes(now)).where(Message.id == pk)


def _record_sent(sent: list[AttemptOutcome]) -> None:
    if sent:
        now = utcnow()
        _sent.executemany(
            [{"pk": outcome.pk, "ses_message_id": outcome.ses_message_id, "now": now} for outcome in sent]
        )


def _record_sent_one_by_one(sent: list[AttemptOutcome]) -> None:
    """Each in a savepoint; one whose SES id another message holds (one carried over from before the queue, say) is
    recorded SENT without it rather than failing the others."""
    now = utcnow()
    for outcome in sent:
        try:
            with database.atomic():
                _sent(pk=outcome.pk, ses_message_id=outcome.ses_message_id, now=now)
        except peewee.IntegrityError:
            _sent(pk=outcome.pk, ses_message_id=None, now=now)


def _one_more_attempt(attempted: bool = True) -> peewee.Node:
    """The attempts after this one: one more, unless its lease ended meanwhile and end_expired_leases counted it."""
    return Message.attempts + peewee.Case(None, [(Message.state == SENDING, int(attempted))], 0)


def settled_changes(now, *, keep_settled_at: bool = False) -> dict:
    """The changes that settle a message at `now`: nothing more is sent, so its body goes and no dispatcher holds
    it. With `keep_settled_at`, a message settled already keeps its time (an SES event after the send: settled_at
    is when it was sent, which reputation.py counts by)."""
    settled_at = peewee.fn.COALESCE(Message.settled_at, now) if keep_settled_at else now
    return {Message.payload: NULL, Message.claimed_by: NULL, Message.updated_at: now, Message.settled_at: settled_at}


# NULL written into the statement, not bound: sqlite3 looks for an adapter for every bound None (~0.4 us each, 13 us
# in the recorder's executemany of 16 sends).
NULL = peewee.SQL("NULL")


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
        Message.attempts: _one_more_attempt(attempted),
        Message.claimed_by: None,
        Message.updated_at: now,
        Message.due_at: due_at or now,
    }
    if state.settled:
        changes |= settled_changes(now)
    elif state is QUEUED:
        changes[Message.held] = tenants.held(Message.tenant)  # its tenant was paused or disabled meanwhile
    previous = Message.select(Message.state).where(Message.id == pk).scalar()  # SENDING, or UNKNOWN: its lease ended
    changed = Message.update(changes).where((Message.id == pk) & Message.state.in_(IN_FLIGHT)).execute()
    if changed and event_log.SHOWN_STATE.get(previous, previous) != state.value:  # SENDING to QUEUED shows none
        event_log.note_messages(Message.id == pk, previous=previous, failure=True)


def cancel(message_id: str, caller: str) -> MessageState | None:
    """The caller's message CANCELLED while it waits (queued or scheduled: no dispatcher holds it), its body deleted
    and a record in the event log, in one transaction. The state it is in afterwards (CANCELLED, or the one that
    kept it from being cancelled); None when the caller sent no such message."""
    now = database_now()
    with database.atomic():
        stopped = (
            Message.update({Message.state: CANCELLED} | settled_changes(now))
            .where((Message.message_id == message_id) & (Message.caller == caller) & lanes.IS_WAITING)
            .returning(Message.id)
        )
        pks = [pk for (pk,) in stopped.tuples()]
        if pks:
            event_log.note_messages(Message.id.in_(pks), previous=QUEUED.value)
            return CANCELLED
    state = (
        Message.select(Message.state).where((Message.message_id == message_id) & (Message.caller == caller)).scalar()
    )
    return MessageState(state) if state else None
