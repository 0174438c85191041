"""What SES last said of each tenant (MAILGW_SES_TENANTS): one ses_tenant row per tenant, read by the claim (a tenant's
mail is claimed only while its status lets it send: store/tenants.sendable_in_ses) and written by the gateways'
status reads (sending/ses_tenants.py), one gateway per read."""

import datetime
from dataclasses import dataclass

import peewee

from gateway.store import lanes, tenants
from gateway.store.database import database, insert_row
from gateway.store.models import Message, ReputationLevel, SesTenant, TenantHold

NOT_READ = ""  # no read yet, or one asked for again after SES refused a send for the tenant


@dataclass(frozen=True)
class SesState:
    """A tenant as the gateway last read it from SES."""

    arn: str
    status: str
    cause: str
    read_at: datetime.datetime | None


def due(now: datetime.datetime, limit: int) -> list[str]:
    """Tenants with mail not yet settled whose status is to be read: never read, or last read before `now` minus the
    interval (next_read_at). Idle tenants are left alone: a tenant that was never read is read before its first send,
    one that was is read again when its mail comes back. The tenant rows are few (one per client company); each
    is asked for unsettled mail through the (tenant, settled_at) index."""
    unsettled = Message.select(peewee.SQL("1")).where(
        (Message.tenant == TenantHold.name) & Message.settled_at.is_null()
    )
    query = (
        TenantHold.select(TenantHold.name)
        .join(SesTenant, peewee.JOIN.LEFT_OUTER, on=SesTenant.name == TenantHold.name)
        .where((SesTenant.name.is_null() | (SesTenant.next_read_at <= now)) & peewee.fn.EXISTS(unsettled))
        .order_by(SesTenant.next_read_at.asc(nulls="first"), TenantHold.name)
        .limit(limit)
    )
    return [name for (name,) in query.tuples()]


def take(name: str, *, now: datetime.datetime, until: datetime.datetime) -> SesState | None:
    """This gateway reads the tenant's status now, and no other until `until` (when a read that failed is tried
    again): what was read before, or None when another gateway took this read."""
    insert_row(SesTenant, ignore_conflict=True, name=name, next_read_at=now)
    taken = (
        SesTenant.update(next_read_at=until).where((SesTenant.name == name) & (SesTenant.next_read_at <= now)).execute()
    )
    return state(name) if taken else None


def state(name: str) -> SesState | None:
    row = (
        SesTenant.select(SesTenant.arn, SesTenant.status, SesTenant.cause, SesTenant.read_at)
        .where(SesTenant.name == name)
        .tuples()
        .first()
    )
    return SesState(*row) if row else None


def states(names: list[str]) -> dict[str, SesState]:
    query = SesTenant.select(SesTenant.name, SesTenant.arn, SesTenant.status, SesTenant.cause, SesTenant.read_at)
    return {row[0]: SesState(*row[1:]) for row in query.where(SesTenant.name.in_(names)).tuples()}


def record(name: str, *, taken_until, arn: str, status: str, cause: str, now: datetime.datetime, next_read_at) -> bool:
    """A read's answer stored, and the tenant's queued mail held or released by it (in one transaction); released
    mail takes its turns from now on (lanes.release_held), as after a resume. False, storing nothing, when SES
    refused one of its sends since the read was taken (read_again): that read is older than the refusal."""
    with database.atomic():
        stored = (
            SesTenant.update(arn=arn, status=status, cause=cause, read_at=now, next_read_at=next_read_at)
            .where((SesTenant.name == name) & (SesTenant.next_read_at == taken_until))
            .execute()
        )
        if not stored:
            return False
        if status in tenants.SES_BLOCKED:
            tenants.hold_queued(name)
        else:
            lanes.release_held(name)
    return True


def read_again(name: str, now: datetime.datetime, *, refused_with: str) -> None:
    """SES refused a send for the tenant (its error code `refused_with`, kept in `cause` until the read): its mail
    waits until its status was read again, which is due now."""
    insert_row(SesTenant, ignore_conflict=True, name=name, next_read_at=now)
    SesTenant.update(status=NOT_READ, cause=refused_with, next_read_at=now).where(SesTenant.name == name).execute()


def forget() -> int:
    """Without MAILGW_SES_TENANTS: what SES said of the tenants no longer holds their mail (the rows go; the mail
    of a tenant its own guard did not pause is released). How many rows."""
    with database.atomic():
        names = [name for (name,) in SesTenant.select(SesTenant.name).tuples()]
        SesTenant.delete().execute()
        for name in names:
            lanes.release_held(name)
    return len(names)


def pause_changes() -> list[tuple[str, str, bool]]:
    """(tenant, ARN, pause) for each tenant whose customer-managed status in SES is to follow its guard here: paused
    here and not yet disabled in SES by us (pause True), or disabled by us and no longer paused (pause False)."""
    paused = TenantHold.level == ReputationLevel.PAUSED.value
    query = (
        SesTenant.select(SesTenant.name, SesTenant.arn, paused)
        .join(TenantHold, on=TenantHold.name == SesTenant.name)
        .where((SesTenant.arn != "") & ((paused & ~SesTenant.paused_here) | (~paused & SesTenant.paused_here)))
    )
    return [(name, arn, bool(pause)) for name, arn, pause in query.tuples()]


def mark_paused_here(name: str, paused: bool, now: datetime.datetime) -> None:
    """Our customer-managed status of the tenant was set (DISABLED when `paused`); its status is read again now."""
    SesTenant.update(paused_here=paused, next_read_at=now).where(SesTenant.name == name).execute()


def counts() -> dict[str, int]:
    """Tenants by their last read status ("" for none yet)."""
    query = SesTenant.select(SesTenant.status, peewee.fn.COUNT(peewee.SQL("*"))).group_by(SesTenant.status)
    return dict(query.tuples())
