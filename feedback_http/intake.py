"""One SNS envelope, whichever transport brought it (POST /sns, an SQS queue), to a committed change: verify it, parse
its SES event, record it once. The transport only maps the outcome to its own answer (an HTTP status; delete or leave
an SQS message)."""

import contextlib
import datetime
import enum
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp

from feedback_http import sns
from feedback_http.config import FeedbackSettings
from feedback_http.events import MalformedEvent, parse_ses_event
from feedback_http.feedback import record_event
from feedback_http.writer import GroupWriter
from gateway.core.logs import masked
from gateway.store.database import UNAVAILABLE, database, is_postgres_url

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What became of one envelope."""

    RECORDED = "recorded"  # applied and committed
    DUPLICATE = "duplicate"  # this notification id was applied before (a redelivery, or the other transport's copy)
    CONFIRMED = "confirmed"  # a SubscriptionConfirmation of an allowed topic, confirmed
    UNSUBSCRIBED = "unsubscribed"  # an UnsubscribeConfirmation, only logged
    MALFORMED = "malformed"  # not an SNS envelope, or its Message not an SES event: no retry can change that
    REJECTED = "rejected"  # not genuinely signed by SNS, or not from an allowed topic
    RETRY_LATER = "retry later"  # the certificate host or the SubscribeURL did not answer
    DATABASE_UNAVAILABLE = "database unavailable"  # nothing was committed; the database did not answer

    @property
    def done(self) -> bool:
        """The transport may acknowledge it (HTTP 200, SQS delete): it is committed, or there is nothing to do."""
        return self in (Outcome.RECORDED, Outcome.DUPLICATE, Outcome.CONFIRMED, Outcome.UNSUBSCRIBED)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    text: str  # a short reason for an answer or a log line; never the message itself
    notification_id: str = ""  # the SNS MessageId, once the envelope was readable
    kind: str = "unknown"  # SNS's Type once the envelope was read, then the SES event type: what metrics count by


def warn_about(settings: FeedbackSettings, sns_endpoint_url: str | None) -> None:
    """Settings that let intake run but that an operator should hear about at start."""
    if not settings.sns_topic_arns:
        log.warning("MAILGW_SNS_TOPIC_ARNS is empty: every SNS message will be refused")
    if sns_endpoint_url:
        log.warning(
            "AWS_ENDPOINT_URL_SNS is set: SNS signing certificates are fetched from %s, which therefore vouches for "
            "every notification (for tests and local stacks only)",
            sns_endpoint_url,
        )


class Intake:
    """Verifies and applies SNS envelopes; one per process, shared by its transports (one certificate cache, one
    group-commit writer)."""

    def __init__(
        self,
        verifier: sns.SnsVerifier,
        writer: GroupWriter,
        *,
        soft_bounce_limit: int = 0,
        on_rejected: Callable[[sns.VerificationFailed], None] = lambda failure: None,
    ) -> None:
        self.verifier = verifier
        self.writer = writer
        self._soft_bounce_limit = soft_bounce_limit
        self._on_rejected = on_rejected  # counts verification failures (the process's metrics: app.py, sqs_process.py)

    async def take(self, body: bytes, *, from_queue: bool = False) -> Result:
        """Verify, then act; RECORDED only after the commit. Raises only on a bug (an unexpected exception).
        `from_queue`: taken from our SQS queue, which SNS alone may send to, so MAILGW_SNS_MAX_AGE_SECONDS (a guard
        against replays to the public HTTPS endpoint) does not apply: a backlog after an outage is applied whole."""
        try:
            envelope = sns.parse_envelope(body)
        except sns.MalformedEnvelope as exc:
            return Result(Outcome.MALFORMED, f"not an SNS message: {exc}")
        kind, message_id, topic = envelope["Type"], envelope.get("MessageId", ""), envelope.get("TopicArn", "")
        work = {"sns_message_id": message_id}
        try:
            await self.verifier.verify(envelope, check_age=not from_queue)
        except sns.MalformedEnvelope as exc:
            return Result(Outcome.MALFORMED, f"not an SNS message: {exc}", kind=kind)
        except sns.VerificationFailed as exc:
            self._on_rejected(exc)
            log.warning("SNS message rejected: %s (topic %r)", exc, topic[:200], extra=work)
            return Result(Outcome.REJECTED, f"verification failed: {exc}", kind=kind)
        except sns.CertificateUnavailable as exc:
            log.warning("SNS signing certificate unavailable: %s", exc, extra=work)
            return Result(Outcome.RETRY_LATER, "signing certificate unavailable, retry later", kind=kind)

        if kind == "SubscriptionConfirmation":
            try:
                await self.verifier.confirm_subscription(envelope)
            except sns.ConfirmationFailed as exc:
                log.warning("confirming the subscription to %s failed: %s", topic, exc, extra=work)
                return Result(Outcome.RETRY_LATER, "subscription confirmation failed, retry later", message_id, kind)
            log.info("confirmed the subscription to %s", topic, extra=work)
            return Result(Outcome.CONFIRMED, "subscription confirmed", message_id, kind)
        if kind == "UnsubscribeConfirmation":
            # Visiting its SubscribeURL would subscribe us again: it is only logged.
            log.warning("SNS unsubscribed this endpoint from %s", topic, extra=work)
            return Result(Outcome.UNSUBSCRIBED, "noted", message_id, kind)

        try:
            event = parse_ses_event(envelope["Message"])
        except MalformedEvent as exc:
            log.error("notification %s from %s is not an SES event: %s", message_id, topic, exc, extra=work)
            return Result(Outcome.MALFORMED, f"the Message is not an SES event: {exc}", message_id, kind)
        kind = event.event_type
        for address, why in event.unreadable:
            shown = masked(address)
            log.warning(
                "notification %s names an invalid address, left alone: %s (%s)", message_id, shown, why, extra=work
            )
        try:
            stored = await self.writer.write(record_event, message_id, event, soft_bounce_limit=self._soft_bounce_limit)
        except UNAVAILABLE as exc:
            log.warning("database unavailable: %s", type(exc).__name__, extra=work)
            return Result(Outcome.DATABASE_UNAVAILABLE, "database unavailable, retry later", message_id, kind)
        if not event.known:
            log.info("notification %s: SES event type %r recorded, not acted on", message_id, kind, extra=work)
        if stored:
            return Result(Outcome.RECORDED, "recorded", message_id, kind)
        return Result(Outcome.DUPLICATE, "duplicate", message_id, kind)

    async def database_answers(self) -> bool:
        """Whether a write transaction can be committed now (SQLite: its write lock can be taken)."""
        try:
            await self.writer.write(database.execute_sql, "SELECT 1")
        except UNAVAILABLE:
            return False
        return True


@contextlib.asynccontextmanager
async def opened(
    settings: FeedbackSettings,
    *,
    sns_endpoint_url: str | None,
    on_rejected: Callable[[sns.VerificationFailed], None] = lambda failure: None,
) -> AsyncIterator[Intake]:
    """An Intake with its HTTP client session (certificates, SubscribeURLs) and database threads, closed on exit."""
    max_age = datetime.timedelta(seconds=settings.sns_max_age_seconds) if settings.sns_max_age_seconds else None
    async with aiohttp.ClientSession() as session:
        verifier = sns.SnsVerifier(
            session, topic_arns=settings.sns_topic_arns, endpoint_url=sns_endpoint_url, max_age=max_age
        )
        # SQLite has one writer at a time: more threads would only queue inside SQLite's busy handler, which
        # sleeps in steps of up to 100 ms. PostgreSQL takes writers in parallel.
        workers = 8 if is_postgres_url(settings.database_url) else 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db") as executor:
            writer = GroupWriter.for_database(executor, settings.database_url, workers=workers)
            yield Intake(verifier, writer, soft_bounce_limit=settings.soft_bounce_limit, on_rejected=on_rejected)
