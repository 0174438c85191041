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
from gateway.ses.suppression_list import SesSuppressionList, SuppressionCallFailed
from gateway.store.database import UNAVAILABLE, unit_of_work
from gateway.suppression.sync import LeaseLost, SuppressionSync, describe

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0  # how often an idle job asks whether a pass is due
START_JITTER_SECONDS = 5.0  # gateways started together do not all ask at once


class SuppressionJob:
    """Runs SuppressionSync passes on a thread of its own until stopped."""

    def __init__(self, settings: Settings, ses: SesSuppressionList | None = None):
        self._stopping = threading.Event()
        self._every = settings.ses_suppression_sync_seconds
        ses = ses or SesSuppressionList(stopping=self._stopping)
        self._sync = SuppressionSync.from_settings(settings, ses, stopping=self._stopping)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suppression-sync", daemon=True)
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Stop after the current SES call; a pass cut short is done again by the next one."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(grace, 1.0))

    def _run(self) -> None:
        wait = random.uniform(0, min(START_JITTER_SECONDS, self._every))
        while not self._stopping.wait(wait):
            wait = min(self._every, CHECK_SECONDS) if self.run_once() else self._every

    def run_once(self) -> bool:
        """A pass if one is due; False when it failed (the next try waits a whole period)."""
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
        except UNAVAILABLE as exc:
            log.warning("SES suppression list sync cannot reach the database: %s", type(exc).__name__)
        except Exception:
            log.exception("SES suppression list sync failed; trying again later")
        return False
