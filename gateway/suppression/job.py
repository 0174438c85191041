"""The suppression-list sync as periodic work in the gateway process.

Every gateway on a database runs this job, and one pass runs at a time: a pass takes the lease in the database, and
starts only when no pass (by any gateway, or by `mailgw suppression sync`) completed within the period, so several
gateways do not multiply the calls made to SES.
"""

import datetime
import logging
import random
import threading

from gateway.core.config import Settings
from gateway.core.loops import PRODUCTION, Loop, Timings
from gateway.ses.suppression_list import SesSuppressionList, SuppressionCallFailed
from gateway.store.database import UNAVAILABLE, unit_of_work
from gateway.suppression.sync import LeaseLost, SuppressionSync, describe

log = logging.getLogger(__name__)


class SuppressionJob:
    """Runs SuppressionSync passes in a loop of its own (core/loops.py) until stopped."""

    def __init__(self, settings: Settings, ses: SesSuppressionList | None = None, *, timings: Timings = PRODUCTION):
        self._stopping = threading.Event()
        self._every = settings.ses_suppression_sync_seconds
        ses = ses or SesSuppressionList(stopping=self._stopping, retry_base_seconds=timings.retry_base_seconds)
        self._sync = SuppressionSync.from_settings(settings, ses, stopping=self._stopping)
        # An idle job asks every suppression_check_seconds whether a pass is due (after a failed one, a whole period);
        # gateways started together do not all ask at once.
        self._check = min(self._every, timings.suppression_check_seconds)
        first = random.uniform(0, min(timings.suppression_jitter_seconds, self._every))
        self.loops = [
            Loop(
                "suppression-sync",
                self._step,
                every=self._every,
                stopping=self._stopping,
                first_wait=first,
                quiet=UNAVAILABLE,
            )  # fmt: skip
        ]

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop(self, grace: float) -> None:
        """Stop after the current SES call; a pass cut short is done again by the next one."""
        self._stopping.set()
        for loop in self.loops:
            loop.join(max(grace, 1.0))

    def _step(self) -> float:
        return self._check if self.run_once() else self._every

    def run_once(self) -> bool:
        """A pass if one is due; False when SES failed it (the next try waits a whole period, as after a database that
        did not answer or a bug, which the loop logs)."""
        try:
            with unit_of_work():
                report = self._sync.run(every=datetime.timedelta(seconds=self._every))
            if report is not None:
                log.info("SES suppression list sync, %s", describe(report))
            return True
        except SuppressionCallFailed as exc:
            hint = " (the gateway's credentials need ses:ListSuppressedDestinations)" if "ACCESS" in str(exc) else ""
            log.warning("SES suppression list sync failed: %s%s; trying again later", exc, hint)
        except LeaseLost as exc:
            if not self._stopping.is_set():
                log.warning("SES suppression list sync stopped: %s", exc)
        return False
