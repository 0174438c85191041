"""Tenants: the client companies messages are sent for. A row each (tenant_hold, created with a tenant's first message)
holds its reputation guard's decision, and with MAILGW_SES_TENANTS another (ses_tenant) what SES last said of it; a
paused tenant's queued messages, or those of a tenant SES disabled, are held (Message.held), which keeps them out of
the claim's index range, and released when nothing holds them any more."""

import datetime

import peewee

from gateway.store.database import insert_row, seen_rows
from gateway.store.models import FeedbackEvent, Message, MessageState, ReputationLevel, SesTenant, TenantHold

QUEUED = MessageState.QUEUED.value
SES_SENDABLE = ("ENABLED", "REINSTATED")  # SES's aggregate sending statuses that let a tenant send
SES_BLOCKED = ("DISABLED", "MISSING")  # SES disabled it, or has no such tenant


def ensure(tenant: str) -> None:
    """The tenant's row exists (created at full pace with its first message; this process remembers it after)."""
    seen_rows.ensure(("tenant", tenant), lambda: insert_row(TenantHold, ignore_conflict=True, name=tenant))


def held(tenant) -> peewee.Node:
    """Whether `tenant`'s mail (a value or a column) waits: its guard paused it, or SES has it disabled or does not
    have it (MAILGW_SES_TENANTS). An expression for a statement."""
    paused = TenantHold.select(peewee.SQL("1")).where(
        (TenantHold.name == tenant) & (TenantHold.level == ReputationLevel.PAUSED.value)
    )
    blocked = SesTenant.select(peewee.SQL("1")).where((SesTenant.name == tenant) & SesTenant.status.in_(SES_BLOCKED))
    return peewee.fn.EXISTS(paused) | peewee.fn.EXISTS(blocked)


def sendable_in_ses(tenant) -> peewee.Node:
    """Whether SES's sending status of `tenant` (a column) was read and lets it send: with MAILGW_SES_TENANTS a
    tenant's mail is claimed only then, so its first message waits for the first read."""
    return (tenant == "") | peewee.fn.EXISTS(
        SesTenant.select(peewee.SQL("1")).where((SesTenant.name == tenant) & SesTenant.status.in_(SES_SENDABLE))
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
    """The tenant's held messages claimable again where they are in their lanes, unless something still holds them
    (its guard's pause, or SES): lanes.release_held, which first gives them the current turns. How many."""
    return (
        Message.update(held=False)
        .where((Message.tenant == tenant) & (Message.state == QUEUED) & Message.held & ~held(tenant))
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
