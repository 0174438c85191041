"""Background work, every loop alike: a step on a thread of its own, again and again until the process stops, with one
way to wait, to log a database that does not answer, and to survive a bug. The loops a gateway runs are one list
(process/gateway.py logs it at start); each component only says what one step does."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timings:
    """The periods of the gateway's loops and backoffs: not settings an operator tunes, so not read from the
    environment. Production runs with these defaults; tests build components with shorter ones (milliseconds), so
    what takes seconds here is seen in a moment there."""

    poll_seconds: float = 0.5  # an idle dispatcher looks for due messages this often (at once on a local accept)
    sweep_seconds: float = 1.0  # leases that ended, unknown outcomes to resend, messages past their age
    retry_base_seconds: float = 1.0  # the first backoff after a failure that sent nothing (then doubled, capped)
    follow_seconds: float = 1.0  # every gateway reads the reputation guard's stored decision this often
    quota_refresh_seconds: float = 300.0  # SES's send quota read again (GetAccount)
    purge_seconds: float = 3600.0  # the retention purge runs at start, then this often
    suppression_check_seconds: float = 60.0  # an idle suppression sync asks this often whether a pass is due
    suppression_jitter_seconds: float = 5.0  # gateways started together do not all ask at once
    ses_tenant_retry_seconds: float = 30.0  # a tenant's SES status that could not be read is asked for again
    event_poll_seconds: float = 0.1  # the event log: records without a position looked for, watchers woken
    webhook_idle_seconds: float = 5.0  # an idle webhook looks again this often (at once when the log grows)
    webhook_retry_base_seconds: float = 0.5  # the first backoff after a webhook POST failed (then doubled, capped)
    webhook_retry_max_seconds: float = 30.0  # ... at this: a paused webhook is tried this often
    webhook_post_seconds: float = 15.0  # a webhook POST as a whole, from connecting to the answer's last byte
    webhook_lease_seconds: float = 40.0  # a gateway delivers a caller's records this long without renewing its hold;
    # renewed before a POST once less than half is left, so more than twice webhook_post_seconds: no POST outlives it


PRODUCTION = Timings()


class Loop:
    """`step()` on a thread named `name`, then a wait of what it returned (seconds; None: `every`), until `stopping`
    is set; `wake` ends a wait early (a message accepted here). `quiet` exceptions (the database did not answer) are
    one warning line; any other is logged with its traceback. Either way the loop goes on after `every`."""

    def __init__(
        self,
        name: str,
        step: Callable[[], float | None],
        *,
        every: float,
        stopping: threading.Event,
        wake: threading.Event | None = None,
        first_wait: float = 0.0,
        quiet: tuple[type[BaseException], ...] = (),
    ):
        self.name = name
        self.every = every
        self._step = step
        self._stopping = stopping
        self._wake = wake
        self._first_wait = first_wait
        self._quiet = quiet
        self.turns = 0  # steps done so far: how a test waits for "a few more turns" instead of for the clock
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether its thread still runs (a step still in hand after `join` timed out)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        wait = self._first_wait
        while not self._wait(wait):
            try:
                wait = self._step()
            except self._quiet as exc:
                log.warning("%s: the database did not answer (%s); trying again", self.name, type(exc).__name__)
                wait = None
            except Exception:
                log.exception("%s failed; trying again", self.name)
                wait = None
            if wait is None:
                wait = self.every
            self.turns += 1

    def _wait(self, seconds: float) -> bool:
        """Wait `seconds` (less when woken); whether the loop is to stop."""
        if self._stopping.is_set():
            return True
        if seconds <= 0:
            return False
        if self._wake is None:
            return self._stopping.wait(seconds)
        self._wake.wait(seconds)
        self._wake.clear()
        return self._stopping.is_set()
