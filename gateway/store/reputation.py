"""The reputation guard's storage: bounce and complaint counts over the window of recent sends, and the one row that
tells every gateway on the database whether dispatch runs at full pace, slowed or paused."""

import datetime
from dataclasses import dataclass

import peewee
from peewee import SQL, Case, fn

from gateway.store.database import database, database_now, insert_row, is_postgres
from gateway.store.models import Message, MessageState, ReputationHold, ReputationLevel

GUARD = "reputation"
# A send is a message SES took: SENT, or a state only SES's events lead to after it. A message settled by such an
# event keeps the settled_at of its send (settle_by_event), so settled_at is when it was sent.
SENDS = (MessageState.SENT, MessageState.DELIVERED, MessageState.BOUNCED, MessageState.COMPLAINED)


@dataclass(frozen=True)
class Window:
    """The sends judged: the newest `sends` settled at or after `since`, of which `bounces` hard-bounced (the event
    parser's BOUNCED: permanent, or transient with a 5.x.x DSN) and `complaints` were complained about."""

    since: datetime.datetime
    sends: int
    bounces: int
    complaints: int
    oldest: datetime.datetime | None  # the send time of the oldest send counted


def window(*, since: datetime.datetime, limit: int) -> Window:
    """Counts over the newest `limit` sends settled at or after `since`: one indexed aggregate query."""
    # The inner query walks the settled_at index from the newest row and stops after `limit` sends, so the cost is
    # that of one window, however many messages the table holds. `state || ''` keeps the planner off the
    # (state, due_at) index: SQLite, which has no statistics unless ANALYZE ran, took it for the selective one and
    # then sorted every send the table holds.
    recent = (
        Message.select(Message.state, Message.settled_at)
        .where((Message.settled_at >= since) & Message.state.concat(SQL("''")).in_([s.value for s in SENDS]))
        .order_by(Message.settled_at.desc())
        .limit(limit)
        .alias("recent")
    )

    def count(state: MessageState) -> peewee.Node:
        return fn.COALESCE(fn.SUM(Case(None, [(recent.c.state == state.value, 1)], 0)), 0)

    counts = [
        fn.COUNT(SQL("*")),
        count(MessageState.BOUNCED),
        count(MessageState.COMPLAINED),
        fn.MIN(recent.c.settled_at),
    ]
    sends, bounces, complaints, oldest = database.execute(peewee.Select([recent], counts)).fetchone()
    return Window(since, int(sends), int(bounces), int(complaints), Message.settled_at.python_value(oldest))


@dataclass(frozen=True)
class Hold:
    """The guard's stored decision (see models.ReputationHold)."""

    level: ReputationLevel
    reason: str
    detail: str
    changed_at: datetime.datetime | None
    generation: int
    counted_from: datetime.datetime | None
    resumed_by: str
    resume_reason: str
    resumed_at: datetime.datetime | None


HOLD_COLUMNS = (
    ReputationHold.level,
    ReputationHold.reason,
    ReputationHold.detail,
    ReputationHold.changed_at,
    ReputationHold.generation,
    ReputationHold.counted_from,
    ReputationHold.resumed_by,
    ReputationHold.resume_reason,
    ReputationHold.resumed_at,
)


def ensure() -> None:
    """The guard's row, created at full pace when missing."""
    with database.atomic():
        insert_row(ReputationHold, ignore_conflict=True, name=GUARD)


def load() -> Hold:
    """The stored decision; full pace when no gateway has created the row yet."""
    row = ReputationHold.select(*HOLD_COLUMNS).where(ReputationHold.name == GUARD).tuples().first()
    if row is None:
        return Hold(ReputationLevel.NORMAL, "", "", None, 0, None, "", "", None)
    return Hold(ReputationLevel(row[0]), *row[1:])


def decide(level: ReputationLevel, *, reason: str, detail: str, generation: int) -> bool:
    """Store a decision the guard reached on the window of `generation`: a pause over anything but a pause, a slowdown
    over full pace, full pace over a slowdown. Never over a pause (only an operator ends one), and never after an
    operator's resume that the judged window predates (another generation): True when it changed the row."""
    if level is ReputationLevel.PAUSED:
        allowed = (ReputationLevel.NORMAL, ReputationLevel.SLOWED)
    elif level is ReputationLevel.SLOWED:
        allowed = (ReputationLevel.NORMAL,)
    else:
        allowed = (ReputationLevel.SLOWED,)
    with database.atomic():
        changed = (
            ReputationHold.update(level=level, reason=reason, detail=detail, changed_at=database_now())
            .where(
                (ReputationHold.name == GUARD)
                & ReputationHold.level.in_(allowed)
                & (ReputationHold.generation == generation)
            )
            .execute()
        )
    return bool(changed)


def resume(*, operator: str, reason: str) -> Hold | None:
    """An operator ends a pause or a slowdown: full pace, and a new window that counts only the sends from now on.
    The decision it ended, or None when dispatch was at full pace (then nothing changes)."""
    with database.atomic():
        locked = ReputationHold.select(*HOLD_COLUMNS).where(ReputationHold.name == GUARD)
        row = (locked.for_update() if is_postgres() else locked).tuples().first()
        if row is None or ReputationLevel(row[0]) is ReputationLevel.NORMAL:
            return None
        now = database_now()
        ReputationHold.update(
            level=ReputationLevel.NORMAL,
            reason="",
            detail="",
            changed_at=now,
            generation=ReputationHold.generation + 1,
            counted_from=now,
            resumed_by=operator,
            resume_reason=reason,
            resumed_at=now,
        ).where(ReputationHold.name == GUARD).execute()
    return Hold(ReputationLevel(row[0]), *row[1:])
