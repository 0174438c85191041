"""Pacing: every replica together stays within one send rate and SES's daily quota, shared through the database."""

import logging
from collections.abc import Callable

from gateway.core import metrics
from gateway.core.failures import SendFailed
from gateway.store import budget
from gateway.store.database import database

log = logging.getLogger(__name__)

BUDGET = "ses"
BURST_SECONDS = 0.2  # the bucket holds a fifth of a second's sends: over any window, at most that many above the rate
FALLBACK_RATE = 1.0  # messages per second until GetAccount answers: SES's sandbox rate, which every account has
MIN_RATE = 0.01


class Pacer:
    """Hands out permission to send: MAILGW_SEND_RATE when set, otherwise SES's MaxSendRate (GetAccount); the
    outbox transport without MAILGW_SEND_RATE is not paced at all."""

    def __init__(self, transport, configured_rate: float = 0.0):
        self._transport = transport
        self._configured_rate = configured_rate
        self._asks_ses = transport.paced_by_ses
        self.rate: float | None = configured_rate or (FALLBACK_RATE if self._asks_ses else None)
        metrics.SEND_RATE_LIMIT.set(self.rate or 0.0)
        self.fraction = 1.0  # of the rate: the reputation guard slows dispatch (an unpaced outbox stays unpaced)

    @property
    def pace(self) -> float | None:
        """Sends per second now: the rate, times the reputation guard's fraction."""
        return None if self.rate is None else max(MIN_RATE, self.rate * self.fraction)

    @property
    def capacity(self) -> float:
        return max(1.0, (self.pace or 0.0) * BURST_SECONDS)

    def slow_to(self, fraction: float) -> None:
        self.fraction = fraction

    def start(self) -> None:
        """The shared row exists, and SES's quotas are read once before the first send."""
        if self.rate is not None:
            budget.ensure(BUDGET, self.capacity)
        self.refresh()

    def spend(self, wanted: int, use: Callable[[int], int]) -> budget.Grant:
        """Up to `wanted` sends that may start now, handed to `use`, which returns how many it started (see
        budget.spend); one transaction with whatever `use` writes."""
        if self.rate is None:
            with database.atomic():
                return budget.Grant(use(wanted), 0.0, quota_spent=False)
        return budget.spend(BUDGET, wanted, use, rate=self.pace, capacity=self.capacity)

    def refresh(self) -> int | None:
        """Read SES's MaxSendRate and 24-hour quota (GetAccount) into the shared budget. The messages SES takes
        before its 24-hour window frees some (-1: no limit), or None when SES did not say (the last values stay)."""
        if not self._asks_ses:
            return -1
        try:
            quota = self._transport.send_quota()
        except SendFailed as exc:
            log.warning("cannot read the SES send quota (GetAccount): %s; sending at %.3g/s", exc, self.rate)
            return None
        ses_rate = max(quota.max_send_rate, MIN_RATE)
        if not self._configured_rate and ses_rate != self.rate:
            log.info("SES allows %.3g messages per second: dispatch paces to that", ses_rate)
            self.rate = ses_rate
            metrics.SEND_RATE_LIMIT.set(ses_rate)
        metrics.SES_QUOTA_MAX.set(quota.max_24_hour_send)
        metrics.SES_QUOTA_SENT.set(quota.sent_last_24_hours)
        budget.set_quota(BUDGET, quota.remaining)
        return quota.remaining
