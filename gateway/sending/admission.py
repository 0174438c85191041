"""Admission: whether a caller may queue one more message now, by its policy (core/policy.py) and the gateway's cap.

Asked by accept() after the guard, before the insert; every refusal queues nothing. The counts are the database's,
so every replica enforces the same limits:

- max_priority: PERMISSION_DENIED, PRIORITY_NOT_ALLOWED.
- max_queued: the caller's queued messages, counted at each call (concurrent calls may pass a full queue by as
  many as race on the count).
- max_submit_rate: a token bucket row per caller (store/budget.py, the one every replica shares), holding one token:
  a burst gets at most rate x elapsed + 1.
- MAILGW_MAX_QUEUED_MESSAGES: every caller's queued messages, counted at most once a second by each gateway (a
  guard for the disk, not a quota).
"""

import hashlib
import threading
import time

from gateway.core import metrics
from gateway.core.errors import CallerQueueFull, CallerRateLimited, OverQuota, PriorityNotAllowed, QueueFull
from gateway.core.policy import CallerPolicies
from gateway.core.states import Priority
from gateway.store import budget, lanes
from gateway.store.database import seen_rows

QUEUE_FULL_RETRY_SECONDS = 5.0  # a hint: a full queue drains at the caller's share of the rate, which varies
TOTAL_RECOUNT_SECONDS = 1.0


class Admission:
    """The limits of one gateway: its callers' policies and its cap on queued messages."""

    def __init__(self, policies: CallerPolicies, max_queued_messages: int):
        self._policies = policies
        self._cap = max_queued_messages
        self._total = 0
        self._counted_at = -TOTAL_RECOUNT_SECONDS
        self._lock = threading.Lock()

    def admit(self, caller: str, priority: Priority) -> None:
        """Nothing, or the refusal (an OverQuota or PriorityNotAllowed), counted by its reason."""
        try:
            self._admit(caller, priority)
        except (OverQuota, PriorityNotAllowed) as refusal:
            metrics.admission_refused(refusal.reason)
            raise

    def _admit(self, caller: str, priority: Priority) -> None:
        policy = self._policies.of(caller)
        if priority < policy.max_priority:
            raise PriorityNotAllowed(
                f"this caller may send at most {policy.max_priority.label} priority",
                maxPriority=policy.max_priority.label,
            )
        self._gateway_room()
        if policy.max_queued is not None:
            queued = lanes.queued_of(caller, up_to=policy.max_queued)
            if queued >= policy.max_queued:
                raise CallerQueueFull(
                    f"this caller has {policy.max_queued} messages queued, its limit",
                    subject=f"caller:{caller}",
                    description=f"at most {policy.max_queued} queued messages (max_queued)",
                    retry_after=QUEUE_FULL_RETRY_SECONDS,
                    limit=str(policy.max_queued),
                )
        if policy.max_submit_rate is not None:
            rate = policy.max_submit_rate
            name = bucket_name(caller)
            seen_rows.ensure(("budget", name), lambda: budget.ensure(name, 1.0))
            grant = budget.spend(name, 1, lambda granted: granted, rate=rate, capacity=1.0)
            if not grant.used:
                raise CallerRateLimited(
                    f"this caller may submit {rate:g} messages per second",
                    subject=f"caller:{caller}",
                    description=f"at most {rate:g} messages per second (max_submit_rate)",
                    retry_after=grant.wait,
                    limit=f"{rate:g}",
                )

    def _gateway_room(self) -> None:
        with self._lock:
            if time.monotonic() - self._counted_at >= TOTAL_RECOUNT_SECONDS:
                self._total = lanes.queued(up_to=self._cap)
                self._counted_at = time.monotonic()
            full = self._total >= self._cap
            self._total += 1  # counted until the next recount
        if full:
            raise QueueFull(
                f"the gateway holds {self._cap} queued messages, its limit",
                subject="gateway",
                description=f"at most {self._cap} queued messages (MAILGW_MAX_QUEUED_MESSAGES)",
                retry_after=QUEUE_FULL_RETRY_SECONDS,
                limit=str(self._cap),
            )


def bucket_name(caller: str) -> str:
    """The caller's row in the shared budget table (names are 32 characters; a caller's name is up to 128)."""
    return "caller:" + hashlib.sha256(caller.encode()).hexdigest()[:24]


OPEN = Admission(CallerPolicies(), 1_000_000)  # without a policy: every priority, no limits
