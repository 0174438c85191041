"""The send budget every replica shares: a token bucket row on the database's clock, plus SES's daily quota.

One row per limiter name; today there is one ("ses"). A row per caller or per priority class is how shares of the
rate would be added.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.store.database import database, insert_row, is_postgres, prepared
from gateway.store.models import SendBudget


@dataclass(frozen=True)
class Grant:
    """What spend() gave: `used` of the tokens it could grant; when it could grant none, `wait` seconds until one
    is there."""

    used: int
    wait: float
    quota_spent: bool  # SES's daily quota (as last counted) is used up: no token helps


def ensure(name: str, capacity: float) -> None:
    """The limiter's row, created full when missing."""
    with database.atomic():
        insert_row(
            SendBudget, ignore_conflict=True, name=name, tokens=capacity, refilled_at=_clock(), quota_remaining=-1
        )


@prepared
def _locked_row(name):
    query = SendBudget.select(SendBudget.tokens, SendBudget.refilled_at, SendBudget.quota_remaining).where(
        SendBudget.name == name
    )
    return query.for_update() if is_postgres() else query


@prepared
def _update_row(name, tokens, refilled_at, quota_remaining):
    return SendBudget.update(tokens=tokens, refilled_at=refilled_at, quota_remaining=quota_remaining).where(
        SendBudget.name == name
    )


def spend(name: str, wanted: int, use: Callable[[int], int], *, rate: float, capacity: float) -> Grant:
    """Grant up to `wanted` tokens from the bucket (refilled at `rate` per second up to `capacity`) and from the daily
    quota, call `use(granted)`, which returns how many it used, and keep the rest in the bucket: one transaction
    holding the row's lock (PostgreSQL FOR UPDATE, SQLite's writer lock), so the claim that `use` makes and the
    tokens it spends commit together."""
    with database.atomic():
        now = _clock()
        tokens, refilled_at, quota = _locked_row(name=name).fetchone()
        tokens = min(capacity, tokens + max(0.0, now - refilled_at) * rate)
        granted = min(wanted, math.floor(tokens), quota if quota >= 0 else wanted)
        used = use(granted) if granted > 0 else 0
        quota_left = quota - used if quota >= 0 else quota
        _update_row(name=name, tokens=tokens - used, refilled_at=now, quota_remaining=quota_left)
    wait = 0.0 if granted else max(0.0, 1.0 - tokens) / rate
    return Grant(used, wait, quota_spent=quota == 0)


def set_quota(name: str, remaining: int) -> None:
    """SES's word on the daily quota (GetAccount), replacing our running count; -1 when unlimited."""
    with database.atomic():
        SendBudget.update(quota_remaining=remaining).where(SendBudget.name == name).execute()


def _clock() -> float:
    """Seconds since the epoch on the database's clock: replicas on several machines share one notion of now."""
    if is_postgres():
        return float(database.execute_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])
    return time.time()  # SQLite: every process is on this machine


def quota_remaining(name: str) -> int | None:
    """The daily quota left as last counted (-1: unlimited or not known); None before the row exists."""
    return SendBudget.select(SendBudget.quota_remaining).where(SendBudget.name == name).scalar()
