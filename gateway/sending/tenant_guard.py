"""The reputation guard for each tenant: the account guard's thresholds and check interval, applied to one tenant's
own sends, bounces and complaints, so one client company's stale list slows and then pauses only its own mail.

Every MAILGW_REPUTATION_CHECK_SECONDS a dispatching gateway judges the tenants whose mail changed since the last check
(a send settled, an SES event received): each on its own window, once it holds MAILGW_TENANT_REPUTATION_MIN_SENDS
sends. A slowed tenant's new messages take more turns in their lanes (its share against its caller's other mail
falls to MAILGW_REPUTATION_SLOW_FRACTION); a paused tenant's queued messages are held (they stay QUEUED, the claim
passes them over) until an operator resumes it (`mailgw tenants resume`). The decisions are rows every gateway reads;
the account guard stays the last line for all mail.
"""

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.core import metrics
from gateway.core.errors import TenantNotFound, TenantNotHeld
from gateway.sending.reputation import Limits, Reading, ReputationGuard, checked_resume, read
from gateway.store import lanes, ses_tenants, tenants
from gateway.store import reputation as store
from gateway.store.database import database, database_now
from gateway.store.models import ReputationLevel

log = logging.getLogger(__name__)

FIRST_LOOK_SECONDS = 300.0  # at start, the tenants whose mail changed in the last five minutes are judged


@dataclass(frozen=True)
class TenantLimits:
    """The account guard's limits with the tenants' own minimum of sends."""

    limits: Limits

    @classmethod
    def of(cls, limits: Limits, min_sends: int) -> "TenantLimits":
        return cls(replace(limits, min_sends=min_sends))

    @property
    def slow_step(self) -> int:
        """Turns a slowed tenant's message takes: 2 at a slow fraction of 0.5."""
        return max(1, round(1 / self.limits.slow_fraction))


def judge_tenant(tenant: str, limits: TenantLimits) -> tuple[Reading, ReputationLevel]:
    """Read one tenant's window, store what it calls for (never over a pause: only an operator ends one), hold its
    queued mail when it is paused now. The reading and the level stored."""
    reading, verdict, hold = read(limits.limits, tenant=tenant)
    if verdict.level is hold.level or hold.level is ReputationLevel.PAUSED:
        return reading, hold.level
    step = limits.slow_step if verdict.level is ReputationLevel.SLOWED else 1
    with database.atomic():
        row = store.tenant_row(tenant)
        changed = store.decide(
            verdict.level,
            reason=verdict.reason,
            detail=verdict.detail,
            generation=hold.generation,
            hold=row,
            turn_step=step,
        )
        held = tenants.hold_queued(tenant) if changed and verdict.level is ReputationLevel.PAUSED else 0
    if not changed:
        return reading, store.load(store.tenant_row(tenant)).level
    if verdict.level is ReputationLevel.PAUSED:
        log.warning(
            "tenant %s paused: %s (%s); %d queued messages held until `mailgw tenants resume %s`",
            tenant,
            verdict.reason,
            verdict.detail,
            held,
            tenant,
            extra={"tenant": tenant},
        )
    elif verdict.level is ReputationLevel.SLOWED:
        log.warning("tenant %s slowed: %s (%s)", tenant, verdict.reason, verdict.detail, extra={"tenant": tenant})
    else:
        log.info("tenant %s at full pace: its rates fell below the slow thresholds", tenant, extra={"tenant": tenant})
    return reading, verdict.level


def resume_tenant(tenant: str, operator: str, reason: str) -> store.Hold:
    """An operator resumes a paused or slowed tenant: full pace, its held mail claimable again in the current turns of
    its lanes, and a new window from now. The decision it ended; TenantNotFound, NothingToResume, InvalidRequest."""
    operator, reason = checked_resume(operator, reason)
    with database.atomic():
        if not store.exists(store.tenant_row(tenant)):
            raise TenantNotFound("no message was ever sent for that tenant", tenant=tenant)
        ended = store.resume(operator=operator, reason=reason, hold=store.tenant_row(tenant), turn_step=1)
        if ended is None:
            raise TenantNotHeld(f"tenant {tenant} is neither paused nor slowed: nothing to resume")
        released = lanes.release_held(tenant)
    log.info(
        "tenant %s resumed by %s (%s); it was %s: %s; %d held messages released",
        tenant,
        operator,
        reason,
        ended.level.value,
        ended.reason,
        released,
        extra={"tenant": tenant},
    )
    return ended


@dataclass(frozen=True)
class TenantReading:
    """A tenant as ListTenants shows it: its guard's reading, its queued messages and how many of them are held."""

    name: str
    reading: Reading
    queued: int
    held: int
    ses: ses_tenants.SesState | None = None  # what SES last said of it (MAILGW_SES_TENANTS); None: never read


def list_tenants(limits: TenantLimits, *, after: str, size: int) -> list[TenantReading]:
    """A page of tenants in name order, after `after`: each one's window read now (one indexed query each)."""
    names = tenants.page(after=after, size=size)
    queued = {depth.name: depth for depth in lanes.depth_by("tenant", among=names)} if names else {}
    in_ses = ses_tenants.states(names) if names else {}
    nothing = lanes.Depth("", 0, 0, None)

    def reading(name: str) -> TenantReading:
        depth = queued.get(name, nothing)
        return TenantReading(name, read(limits.limits, tenant=name)[0], depth.queued, depth.held, in_ses.get(name))

    return [reading(name) for name in names]


class TenantGuard:
    """One per dispatching gateway, beside the account's ReputationGuard. `on_paused(names)` hears the paused
    tenants after every check or follow (health reports them)."""

    def __init__(
        self,
        limits: TenantLimits,
        check_seconds: float,
        *,
        follow_seconds: float = 1.0,
        on_paused: Callable[[list[str]], None] = lambda names: None,
    ):
        self._limits = limits
        self._check_seconds = check_seconds
        self._follow_seconds = follow_seconds
        self._on_paused = on_paused
        self._next_check = time.monotonic()
        self._looked_at: datetime.datetime | None = None
        self.paused: list[str] = []

    def check(self) -> None:
        now = database_now()
        since = self._looked_at or now - datetime.timedelta(seconds=FIRST_LOOK_SECONDS)
        for tenant in tenants.active_since(since - datetime.timedelta(seconds=1)):  # a commit straddling `now`
            judge_tenant(tenant, self._limits)
        self._looked_at = now
        self.follow()

    def follow(self) -> None:
        """Read which tenants are paused or slowed now (another gateway's decision, an operator's resume)."""
        holds = store.tenant_holds(levels=(ReputationLevel.PAUSED, ReputationLevel.SLOWED))
        paused = [name for name, hold in holds.items() if hold.level is ReputationLevel.PAUSED]
        metrics.tenants_held(paused=len(paused), slowed=len(holds) - len(paused))
        if paused != self.paused:
            self.paused = paused
            self._on_paused(paused)

    step = ReputationGuard.step  # check when due, else follow: the account guard's loop step
