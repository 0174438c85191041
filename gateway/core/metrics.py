"""What the gateway counts for Prometheus: the metric objects of its work (the guard, dispatch, SES, pacing), updated
where the work happens. Status changes, which both processes make, are counted in core/contact_metrics.py (the
sidecar imports that module, not this one, so its /metrics shows none of these); the gRPC metrics are in
rpc/metrics.py; the listener is process/exposition.py.

Hot paths (a refused SendEmail is ~75 us of handler, SNS ingest ~1,000/s) take a label child that was bound once
(`.labels()` costs ~2 us a call, an increment of a bound child ~0.3 us), so no update builds a label dict per call.
Every label's values come from a closed set (enums, the failure table); text from outside never becomes a label.
"""

from prometheus_client import Counter, Gauge, Histogram

from gateway.core.failures import (
    CALLER_QUEUE_FULL,
    CALLER_RATE_LIMITED,
    PRIORITY_NOT_ALLOWED,
    QUEUE_FULL,
    SES_ERRORS,
    Failure,
)
from gateway.core.states import ContactStatus, MessageState, Priority

# --- the guard ---------------------------------------------------------------------------------------------

GUARD_REFUSALS = Counter(
    "mailgw_guard_refusals",
    "Sends the Email Guard refused, by the recipient's status and by stage (accept: SendEmail answered "
    "FAILED_PRECONDITION; dispatch: suppressed after acceptance, SES not called).",
    ["status", "stage"],
)
_REFUSED = {
    (status, stage): GUARD_REFUSALS.labels(status.value, stage)
    for status in ContactStatus
    if status.suppressed
    for stage in ("accept", "dispatch")
}


def guard_refused(status: ContactStatus | None, stage: str) -> None:
    """One refusal; `status` None: the contact was deleted after acceptance."""
    child = _REFUSED.get((status, stage)) if status is not None else None
    (child or GUARD_REFUSALS.labels("deleted", stage)).inc()


# --- admission (the caller policy and the gateway's cap) ------------------------------------------------------

ADMISSION_REFUSALS = Counter(
    "mailgw_admission_refusals",
    "SendEmail calls refused by a limit, by ErrorInfo reason: PRIORITY_NOT_ALLOWED, CALLER_QUEUE_FULL, "
    "CALLER_RATE_LIMITED (the caller policy), QUEUE_FULL (MAILGW_MAX_QUEUED_MESSAGES). Nothing was queued.",
    ["reason"],
)
_ADMISSION_REFUSALS = {
    reason: ADMISSION_REFUSALS.labels(reason)
    for reason in (PRIORITY_NOT_ALLOWED, CALLER_QUEUE_FULL, CALLER_RATE_LIMITED, QUEUE_FULL)
}


def admission_refused(reason: str) -> None:
    _ADMISSION_REFUSALS[reason].inc()


# --- dispatch and SES ----------------------------------------------------------------------------------------

SENDS = Counter(
    "mailgw_sends",
    "Dispatched messages by what became of the attempt, counted once it was recorded: sent (SES took it), retry "
    "(queued again after a backoff), failed (SES refused it for good), unknown (maybe sent), suppressed (the guard "
    "refused it at dispatch), expired.",
    ["outcome"],
)
SEND_OUTCOMES = {
    MessageState.SENT: "sent",
    MessageState.QUEUED: "retry",
    MessageState.FAILED: "failed",
    MessageState.UNKNOWN: "unknown",
    MessageState.SUPPRESSED: "suppressed",
    MessageState.EXPIRED: "expired",
}
_SENDS = {state: SENDS.labels(outcome) for state, outcome in SEND_OUTCOMES.items()}


def sends_recorded(states: list[MessageState]) -> None:
    """Attempts whose outcome was just committed (one recorder transaction)."""
    for state in states:
        _SENDS[state].inc()


ACCEPT_TO_SES = Histogram(
    "mailgw_accept_to_ses_seconds",
    "Time from SendEmail's acceptance to SES's acceptance of the message, by priority: the figure a delivery "
    "objective is set on (a retried message counts its whole wait).",
    ["priority"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0),
)
_ACCEPT_TO_SES = {int(priority): ACCEPT_TO_SES.labels(priority.label) for priority in Priority}


def reached_ses(priority: int, seconds: float) -> None:
    """SES accepted a message of `priority` that SendEmail accepted `seconds` ago."""
    _ACCEPT_TO_SES[priority].observe(max(0.0, seconds))


SES_ERRORS_TOTAL = Counter(
    "mailgw_ses_errors",
    "Sends that SES refused or that did not reach it, by SES's error code (one of the failure table's, 'other' for "
    "a code the table does not know, 'none' when SES did not answer) and the gateway's reason (failures.py).",
    ["code", "reason"],
)
_ses_errors: dict[tuple[str, str], object] = {}


def ses_error(failure: Failure) -> None:
    code = failure.ses_error_code
    if code and code not in SES_ERRORS:
        code = "other"  # SES's code is text from the network: only the table's codes become labels
    key = (code or "none", failure.reason)
    child = _ses_errors.get(key)
    if child is None:
        child = _ses_errors[key] = SES_ERRORS_TOTAL.labels(*key)
    child.inc()


# Gauges a process sets from what it learnt; with MAILGW_GRPC_PROCESSES the copies agree, so the largest live value
# is the answer (prometheus_client ignores the mode outside multiprocess mode).
SEND_RATE_LIMIT = Gauge(
    "mailgw_send_rate_limit_per_second",
    "The rate dispatch paces all replicas to: MAILGW_SEND_RATE, else SES's MaxSendRate; 0: not paced (outbox).",
    multiprocess_mode="livemax",
)
SES_QUOTA_MAX = Gauge(
    "mailgw_ses_quota_max_24h_messages",
    "SES's rolling 24-hour sending quota (GetAccount Max24HourSend; -1: unlimited), as last read.",
    multiprocess_mode="livemax",
)
SES_QUOTA_SENT = Gauge(
    "mailgw_ses_quota_sent_last_24h_messages",
    "Messages SES counts against the 24-hour quota (GetAccount SentLast24Hours), as last read.",
    multiprocess_mode="livemax",
)


# --- the reputation guard (sending/reputation.py), as its last check read the window --------------------------------

REPUTATION_RATE = Gauge(
    "mailgw_reputation_rate_ratio",
    "Bounce and complaint rates of the sends in the reputation guard's window (0-1), as its last check read them.",
    ["rate"],
    multiprocess_mode="livemax",
)
REPUTATION_THRESHOLD = Gauge(
    "mailgw_reputation_threshold_ratio",
    "The reputation guard's thresholds (0-1): at `slow` dispatch slows, at `pause` it pauses.",
    ["rate", "action"],
    multiprocess_mode="livemax",
)
REPUTATION_SENDS = Gauge(
    "mailgw_reputation_window_sends",
    "Sends in the reputation guard's window; below MAILGW_REPUTATION_MIN_SENDS the rates are not acted on.",
    multiprocess_mode="livemax",
)
REPUTATION_LEVEL = Gauge(
    "mailgw_reputation_level",
    "What the reputation guard does to dispatch, for every gateway on the database: 0 full pace, 1 slowed, 2 paused.",
    multiprocess_mode="livemax",
)


TENANTS_HELD = Gauge(
    "mailgw_tenants_held",
    "Tenants whose own bounce or complaint rate has them paused (their mail held until an operator resumes them) "
    "or slowed, for every gateway on the database (`mailgw tenants list` names them).",
    ["level"],
    multiprocess_mode="livemax",
)


def tenants_held(*, paused: int, slowed: int) -> None:
    TENANTS_HELD.labels("paused").set(paused)
    TENANTS_HELD.labels("slowed").set(slowed)


def reputation_thresholds(slow_bounce: float, slow_complaint: float, pause_bounce: float, pause_complaint: float):
    for rate, action, value in (
        ("bounce", "slow", slow_bounce),
        ("complaint", "slow", slow_complaint),
        ("bounce", "pause", pause_bounce),
        ("complaint", "pause", pause_complaint),
    ):
        REPUTATION_THRESHOLD.labels(rate, action).set(value)


def reputation_read(sends: int, bounces: int, complaints: int, level: int) -> None:
    REPUTATION_SENDS.set(sends)
    REPUTATION_RATE.labels("bounce").set(bounces / sends if sends else 0.0)
    REPUTATION_RATE.labels("complaint").set(complaints / sends if sends else 0.0)
    REPUTATION_LEVEL.set(level)


SES_TENANTS = Gauge(
    "mailgw_ses_tenants",
    "Tenants by the sending status SES last gave the gateway (MAILGW_SES_TENANTS): enabled, reinstated, disabled "
    "(their mail held), missing (SES has no such tenant: held), unread (their mail waits for a first read).",
    ["status"],
    multiprocess_mode="livemax",
)
SES_TENANT_STATUSES = {"ENABLED": "enabled", "REINSTATED": "reinstated", "DISABLED": "disabled", "MISSING": "missing"}


def ses_tenants(counts: dict[str, int]) -> None:
    for status, label in SES_TENANT_STATUSES.items():
        SES_TENANTS.labels(label).set(counts.get(status, 0))
    SES_TENANTS.labels("unread").set(sum(n for status, n in counts.items() if status not in SES_TENANT_STATUSES))


# --- webhooks (events/webhooks.py) -------------------------------------------------------------------------------

WEBHOOK_POSTS = Counter(
    "mailgw_webhook_posts_total",
    "Webhook POSTs by caller (those of MAILGW_WEBHOOK_URLS) and result: delivered (a 2xx), failed (any other answer, "
    "a redirect included, or none within the timeout).",
    ["caller", "result"],
)
WEBHOOK_EVENTS = Counter(
    "mailgw_webhook_events_total", "Event records a caller's webhook endpoint acknowledged (2xx).", ["caller"]
)
WEBHOOK_PAUSED = Gauge(
    "mailgw_webhook_paused",
    "1 while a caller's webhook endpoint has failed 5 times in a row or more: its records wait, and the gateway "
    "delivering them tries again as its backoff allows, at most 30 s apart (the other gateways show 0).",
    ["caller"],
    multiprocess_mode="livemax",
)
WEBHOOK_DELAY = Histogram(
    "mailgw_webhook_delay_seconds",
    "From the writing of a batch's first record to its acknowledgement by the caller's endpoint.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0),
)
