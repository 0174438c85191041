"""Tenants: the client companies messages are sent for. A row each (tenant_hold, created with a tenant's first message)
holds its reputation guard's decision; a paused tenant's queued messages are held (Message.held), which keeps them
out of the claim's index range, and released when an operator resumes it."""

import datetime

import peewee

from gateway.store.database import insert_row, seen_rows
from gateway.store.models import FeedbackEvent, Message, MessageState, ReputationLevel, TenantHold

QUEUED = MessageState.QUEUED.value


def ensure(tenant: str) -> None:
    """The tenant's row exists (created at full pace with its first message; this process remembers it after)."""
    seen_rows.ensure(("tenant", tenant), lambda: insert_row(TenantHold, ignore_conflict=True, name=tenant))


def paused(tenant) -> peewee.Node:
    """Whether `tenant` (a value or a column) is paused: an expression for a statement."""
    return peewee.fn.EXISTS(
        TenantHold.select(peewee.SQL("1")).where(
            (TenantHold.name == tenant) & (TenantHold.level == ReputationLevel.PAUSED.value)
        )
    )


def turn_step(tenant) -> peewee.Node:
    """The turns a new message of `tenant` takes (an expression): its row's step, 1 without a row."""
    step = TenantHold.select(TenantHold.turn_step).where(TenantHold.name == tenant)
    return peewee.fn.COALESCE(step, 1)


def hold_queued(tenant: str) -> int:
    """The tenant's queued messages held: the claim passes them over. How many."""
    return (
        Message.update(held=True)
        .where((Message.tenant == tenant) & (Message.state == QUEUED) & ~Message.held)
        .execute()
    )


def release_queued(tenant: str) -> int:
    """The tenant's held messages claimable again, each in its place in its lane. How many."""
    return (
        Message.update(held=False)
        .where((Message.tenant == tenant) & (Message.state == QUEUED) & Message.held)
        .execute()
    )


def active_since(since: datetime.datetime) -> list[str]:
    """Tenants whose mail changed since `since`: a send settled, or an SES event received (a bounce comes after the
    send it is about). Two index ranges, the last check's worth of sends and events."""
    settled = Message.select(Message.tenant).where((Message.settled_at >= since) & (Message.tenant != ""))
    events = (
        Message.select(Message.tenant)
        .join(FeedbackEvent, on=FeedbackEvent.message == Message.id)
        .where((FeedbackEvent.received_at >= since) & (Message.tenant != ""))
    )
    return sorted({tenant for (tenant,) in settled.union(events).tuples()})


def page(*, after: str, size: int) -> list[str]:
    """Tenant names in order, after `after`."""
    query = TenantHold.select(TenantHold.name).where(TenantHold.name > after).order_by(TenantHold.name).limit(size)
    return [name for (name,) in query.tuples()]
