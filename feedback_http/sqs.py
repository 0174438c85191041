"""SES feedback from an SQS queue subscribed to the SNS topic (raw message delivery off): each body is SNS's signed
envelope, taken through the same intake as POST /sns, and deleted only after its commit.

The poller is a coroutine on the intake's event loop, so beside the HTTP server it shares the sidecar's certificate
cache and group-commit writer (notifications from both transports commit in the same groups). boto3 blocks, so its
calls run on two threads of the poller's own: a long poll holds one for up to 20 s and must never hold a database
thread, and a slow batch's visibility is extended on the other while the long poll's thread is idle.

What becomes of a message:
- done (recorded, a duplicate, a subscription confirmed or an unsubscribe noted): deleted after the commit;
- malformed or not verified: left; the queue receives it again after the visibility timeout until its redrive policy
  moves it to the dead-letter queue (without one, until the retention period ends): never deleted silently;
- the database did not answer: left, and the poller receives nothing more until a write commits again, so an outage
  costs each message at most one receive; then the messages it left are made visible again at once;
- the certificate host or the SubscribeURL did not answer: left, and the poller backs off.
"""

import asyncio
import contextlib
import functools
import logging
import os
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from feedback_http import intake, metrics
from feedback_http.config import FeedbackSettings
from feedback_http.intake import Outcome, Result
from gateway.core.config import ConfigError
from gateway.core.logs import error_text

log = logging.getLogger(__name__)

MAX_MESSAGES = 10  # the most one ReceiveMessage returns
MAX_BACKOFF_SECONDS = 60.0
_AWS_QUEUE_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com")
_RAW_BODY = re.compile(r'"(?:eventType|notificationType)"\s*:')


class Backoff:
    """Seconds to wait after each failure in a row: 1, 2, 4 ... up to MAX_BACKOFF_SECONDS."""

    def __init__(self) -> None:
        self._failures = 0

    def next(self) -> float:
        self._failures += 1
        return min(2.0 ** (self._failures - 1), MAX_BACKOFF_SECONDS)

    def reset(self) -> None:
        self._failures = 0


def queue_region(queue_url: str) -> str | None:
    """The region in an AWS queue URL; None for another host (AWS_REGION or AWS_DEFAULT_REGION then applies)."""
    match = _AWS_QUEUE_HOST.fullmatch(urlsplit(queue_url).hostname or "")
    return (match.group(1) or match.group(2)) if match else None


def sqs_client(settings: FeedbackSettings):
    """boto3's SQS client for the queue, its endpoint as boto3 reads it (AWS_ENDPOINT_URL_SQS for local stacks)."""
    config = botocore.config.Config(
        connect_timeout=5,
        read_timeout=settings.sqs_wait_seconds + 15,  # a long poll answers after up to sqs_wait_seconds
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=2,
    )
    # botocore reads AWS_DEFAULT_REGION; AWS_REGION, which the other AWS SDKs set, is honoured too (as for SES).
    region = queue_region(settings.sqs_queue_url) or os.environ.get("AWS_REGION") or None
    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise ConfigError("MAILGW_SQS_QUEUE_URL names no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")
    return session.client("sqs", config=config)


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error, status = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return f"{error.get('Code', '?')}: {error_text(status, str(error.get('Message', '')))}"
    return f"{type(exc).__name__}: {exc}"[:300]


class SqsPoller:
    """Receives batches from one queue and applies them through `feedback`, until stop()."""

    def __init__(self, feedback: intake.Intake, client, settings: FeedbackSettings, executor: ThreadPoolExecutor):
        self._intake = feedback
        self._client = client
        self._queue_url = settings.sqs_queue_url
        self._wait_seconds = settings.sqs_wait_seconds
        self._visibility = settings.sqs_visibility_timeout_seconds
        self._max_body_bytes = settings.max_body_bytes
        self._executor = executor
        self._stopping = asyncio.Event()
        self._sqs_backoff = Backoff()
        self._retry_backoff = Backoff()

    def stop(self) -> None:
        """No new receive; the batch under way (and the long poll under way, with what it brings) is finished."""
        self._stopping.set()

    async def stop_requested(self) -> None:
        await self._stopping.wait()

    async def run(self) -> None:
        await self._describe_queue()
        while not self._stopping.is_set():
            try:
                pause = await self._poll_once()
            except Exception:  # never let the poller die: it is the only way in for these notifications
                log.exception("SQS intake: unexpected error; polling again shortly")
                pause = self._sqs_backoff.next()
            if pause:
                await self._sleep(pause)
        log.info("SQS intake stopped")

    async def _call(self, operation: str, **params):
        method = getattr(self._client, operation)
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(method, **params))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _describe_queue(self) -> None:
        log.info(
            "SQS intake: polling %s (long poll %d s, visibility %d s)",
            self._queue_url,
            self._wait_seconds,
            self._visibility,
        )
        try:
            attributes = (
                await self._call("get_queue_attributes", QueueUrl=self._queue_url, AttributeNames=["RedrivePolicy"])
            ).get("Attributes", {})
        except (BotoCoreError, ClientError) as exc:
            log.warning("SQS queue %s cannot be read now (%s); polling it all the same", self._queue_url, _why(exc))
            return
        if "RedrivePolicy" not in attributes:
            log.warning(
                "SQS queue %s has no redrive policy: a message that fails verification or parsing is received again "
                "until the queue's retention period ends; attach a dead-letter queue",
                self._queue_url,
            )

    async def _poll_once(self) -> float:
        """One receive and its batch; the seconds to wait before the next receive."""
        try:
            received = await self._call(
                "receive_message",
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=MAX_MESSAGES,
                WaitTimeSeconds=self._wait_seconds,
                VisibilityTimeout=self._visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (BotoCoreError, ClientError) as exc:
            pause = self._sqs_backoff.next()
            log.warning("SQS receive from %s failed (%s); again in %g s", self._queue_url, _why(exc), pause)
            return pause
        self._sqs_backoff.reset()
        messages = received.get("Messages", [])
        if not messages:
            return 0.0
        results = await self._apply(messages)
        await self._delete([m for m, r in zip(messages, results, strict=True) if r is not None and r.outcome.done])

        outcomes = [r.outcome if r is not None else None for r in results]
        if Outcome.DATABASE_UNAVAILABLE in outcomes:
            left = [m for m, o in zip(messages, outcomes, strict=True) if o is Outcome.DATABASE_UNAVAILABLE]
            await self._wait_for_database(left)
            return 0.0
        if Outcome.RETRY_LATER in outcomes or None in outcomes:
            pause = self._retry_backoff.next()
            log.warning(
                "SQS intake: %d message(s) left to retry; next receive in %g s",
                outcomes.count(None) + outcomes.count(Outcome.RETRY_LATER),
                pause,
            )
            return pause
        self._retry_backoff.reset()
        return 0.0

    async def _apply(self, messages: list[dict]) -> list[Result | None]:
        """Every message of the batch at once (so they share group commits), their visibility extended while the
        batch is still under way."""
        keep_invisible = asyncio.create_task(self._extend_visibility(messages))
        try:
            return await asyncio.gather(*(self._take(message) for message in messages))
        finally:
            keep_invisible.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_invisible

    async def _take(self, message: dict) -> Result | None:
        """The intake's result for one message; None when applying it raised (a bug, logged), so it is left."""
        sqs_id = message.get("MessageId", "?")
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        body = message.get("Body", "").encode("utf-8", "surrogatepass")
        if len(body) > self._max_body_bytes:
            result = Result(Outcome.MALFORMED, f"larger than MAILGW_MAX_BODY_BYTES ({self._max_body_bytes})")
        else:
            try:
                result = await self._intake.take(body, from_queue=True)
            except Exception:
                log.exception("SQS message %s (receive %s): applying it failed; left in the queue", sqs_id, receives)
                metrics.taken_from_queue("unknown", "error")
                return None
        metrics.taken_from_queue(result.kind, result.outcome.value)
        if result.outcome in (Outcome.MALFORMED, Outcome.REJECTED):
            hint = ""
            if result.text.startswith("not an SNS message") and _RAW_BODY.search(body[:4096].decode(errors="replace")):
                hint = " (the body looks like an SES event itself: turn raw message delivery off)"
            log.error(
                "SQS message %s (receive %s) left for the dead-letter queue: %s%s", sqs_id, receives, result.text, hint
            )
        else:
            log.debug("SQS message %s (receive %s): %s", sqs_id, receives, result.text)
        return result

    async def _extend_visibility(self, messages: list[dict]) -> None:
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self._visibility}
            for n, m in enumerate(messages)
        ]
        # Every third of the timeout: an extension that is itself slow to arrive still lands in time.
        waited = 0.0
        while True:
            await asyncio.sleep(self._visibility / 3)
            waited += self._visibility / 3
            try:
                answer = await self._call("change_message_visibility_batch", QueueUrl=self._queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning("SQS: extending the visibility of a slow batch failed (%s)", _why(exc))
                continue
            log.info(
                "SQS batch of %d still being applied after %g s: kept invisible %d s more (%d refused)",
                len(entries),
                waited,
                self._visibility,
                len(answer.get("Failed", [])),
            )

    async def _delete(self, messages: list[dict]) -> None:
        if not messages:
            return
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        try:
            answer = await self._call("delete_message_batch", QueueUrl=self._queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            # Committed already: received again, each is found a duplicate and deleted then.
            log.warning("SQS: deleting %d applied message(s) failed (%s)", len(entries), _why(exc))
            return
        for failure in answer.get("Failed", []):
            message = messages[int(failure["Id"])]
            log.warning(
                "SQS: deleting applied message %s failed (%s); it will be found a duplicate",
                message.get("MessageId", "?"),
                failure.get("Code", "?"),
            )

    async def _wait_for_database(self, left: list[dict]) -> None:
        """Receive nothing (each receive counts toward the redrive policy) until the database commits again; then
        make the messages the outage left visible at once rather than after their visibility timeout."""
        log.warning(
            "SQS intake paused: the database is unavailable; %d message(s) left in the queue; receiving again when "
            "it answers",
            len(left),
        )
        backoff = Backoff()
        while not await self._intake.database_answers():
            if self._stopping.is_set():
                return
            await self._sleep(min(backoff.next(), 30.0))
            if self._stopping.is_set():
                return
        log.info("SQS intake resumes: the database answers again")
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for n, m in enumerate(left)
        ]
        try:
            await self._call("change_message_visibility_batch", QueueUrl=self._queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:  # they come back after their visibility timeout all the same
            log.info("SQS: releasing the messages the outage left failed (%s)", _why(exc))


@contextlib.asynccontextmanager
async def polling(feedback: intake.Intake, settings: FeedbackSettings) -> AsyncIterator[SqsPoller]:
    """The poller running on this event loop until the block ends; leaving it waits for the batch under way."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqs") as executor:
        poller = SqsPoller(feedback, sqs_client(settings), settings, executor)
        task = asyncio.create_task(poller.run(), name="sqs-intake")
        try:
            yield poller
        finally:
            poller.stop()
            await task
