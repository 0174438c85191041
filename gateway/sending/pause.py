"""When nobody can send (SES paused or suspended the account, the configuration set is missing, the daily quota is
spent), dispatch stops claiming and probes again every MAILGW_PAUSE_PROBE_SECONDS, instead of failing the queue one
message at a time."""

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.failures import SES_DAILY_QUOTA_EXCEEDED as DAILY_QUOTA
from gateway.core.failures import Failure, Outcome

log = logging.getLogger(__name__)


class Reached(enum.Enum):
    """How far an attempt got: what a probe learns from it."""

    NOT_TRIED = "no SES call was made"  # suppressed, expired, the database away: probe with the next message
    TRIED = "SES did not answer"  # unreachable, no credentials, no answer in time: nothing learnt, probe later
    ANSWERED = "SES answered"  # anything but "nobody can send" ends the pause


@dataclass(frozen=True)
class Pause:
    """Why nobody can send now."""

    reason: str
    detail: str


class PauseGate:
    """Open, or paused with a probe due now and then: one message (an SES refusal) or SES's quota (a spent daily
    quota) is tried again, and its outcome opens the gate or keeps it shut. Held (the reputation guard's pause), it
    claims nothing and probes nothing until released. `on_change(pause)` hears each change (None: open again)."""

    def __init__(self, probe_seconds: float, on_change: Callable[[Pause | None], None]):
        self._probe_seconds = probe_seconds
        self._on_change = on_change
        self._lock = threading.Lock()
        self._pause: Pause | None = None
        self._probe_at = 0.0
        self._probe_pk: int | None = None
        self._held: Pause | None = None

    @property
    def current(self) -> Pause | None:
        """Why dispatch is paused now: a hold first, then SES's refusal; None when open."""
        return self._held or self._pause

    def claim_limit(self, batch: int, quota_freed: Callable[[], bool | None]) -> int:
        """How many messages to claim now: `batch` when open, one when a probe is due, none while paused. A quota
        pause is probed with `quota_freed()` (SES asked again) rather than with a message, unless SES does not say
        (None: no GetAccount permission, say)."""
        with self._lock:
            pause = self._pause
            if self._held is not None:
                return 0
            if pause is None:
                return batch
            if self._probe_pk is not None or time.monotonic() < self._probe_at:
                return 0
            if pause.reason != DAILY_QUOTA:
                return 1
            self._probe_at = time.monotonic() + self._probe_seconds
        freed = quota_freed()
        if freed:
            self.open()
            return batch
        return 1 if freed is None else 0

    def seconds_to_probe(self) -> float:
        return max(0.0, self._probe_at - time.monotonic())

    def probing_with(self, pk: int) -> None:
        """The message just claimed while paused is the probe."""
        if self._pause is not None:
            self._probe_pk = pk

    def hold(self, pause: Pause) -> None:
        """Stop claiming until release(): no probe and no answer from SES ends a hold."""
        with self._lock:
            before, self._held = self.current, pause
        log.warning(
            "dispatch paused: %s (%s); messages stay queued until an operator resumes it (mailgw dispatch resume)",
            pause.reason,
            pause.detail,
        )
        self._report(before)

    def release(self) -> None:
        """End a hold; an SES pause that began meanwhile goes on being probed."""
        with self._lock:
            before, self._held = self.current, None
        self._report(before)

    def _report(self, before: Pause | None) -> None:
        if self.current != before:
            self._on_change(self.current)

    def shut(self, pause: Pause) -> None:
        with self._lock:
            before = self.current
            first = self._pause is None
            self._pause = pause
            self._probe_at = time.monotonic() + self._probe_seconds
            self._probe_pk = None
        if first:
            log.warning(
                "dispatch paused: %s (%s); messages stay queued, probing every %ss",
                pause.reason,
                pause.detail,
                self._probe_seconds,
            )
            self._report(before)

    def open(self) -> None:
        with self._lock:
            before = self.current
            was, self._pause, self._probe_pk = self._pause, None, None
        if was is not None:
            log.info("dispatch resumed: %s is over", was.reason)
            self._report(before)

    def after_attempt(self, pk: int, failure: Failure | None, reached: Reached) -> None:
        """A probe's outcome opens the gate or keeps it shut; other messages' outcomes change nothing here."""
        if pk != self._probe_pk:
            return
        still_paused = failure is not None and failure.outcome is Outcome.PAUSE
        # A refusal SES gave for the probe's tenant says nothing of the account (ses_tenants.py decides that).
        learnt = reached is Reached.ANSWERED and not (failure is not None and failure.outcome is Outcome.TENANT_HELD)
        if learnt and not still_paused:
            self.open()  # SES took the probe, or answered it with something other than "nobody can send"
            return
        with self._lock:
            self._probe_pk = None
            if reached is Reached.NOT_TRIED:
                self._probe_at = 0.0  # the probe never reached SES: probe with the next message now
            else:  # still paused, or SES did not answer: nothing learnt, probe again after the interval
                self._probe_at = time.monotonic() + self._probe_seconds
