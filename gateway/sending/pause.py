"""When nobody can send (SES paused or suspended the account, the configuration set is missing, the daily quota is
spent), dispatch stops claiming and probes again every MAILGW_PAUSE_PROBE_SECONDS, instead of failing the queue one
message at a time."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.sending.failures import Failure, Outcome

log = logging.getLogger(__name__)

DAILY_QUOTA = "SES_DAILY_QUOTA_EXCEEDED"


@dataclass(frozen=True)
class Pause:
    """Why nobody can send now."""

    reason: str
    detail: str


class PauseGate:
    """Open, or paused with a probe due now and then: one message (an SES refusal) or SES's quota (a spent daily
    quota) is tried again, and its outcome opens the gate or keeps it shut. `on_change(pause)` hears each change
    (None: open again)."""

    def __init__(self, probe_seconds: float, on_change: Callable[[Pause | None], None]):
        self._probe_seconds = probe_seconds
        self._on_change = on_change
        self._lock = threading.Lock()
        self._pause: Pause | None = None
        self._probe_at = 0.0
        self._probe_pk: int | None = None

    @property
    def current(self) -> Pause | None:
        return self._pause

    def claim_limit(self, batch: int, quota_freed: Callable[[], bool]) -> int:
        """How many messages to claim now: `batch` when open, one when a probe is due, none while paused. A quota
        pause is probed with `quota_freed()` (SES asked again) rather than with a message."""
        with self._lock:
            pause = self._pause
            if pause is None:
                return batch
            if self._probe_pk is not None or time.monotonic() < self._probe_at:
                return 0
            if pause.reason != DAILY_QUOTA:
                return 1
            self._probe_at = time.monotonic() + self._probe_seconds
        if quota_freed():
            self.open()
            return batch
        return 0

    def seconds_to_probe(self) -> float:
        return max(0.0, self._probe_at - time.monotonic())

    def probing_with(self, pk: int) -> None:
        """The message just claimed while paused is the probe."""
        if self._pause is not None:
            self._probe_pk = pk

    def shut(self, pause: Pause) -> None:
        with self._lock:
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
            self._on_change(pause)

    def open(self) -> None:
        with self._lock:
            was, self._pause, self._probe_pk = self._pause, None, None
        if was is not None:
            log.info("dispatch resumed: %s is over", was.reason)
            self._on_change(None)

    def after_attempt(self, pk: int, failure: Failure | None, *, sent: bool) -> None:
        """A probe's outcome opens the gate or keeps it shut; other messages' outcomes change nothing here."""
        if pk != self._probe_pk:
            return
        if failure is not None and failure.outcome is Outcome.PAUSE:
            return  # shut() has scheduled the next probe
        if sent or failure is not None:
            self.open()  # SES answered the probe with something other than "nobody can send"
        else:
            with self._lock:  # the probe never reached SES (suppressed, expired): probe with the next message
                self._probe_pk, self._probe_at = None, 0.0
