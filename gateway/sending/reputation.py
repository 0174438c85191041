"""The reputation guard: our own bounce and complaint rates over the recent sends, recomputed from the database every
MAILGW_REPUTATION_CHECK_SECONDS. Past the first thresholds dispatch slows to a fraction of its pace; past the second it
pauses until an operator resumes it (`mailgw dispatch resume`). Every gateway on the database reads one stored
decision, so replicas agree and a pause outlives a restart.

The window is the sends of the last MAILGW_REPUTATION_WINDOW_DAYS days, and of those at most the newest
MAILGW_REPUTATION_WINDOW_SENDS: whichever holds fewer sends. Nothing is judged below MAILGW_REPUTATION_MIN_SENDS.
"""

import datetime
import logging
import time
from dataclasses import dataclass, replace

from gateway.core import metrics
from gateway.core.addresses import HEADER_UNSAFE
from gateway.core.config import Settings
from gateway.core.errors import InvalidRequest, NothingToResume
from gateway.core.failures import REPUTATION_BOUNCE_RATE, REPUTATION_COMPLAINT_RATE
from gateway.sending.pacing import Pacer
from gateway.sending.pause import Pause, PauseGate
from gateway.store import reputation as store
from gateway.store.database import database_now, unit_of_work
from gateway.store.models import MAX_REASON, ReputationLevel

log = logging.getLogger(__name__)

BOUNCE_RATE, COMPLAINT_RATE = REPUTATION_BOUNCE_RATE, REPUTATION_COMPLAINT_RATE
REASONS = frozenset({BOUNCE_RATE, COMPLAINT_RATE})
MAX_OPERATOR = 128


@dataclass(frozen=True)
class Limits:
    """The thresholds (fractions of the sends, 0-1) and the window, from MAILGW_REPUTATION_* settings."""

    slow_bounce: float
    slow_complaint: float
    pause_bounce: float
    pause_complaint: float
    slow_fraction: float
    window_sends: int
    window_days: float
    min_sends: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            slow_bounce=settings.reputation_slow_bounce_percent / 100,
            slow_complaint=settings.reputation_slow_complaint_percent / 100,
            pause_bounce=settings.reputation_pause_bounce_percent / 100,
            pause_complaint=settings.reputation_pause_complaint_percent / 100,
            slow_fraction=settings.reputation_slow_fraction,
            window_sends=settings.reputation_window_sends,
            window_days=settings.reputation_window_days,
            min_sends=settings.reputation_min_sends,
        )


@dataclass(frozen=True)
class Verdict:
    """What the rates call for: a level, and why (an UPPER_SNAKE reason and a sentence)."""

    level: ReputationLevel
    reason: str = ""
    detail: str = ""


def judge(window: store.Window, limits: Limits) -> Verdict:
    """The level a window calls for: PAUSED at or above a pause threshold, SLOWED at or above a slow one, NORMAL
    below both or with fewer than `min_sends` sends (a bounce among three sends says nothing). A complaint is named
    before a bounce: SES's complaint thresholds are the tighter ones."""
    if window.sends < limits.min_sends:
        return Verdict(ReputationLevel.NORMAL)
    for level, step, complaint_limit, bounce_limit in (
        (ReputationLevel.PAUSED, "pause", limits.pause_complaint, limits.pause_bounce),
        (ReputationLevel.SLOWED, "slow", limits.slow_complaint, limits.slow_bounce),
    ):
        for reason, kind, count, threshold in (
            (COMPLAINT_RATE, "complaint", window.complaints, complaint_limit),
            (BOUNCE_RATE, "bounce", window.bounces, bounce_limit),
        ):
            if count / window.sends >= threshold:
                detail = (
                    f"{kind} rate {percent(count / window.sends)} ({count} of the last {window.sends} sends) is at "
                    f"or above the {step} threshold {percent(threshold)}"
                )
                return Verdict(level, reason, detail)
    return Verdict(ReputationLevel.NORMAL)


def percent(fraction: float) -> str:
    return f"{fraction * 100:.3g} %"


@dataclass(frozen=True)
class Reading:
    """The guard as metrics and operators see it: the window's counts and rates, and the stored decision."""

    read_at: datetime.datetime
    window_start: datetime.datetime  # sends settled before this are not counted (the window's days, or a resume)
    sends: int
    bounces: int
    complaints: int
    judged: bool  # the window holds at least MAILGW_REPUTATION_MIN_SENDS sends
    level: ReputationLevel
    reason: str
    detail: str
    changed_at: datetime.datetime | None
    resumed_by: str
    resume_reason: str
    resumed_at: datetime.datetime | None

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.sends if self.sends else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sends if self.sends else 0.0


def read(limits: Limits, *, tenant: str | None = None) -> tuple[Reading, Verdict, store.Hold]:
    """The window's counts and the stored decision now (two queries), with the verdict the counts call for; the
    account's, or one tenant's (its own sends, its own stored decision). In the caller's unit of work."""
    hold, now = store.load(store.ACCOUNT if tenant is None else store.tenant_row(tenant)), database_now()
    since = now - datetime.timedelta(days=limits.window_days)
    if hold.counted_from is not None:
        since = max(since, hold.counted_from)
    counts = store.window(since=since, limit=limits.window_sends, tenant=tenant)
    reading = Reading(
        read_at=now,
        window_start=since,
        sends=counts.sends,
        bounces=counts.bounces,
        complaints=counts.complaints,
        judged=counts.sends >= limits.min_sends,
        **_decision(hold),
    )
    return reading, judge(counts, limits), hold


def _decision(hold: store.Hold) -> dict:
    """A Reading's fields that come from the stored decision."""
    return dict(
        level=hold.level,
        reason=hold.reason,
        detail=hold.detail,
        changed_at=hold.changed_at,
        resumed_by=hold.resumed_by,
        resume_reason=hold.resume_reason,
        resumed_at=hold.resumed_at,
    )


def resume(operator: str, reason: str) -> store.Hold:
    """An operator resumes dispatch: full pace on every gateway within a second (Timings.follow_seconds), and a new
    window from now, so the sends that caused the pause are not judged again (nothing is judged until MIN_SENDS new
    sends). The decision it ended; InvalidRequest for a missing reason or operator, NothingToResume when dispatch
    runs at full pace."""
    operator, reason = checked_resume(operator, reason)
    ended = store.resume(operator=operator, reason=reason)
    if ended is None:
        raise NothingToResume("dispatch is neither paused nor slowed by the reputation guard: nothing to resume")
    log.info("dispatch resumed by %s (%s); it was %s: %s", operator, reason, ended.level.value, ended.reason)
    return ended


def checked_resume(operator: str, reason: str) -> tuple[str, str]:
    """An operator's resume as it is recorded (trimmed); InvalidRequest for a missing reason or operator."""
    operator, reason = operator.strip(), reason.strip()
    violations = {}
    if not operator or len(operator) > MAX_OPERATOR or not operator.isprintable():
        violations["operator"] = f"required: who resumes, 1-{MAX_OPERATOR} printable characters"
    if not reason or len(reason) > MAX_REASON:
        violations["reason"] = f"required: why dispatch may resume, 1-{MAX_REASON} characters"
    elif HEADER_UNSAFE.search(reason):  # shown on one line: in the logs, in `mailgw dispatch status`
        violations["reason"] = "must be one line without control characters"
    if violations:
        raise InvalidRequest(violations)
    return operator, reason


LEVELS = (ReputationLevel.NORMAL, ReputationLevel.SLOWED, ReputationLevel.PAUSED)  # 0, 1, 2 in the level metric


class ReputationGuard:
    """One per dispatching gateway: recomputes the rates every `check_seconds`, stores what they call for, and applies
    the stored decision (its own or another gateway's) to this gateway's pace and pause gate."""

    def __init__(
        self, limits: Limits, check_seconds: float, *, pacer: Pacer, gate: PauseGate, follow_seconds: float = 1.0
    ):
        self._limits = limits
        self._check_seconds = check_seconds
        self._follow_seconds = follow_seconds  # how soon another gateway's decision, or a resume, is applied here
        self._next_check = time.monotonic() + check_seconds
        self._pacer = pacer
        self._gate = gate
        self._applied: tuple[ReputationLevel, int] | None = None  # (level, generation) as last applied
        self.reading: Reading | None = None  # the last check's (None until the first check)
        metrics.reputation_thresholds(
            limits.slow_bounce, limits.slow_complaint, limits.pause_bounce, limits.pause_complaint
        )

    def start(self) -> None:
        """The stored row exists, and the first check is made (and applied)."""
        store.ensure()
        self.check()
        self._next_check = time.monotonic() + self._check_seconds

    def check(self) -> None:
        """Read the window, store the decision it calls for (see store.decide), apply the stored one."""
        reading, verdict, hold = read(self._limits)
        if verdict.level is not hold.level and hold.level is not ReputationLevel.PAUSED:
            if store.decide(verdict.level, reason=verdict.reason, detail=verdict.detail, generation=hold.generation):
                hold = store.load()
                reading = replace(reading, **_decision(hold))
        self.reading = reading
        metrics.reputation_read(reading.sends, reading.bounces, reading.complaints, LEVELS.index(hold.level))
        self._apply(hold)

    def follow(self) -> None:
        """Apply the stored decision without recomputing: another gateway's, or an operator's resume."""
        self._apply(store.load())

    def step(self) -> float:
        """One turn of its loop: check the rates when `check_seconds` have passed since the last check, else follow the
        stored decision; the first check is made before dispatch starts (start()), so a restarted gateway sends nothing
        while the guard's pause holds. The last decision stays applied while the database does not answer."""
        with unit_of_work():
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self._check_seconds
                self.check()
            else:
                self.follow()
        return min(self._follow_seconds, self._check_seconds)

    def _apply(self, hold: store.Hold) -> None:
        if (hold.level, hold.generation) == self._applied:
            return
        was = self._applied
        self._applied = (hold.level, hold.generation)
        if hold.level is ReputationLevel.PAUSED:
            self._gate.hold(Pause(hold.reason, hold.detail))  # logs why, and health says NOT_SERVING
            return
        fraction = self._limits.slow_fraction if hold.level is ReputationLevel.SLOWED else 1.0
        self._pacer.slow_to(fraction)
        self._gate.release()
        if hold.level is ReputationLevel.SLOWED:
            log.warning(
                "dispatch slowed to %s of its pace: %s (%s); full pace again once the rates fall below the slow "
                "thresholds, or after `mailgw dispatch resume`",
                percent(fraction),
                hold.reason,
                hold.detail,
            )
        elif was is None or was[0] is ReputationLevel.NORMAL:
            return
        elif was[1] != hold.generation:
            log.warning(
                "dispatch at full pace: %s resumed it (%s); sends before %s are not judged again",
                hold.resumed_by,
                hold.resume_reason,
                hold.counted_from,
            )
        else:
            log.info("dispatch at full pace: the bounce and complaint rates fell below the slow thresholds")
