"""The sidecar's Prometheus metrics: SNS notifications by type and outcome, verification failures by reason, the
time an answer took; and its /metrics listener (MAILGW_FEEDBACK_METRICS_ADDR), an aiohttp server of its own, since
the public port (SNS, recipients' unsubscribe clicks) must not expose them. Contact status changes are counted by
the one status function (gateway/core/metrics.py), whichever process makes them.
"""

import functools
import logging
import time

from aiohttp import web
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from feedback_http import sns
from feedback_http.events import KNOWN_TYPES
from gateway.core.config import host_port, listen_address

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "mailgw_sns_notifications",
    "SNS messages received, by intake (https: POSTed to /sns; sqs: read from MAILGW_SQS_QUEUE_URL), type (the SES "
    "event type of a notification; SNS's type, Notification, "
    "SubscriptionConfirmation or UnsubscribeConfirmation, when it was refused before its SES event was read; "
    "'unknown' before the envelope was read) and outcome (recorded, duplicate, confirmed, noted, malformed, "
    "forbidden, too_large, timeout, retry_later, error).",
    ["type", "outcome", "intake"],
)
HANDLING_SECONDS = Histogram(
    "mailgw_sns_handling_seconds",
    "Time from receiving an SNS POST to the answer (including the group commit).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
VERIFICATION_FAILURES = Counter(
    "mailgw_sns_verification_failures",
    "SNS messages refused as not genuine (403), by reason.",
    ["reason"],
)

# SNS's types until the SES event is read, then the SES event type
TYPES = frozenset(KNOWN_TYPES | {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
TYPE = web.RequestKey("sns_type", str)  # what the handler learnt of the message
# The answers of POST /sns: a 200's body says which; any other status is a refusal or a "retry later".
OK_OUTCOMES = {
    "recorded": "recorded",
    "duplicate": "duplicate",
    "subscription confirmed": "confirmed",
    "noted": "noted",
}
STATUS_OUTCOMES = {400: "malformed", 403: "forbidden", 408: "timeout", 413: "too_large", 503: "retry_later"}
# VerificationFailed's messages (feedback_http/sns.py) -> reason; the first prefix that matches wins.
VERIFICATION_REASONS = (
    ("topic is not allowed", "topic_not_allowed"),
    ("signature does not match", "bad_signature"),
    ("message is too old", "too_old"),
    ("certificate was not valid", "certificate_expired"),
    ("unsupported SignatureVersion", "unsupported_signature_version"),
    ("Signature or Timestamp unreadable", "unreadable_signature"),
    ("URL", "certificate_url"),
    ("certificate URL does not end", "certificate_url"),
    ("certificate", "bad_certificate"),  # the host refused it, too large, not a PEM RSA certificate
    ("missing", "incomplete_envelope"),
    ("unknown Type", "incomplete_envelope"),
)


def note_type(request: web.Request, kind: str) -> None:
    """What the message turned out to be, for its count; anything outside the known types counts as 'other'."""
    request[TYPE] = kind if kind in TYPES or kind == "unknown" else "other"


# What an intake's outcome is called in the counts: the same names as POST /sns's answers.
INTAKE_OUTCOMES = {
    "recorded": "recorded",
    "duplicate": "duplicate",
    "confirmed": "confirmed",
    "unsubscribed": "noted",
    "malformed": "malformed",
    "rejected": "forbidden",
    "retry later": "retry_later",
    "database unavailable": "retry_later",
}


@functools.cache
def notification(kind: str, outcome: str, intake: str = "https"):
    """The bound counter of one (type, outcome, intake)."""
    return NOTIFICATIONS.labels(kind if kind in TYPES or kind == "unknown" else "other", outcome, intake)


def taken_from_queue(kind: str, outcome: str) -> None:
    """One SQS message through the intake; `outcome` is intake.Outcome's value (None: applying it failed)."""
    notification(kind, INTAKE_OUTCOMES.get(outcome, "error"), "sqs").inc()


def counted(handler):
    """POST /sns counted by type and outcome, and timed: every answer, whichever part of the handler gave it."""

    @functools.wraps(handler)
    async def counted_handler(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await handler(request)
            text = getattr(response, "text", "")
            outcome = OK_OUTCOMES.get(text, "recorded") if response.status == 200 else _refusal(response)
            return response
        except web.HTTPException as exc:
            outcome = _refusal(exc)
            raise
        finally:
            HANDLING_SECONDS.observe(time.perf_counter() - started)
            notification(request.get(TYPE, "unknown"), outcome).inc()

    return counted_handler


def _refusal(response: web.StreamResponse) -> str:
    return STATUS_OUTCOMES.get(response.status, "error")


@functools.cache
def _verification_failure(reason: str):
    return VERIFICATION_FAILURES.labels(reason)


def verification_failed(exc: sns.VerificationFailed) -> None:
    text = str(exc)
    reason = next((reason for prefix, reason in VERIFICATION_REASONS if text.startswith(prefix)), "other")
    _verification_failure(reason).inc()


async def scrape(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


METRICS_PORT = web.AppKey("metrics_port", int)


def listener(address: str):
    """A cleanup context serving GET /metrics on `address`, for as long as the sidecar runs; the bound port in
    app[METRICS_PORT]. The address was claimed at start (one owner per port)."""

    async def serve(app: web.Application):
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", scrape)
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        host, port = listen_address(address, "MAILGW_FEEDBACK_METRICS_ADDR")
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        app[METRICS_PORT] = runner.addresses[0][1]
        log.info("sidecar listening: metrics on http://%s/metrics", host_port(host, app[METRICS_PORT]))
        yield
        await runner.cleanup()

    return serve
