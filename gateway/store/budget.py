"""The send budget every replica shares: a token bucket row on the database's clock, plus SES's daily quota.

One row per limiter name; today there is one ("ses"). A row per caller or per priority class is how shares of the
rate would be added.
"""

import math
import time
from dataclasses import dataclass

from peewee import Case

from gateway.store.database import database, insert_row, is_postgres
from gateway.store.models import SendBudget


@dataclass(frozen=True)
class Grant:
    """What take() gave: `granted` sends may start now; when none, `wait` seconds until one may."""

    granted: int
    wait: float
    quota_spent: bool  # SES's daily quota (as last read) is used up: no token helps


def ensure(name: str, capacity: float) -> None:
    """The limiter's row, created full when missing."""
    with database.atomic():
        insert_row(
            SendBudget, ignore_conflict=True, name=name, tokens=capacity, refilled_at=_clock(), quota_remaining=-1
        )


def take(name: str, wanted: int, *, rate: float, capacity: float) -> Grant:
    """Up to `wanted` tokens from the bucket refilled at `rate` per second up to `capacity`, and as many from the
    daily quota. One short transaction holding the row's lock (PostgreSQL FOR UPDATE, SQLite's writer lock)."""
    with database.atomic():
        now = _clock()
        query = SendBudget.select(SendBudget.tokens, SendBudget.refilled_at, SendBudget.quota_remaining).where(
            SendBudget.name == name
        )
        tokens, refilled_at, quota = (query.for_update() if is_postgres() else query).tuples().get()
        tokens = min(capacity, tokens + max(0.0, now - refilled_at) * rate)
        granted = min(wanted, math.floor(tokens))
        if quota >= 0:
            granted = min(granted, quota)
        tokens -= granted
        SendBudget.update(
            tokens=tokens, refilled_at=now, quota_remaining=quota - granted if quota >= 0 else quota
        ).where(SendBudget.name == name).execute()
    quota_spent = quota == 0
    wait = 0.0 if granted else (1.0 - tokens) / rate
    return Grant(granted, wait, quota_spent)


def give_back(name: str, count: int, *, capacity: float) -> None:
    """Tokens taken for messages that were not there to claim, returned to the bucket and the quota."""
    if count <= 0:
        return
    with database.atomic():
        SendBudget.update(
            tokens=_least(SendBudget.tokens + count, capacity),
            quota_remaining=_plus_if_counted(count),
        ).where(SendBudget.name == name).execute()


def set_quota(name: str, remaining: int) -> None:
    """SES's word on the daily quota (GetAccount), replacing our running count; -1 when unlimited."""
    with database.atomic():
        SendBudget.update(quota_remaining=remaining).where(SendBudget.name == name).execute()


def _clock() -> float:
    """Seconds since the epoch on the database's clock: replicas on several machines share one notion of now."""
    if is_postgres():
        return float(database.execute_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])
    return time.time()  # SQLite: every process is on this machine


def _least(expression, limit: float):
    return Case(None, [(expression > limit, limit)], expression)


def _plus_if_counted(count: int):
    return Case(None, [(SendBudget.quota_remaining >= 0, SendBudget.quota_remaining + count)], -1)
