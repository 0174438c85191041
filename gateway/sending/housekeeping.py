"""Housekeeping beside dispatch: the leases of dispatchers that died, unknown outcomes sent once more, messages
past their age or their retention, SES's quotas read again, and lanes for messages an older replica queued."""

import datetime
import logging
import threading
import time
from collections.abc import Callable

from gateway.core.failures import LEASE_EXPIRED, MESSAGE_EXPIRED
from gateway.core.loops import PRODUCTION, Timings
from gateway.sending.pacing import Pacer
from gateway.store import event_log, lanes, upkeep
from gateway.store.database import unit_of_work, utcnow

log = logging.getLogger(__name__)

PURGE_SLICE_SECONDS = 0.5  # purging between two sweeps, at most: a long purge does not hold up expired leases


class Housekeeper:
    """One per dispatching process; every replica sweeps, and each sweep is one idempotent statement per kind."""

    def __init__(
        self,
        pacer: Pacer,
        *,
        unknown_resend_seconds: float,
        max_message_age_seconds: float,
        retention_days: float,
        event_retention_days: float | None = None,
        paused: Callable[[], bool],
        timings: Timings = PRODUCTION,
        stopping: threading.Event | None = None,
    ):
        self._pacer = pacer
        self._resend = datetime.timedelta(seconds=unknown_resend_seconds)
        self._max_age = datetime.timedelta(seconds=max_message_age_seconds)
        self._retention = datetime.timedelta(days=retention_days)
        self._event_retention = datetime.timedelta(days=event_retention_days or retention_days)
        self._paused = paused
        self._timings = timings
        self._stopping = stopping or threading.Event()
        self._next_refresh = time.monotonic() + timings.quota_refresh_seconds
        self._next_purge = time.monotonic()  # at start, then every purge_seconds
        self._next_adoption = time.monotonic() + timings.quota_refresh_seconds

    def step(self) -> float:
        """One turn of its loop: a sweep; a slice of the purge when one is due (at start, then hourly); SES's quotas
        read again every five minutes (a paused dispatch probes them itself)."""
        with unit_of_work():
            self.sweep()
            if time.monotonic() >= self._next_purge and self.purge(self._stopping, PURGE_SLICE_SECONDS):
                self._next_purge = time.monotonic() + self._timings.purge_seconds
        if time.monotonic() >= self._next_adoption:
            with unit_of_work():
                if adopted := lanes.adopt_orphans():
                    log.warning("%d lanes added for messages queued by a gateway from before lanes", adopted)
            self._next_adoption = time.monotonic() + self._timings.quota_refresh_seconds
        if time.monotonic() >= self._next_refresh and not self._paused():
            with unit_of_work():
                self._pacer.refresh()
            self._next_refresh = time.monotonic() + self._timings.quota_refresh_seconds
        return self._timings.sweep_seconds

    def sweep(self) -> None:
        interrupted = upkeep.end_expired_leases(
            reason=LEASE_EXPIRED.reason, detail=LEASE_EXPIRED.detail, resend_after=self._resend
        )
        if interrupted:
            log.warning("%d messages were held by a dispatcher that stopped mid-send: outcome unknown", interrupted)
        if self._resend and (resent := upkeep.queue_unknown_for_resend(self._max_age)):
            log.warning("%d messages with an unknown outcome and no SES event since: sent once more", resent)
        if expired := upkeep.expire_older_than(self._max_age, reason=MESSAGE_EXPIRED):
            log.warning("%d messages could not be sent within MAILGW_MAX_MESSAGE_AGE_SECONDS: expired", expired)

    def purge(self, stopping: threading.Event, seconds: float) -> bool:
        """Delete what is past its retention in batches, each a short transaction followed by a pause as long (so a
        writer waiting for SQLite's lock gets it between two), for up to `seconds`; True once nothing is left."""
        until = time.monotonic() + seconds
        kinds = (
            (upkeep.purge_batch, self._retention, "messages and feedback events", "MAILGW_MESSAGE_RETENTION_DAYS"),
            (event_log.purge_batch, self._event_retention, "event log records", "MAILGW_EVENT_RETENTION_DAYS"),
        )
        for purge_batch, retention, what, setting in kinds:
            cutoff, purged = utcnow() - retention, 0
            while True:
                started = time.monotonic()
                deleted = purge_batch(cutoff)
                purged += deleted
                if not deleted or time.monotonic() >= until or stopping.wait(max(time.monotonic() - started, 0.005)):
                    break
            if purged:
                log.info("purged %d %s older than %s", purged, what, setting)
            if deleted:
                return False  # out of time: the rest in the next slice
        return True
