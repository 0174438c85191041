"""The send queue's lanes: one per (priority, caller), the statements dispatch's order (sending/order.py) is made of.

A message's `turn` orders it within its lane: each tenant's messages take consecutive turns, and a tenant that was
idle starts at the lane's current turn, so the tenants of one caller take turns however much one of them queued
(start-time fair queueing, the turn being the virtual time). Lanes are never deleted: every in-flight message has
one, and a (priority, caller) pair that sent once stays a few bytes.
"""

import datetime
from dataclasses import dataclass

import peewee

from gateway.store import tenants
from gateway.store.database import database, insert_row, is_postgres, prepared, seen_rows
from gateway.store.models import Lane, Message, MessageState, PriorityShare, insert_missing_lanes

QUEUED = MessageState.QUEUED.value
# Constants written into the statements (not bound), so SQLite's planner can use the indexes' prefixes.
IS_QUEUED = Message.state == peewee.SQL(f"'{QUEUED}'")
# Queued or waiting for its send_at: what a caller's (and the gateway's) queue limit counts.
IS_WAITING = Message.state.in_([peewee.SQL(f"'{QUEUED}'"), peewee.SQL(f"'{MessageState.SCHEDULED}'")])
# When a message could first be sent: its age (MAILGW_MAX_MESSAGE_AGE_SECONDS, the queue's oldest) counts from here.
READY_AT = peewee.fn.COALESCE(Message.send_at, Message.created_at)
NOT_HELD = Message.held == peewee.SQL("FALSE")


# --- accepting ----------------------------------------------------------------------------------------------------


def ensure(priority: int, caller: str) -> None:
    """The lane exists (created on a caller's first message of that priority; this process remembers it after)."""

    def create() -> None:
        insert_row(Lane, ignore_conflict=True, priority=priority, caller=caller)

    seen_rows.ensure(("lane", priority, caller), create)


def adopt_orphans() -> int:
    """Lanes for in-flight messages without one (queued by a replica from before lanes); how many were added."""
    return insert_missing_lanes(database.obj)


def next_turn(priority, caller, tenant) -> peewee.Node:
    """The turn of a message entering a lane (an expression for its INSERT): after its tenant's last queued message
    (by the tenant's step: more than one while it is slowed), and never before the lane's current turn."""
    after_tenant = Message.select(peewee.fn.MAX(Message.turn) + tenants.turn_step(tenant)).where(
        IS_QUEUED & (Message.priority == priority) & (Message.caller == caller) & (Message.tenant == tenant)
    )
    current = Lane.select(Lane.turn).where((Lane.priority == priority) & (Lane.caller == caller))
    larger = peewee.fn.GREATEST if is_postgres() else peewee.fn.MAX  # SQLite's two-argument max() is a scalar
    return larger(peewee.fn.COALESCE(after_tenant, 0), peewee.fn.COALESCE(current, 0))


def turns_from(priority: int, caller: str, tenant: str) -> tuple[int, int]:
    """The turn a message of the tenant entering the lane now takes (next_turn), and the tenant's step: a run of them
    takes that turn and the next ones by the step."""
    first, step = database.execute(
        peewee.Select(columns=[next_turn(priority, caller, tenant), tenants.turn_step(tenant)])
    ).fetchone()
    return int(first), int(step)


# --- claiming -----------------------------------------------------------------------------------------------------


@dataclass
class LaneState:
    """A lane as the claim reads it and writes it back; `due`: it has a queued message due now."""

    id: int
    priority: int
    caller: str
    credit: float
    turn: int
    due: bool


@prepared
def _lanes(now):
    due = Message.select(peewee.SQL("1")).where(
        IS_QUEUED
        & NOT_HELD
        & (Message.priority == Lane.priority)
        & (Message.caller == Lane.caller)
        & (Message.due_at <= now)
    )
    query = Lane.select(Lane.id, Lane.priority, Lane.caller, Lane.credit, Lane.turn, peewee.fn.EXISTS(due))
    query = query.order_by(Lane.priority, Lane.id)
    return query.for_update() if is_postgres() else query  # claims on several replicas read and write them in turn


def every_lane(now: datetime.datetime) -> list[LaneState]:
    """Every lane, most urgent priority first, each with whether it has due mail (an index seek each)."""
    return [LaneState(*row[:5], due=bool(row[5])) for row in _lanes(now=now).fetchall()]


@prepared
def _save_lane(pk, credit, turn):
    return Lane.update(credit=credit, turn=turn).where(Lane.id == pk)


def save(lanes: list[LaneState]) -> None:
    if not lanes:
        return
    _save_lane.executemany([{"pk": lane.id, "credit": lane.credit, "turn": lane.turn} for lane in lanes])


def class_credits() -> dict[int, float]:
    query = PriorityShare.select(PriorityShare.priority, PriorityShare.credit)
    return dict(query.for_update().tuples() if is_postgres() else query.tuples())


def save_class_credits(credits: dict[int, float]) -> None:
    for priority, credit in credits.items():
        if PriorityShare.update(credit=credit).where(PriorityShare.priority == priority).execute() == 0:
            insert_row(PriorityShare, ignore_conflict=True, priority=priority, credit=credit)


# --- counting -----------------------------------------------------------------------------------------------------


@prepared
def _queued_of(caller, limit):
    rows = Message.select(peewee.SQL("1")).where(
        IS_WAITING
        & (Message.priority.in_([0, 1, 2]))  # every priority: seeks of an index, not a scan of the queue
        & (Message.caller == caller)
    )
    return Message.select(peewee.fn.COUNT(peewee.SQL("*"))).from_(rows.limit(limit).alias("q"))


def queued_of(caller: str, *, up_to: int) -> int:
    """The caller's queued messages, counted up to `up_to` (a limit needs to know no more)."""
    return _queued_of(caller=caller, limit=up_to).fetchone()[0]


@prepared
def _queued(limit):
    rows = Message.select(peewee.SQL("1")).where(IS_WAITING)
    return Message.select(peewee.fn.COUNT(peewee.SQL("*"))).from_(rows.limit(limit).alias("q"))


def queued(*, up_to: int) -> int:
    """Every caller's queued messages, counted up to `up_to`."""
    return _queued(limit=up_to).fetchone()[0]


def release_held(tenant: str) -> int:
    """A tenant's held messages claimable again (after its resume, or SES's enabling it), unless something still
    holds them (its guard's pause, SES): back in their lanes' rotation at the current turn, in their order, so they
    take turns with the others rather than all going first on their old turns. How many."""
    if database.execute(peewee.Select(columns=[tenants.held(tenant)])).fetchone()[0]:
        return 0
    _shift_to_now(tenant)
    return tenants.release_queued(tenant)


def _shift_to_now(tenant: str) -> None:
    held = (
        Message.select(Message.priority, Message.caller, peewee.fn.MIN(Message.turn))
        .where(IS_QUEUED & (Message.tenant == tenant) & Message.held)
        .group_by(Message.priority, Message.caller)
    )
    for priority, caller, first in held.tuples():
        current = Lane.select(Lane.turn).where((Lane.priority == priority) & (Lane.caller == caller)).scalar() or 0
        Message.update(turn=Message.turn + (current - first)).where(
            IS_QUEUED
            & (Message.tenant == tenant)
            & Message.held
            & (Message.priority == priority)
            & (Message.caller == caller)
        ).execute()


@dataclass(frozen=True)
class Depth:
    """The queued messages of one priority, caller or tenant."""

    name: str | int
    queued: int
    held: int
    oldest: datetime.datetime | None


def depth_by(column: str, *, limit: int | None = None, among: list[str] | None = None) -> list[Depth]:
    """Queued messages grouped by `column` ("priority", "caller" or "tenant"; only the values `among`, when given), the
    most first: one pass over the queued rows (an admin's question or a scrape, not a hot path)."""
    key = getattr(Message, column)
    count = peewee.fn.COUNT(Message.id)
    query = (
        Message.select(key, count, peewee.fn.SUM(Message.held.cast("integer")), peewee.fn.MIN(READY_AT))
        .where(IS_QUEUED if among is None else IS_QUEUED & key.in_(among))
        .group_by(key)
        .order_by(count.desc(), key)
    )
    if limit is not None:
        query = query.limit(limit)
    created = Message.created_at.python_value
    return [Depth(name, total, int(held or 0), created(oldest)) for name, total, held, oldest in query.tuples()]
