"""The reputation guards' storage: bounce and complaint counts over the window of recent sends (the account's, or one
tenant's), and the rows that tell every gateway on the database whether dispatch runs at full pace, slowed or paused:
one for the account (reputation_hold), one per tenant (tenant_hold). Each function takes the row as `hold`, a
(model, name) pair: ACCOUNT, or tenant_row(name)."""

import datetime
from dataclasses import dataclass

import peewee
from peewee import SQL, Case, fn

from gateway.store.database import database, database_now, insert_row, is_postgres
from gateway.store.models import Message, MessageState, ReputationHold, ReputationLevel, TenantHold

GUARD = "reputation"
ACCOUNT = (ReputationHold, GUARD)


def tenant_row(tenant: str) -> tuple:
    return (TenantHold, tenant)


# A send is a message SES took: SENT, or a state only SES's events lead to after it. A message settled by such an
# event keeps the settled_at of its send (message_events.settle_by_event), so settled_at is when it was sent.
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


def window(*, since: datetime.datetime, limit: int, tenant: str | None = None) -> Window:
    """Counts over the newest `limit` sends settled at or after `since` (of one tenant's messages, when named): one
    indexed aggregate query (the settled_at index, or the (tenant, settled_at) one)."""
    # The inner query walks the settled_at index from the newest row and stops after `limit` sends, so the cost is
    # that of one window, however many messages the table holds. `state || ''` keeps the planner off the
    # (state, due_at) index: SQLite, which has no statistics unless ANALYZE ran, took it for the selective one and
    # then sorted every send the table holds.
    scope = (Message.settled_at >= since) & Message.state.concat(SQL("''")).in_([s.value for s in SENDS])
    if tenant is not None:
        scope &= Message.tenant == tenant
    recent = (
        Message.select(Message.state, Message.settled_at)
        .where(scope)
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


HOLD_FIELDS = (
    "level",
    "reason",
    "detail",
    "changed_at",
    "generation",
    "counted_from",
    "resumed_by",
    "resume_reason",
    "resumed_at",
)
NO_HOLD = Hold(ReputationLevel.NORMAL, "", "", None, 0, None, "", "", None)


def _columns(model) -> list:
    return [getattr(model, name) for name in HOLD_FIELDS]


def ensure(hold: tuple = ACCOUNT) -> None:
    """The guard's row, created at full pace when missing."""
    model, name = hold
    with database.atomic():
        insert_row(model, ignore_conflict=True, name=name)


def load(hold: tuple = ACCOUNT) -> Hold:
    """The stored decision; full pace when no gateway has created the row yet."""
    model, name = hold
    row = model.select(*_columns(model)).where(model.name == name).tuples().first()
    return NO_HOLD if row is None else _hold(row)


def exists(hold: tuple) -> bool:
    model, name = hold
    return model.select().where(model.name == name).exists()


def _hold(row) -> Hold:
    return Hold(ReputationLevel(row[0]), *row[1:])


def decide(level: ReputationLevel, *, reason: str, detail: str, generation: int, hold: tuple = ACCOUNT, **also) -> bool:
    """Store a decision the guard reached on the window of `generation`: a pause over anything but a pause, a slowdown
    over full pace, full pace over a slowdown. Never over a pause (only an operator ends one), and never after an
    operator's resume that the judged window predates (another generation): True when it changed the row."""
    if level is ReputationLevel.PAUSED:
        allowed = (ReputationLevel.NORMAL, ReputationLevel.SLOWED)
    elif level is ReputationLevel.SLOWED:
        allowed = (ReputationLevel.NORMAL,)
    else:
        allowed = (ReputationLevel.SLOWED,)
    model, name = hold
    with database.atomic():
        changed = (
            model.update(level=level, reason=reason, detail=detail, changed_at=database_now(), **also)
            .where((model.name == name) & model.level.in_(allowed) & (model.generation == generation))
            .execute()
        )
    return bool(changed)


def resume(*, operator: str, reason: str, hold: tuple = ACCOUNT, **also) -> Hold | None:
    """An operator ends a pause or a slowdown: full pace, and a new window that counts only the sends from now on.
    The decision it ended, or None when dispatch was at full pace (then nothing changes). In the caller's transaction
    when there is one."""
    model, name = hold
    with database.atomic():
        locked = model.select(*_columns(model)).where(model.name == name)
        row = (locked.for_update() if is_postgres() else locked).tuples().first()
        if row is None or ReputationLevel(row[0]) is ReputationLevel.NORMAL:
            return None
        now = database_now()
        model.update(
            level=ReputationLevel.NORMAL,
            reason="",
            detail="",
            changed_at=now,
            generation=model.generation + 1,
            counted_from=now,
            resumed_by=operator,
            resume_reason=reason,
            resumed_at=now,
            **also,
        ).where(model.name == name).execute()
    return _hold(row)


def tenant_holds(*, levels: tuple[ReputationLevel, ...] | None = None) -> dict[str, Hold]:
    """Every tenant's stored decision (of those `levels`), by tenant."""
    query = TenantHold.select(TenantHold.name, *_columns(TenantHold)).order_by(TenantHold.name)
    if levels is not None:
        query = query.where(TenantHold.level.in_(levels))
    return {row[0]: _hold(row[1:]) for row in query.tuples()}
