"""Signed webhooks (MAILGW_WEBHOOK_URLS): each configured caller's records of the event log POSTed to its URL as JSON,
`{"events": [record, ...]}`, in log order, up to 100 a POST, signed with its secret (core/webhooks.py).

One gateway delivers for a caller at a time (a lease on its webhook_cursor row, store/webhooks.py, renewed before a
POST once half of it is gone; a POST, bounded as a whole, never outlives it), and the next batch goes only once the
endpoint acknowledged the last one with a 2xx: order holds across gateways and restarts,
nothing is skipped, and a batch whose answer was lost comes again (at least once; each record's `cursor` tells a
repeat). Any other answer (a 3xx included: no redirect is followed) or none within the timeout is a failure, tried
again after a backoff from 0.5 s, doubling, to 30 s; from the 5th failure in a row the caller's webhook is paused
(mailgw_webhook_paused, one warning) and tried as the backoff allows until it answers, when the backlog follows at
once.

Each caller has a loop of its own (`webhook:<caller>`) on a thread of its own: a slow or dead endpoint delays only
its own caller's records, never dispatch, the sidecar or another caller. The loops wake when the log grows."""

import asyncio
import datetime
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import aiohttp

from gateway.core import metrics
from gateway.core.loops import Loop, Timings
from gateway.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook, signature
from gateway.events.feed import EventFeed
from gateway.events.records import event_json
from gateway.store import event_log
from gateway.store import webhooks as cursors
from gateway.store.database import UNAVAILABLE, database_now, unit_of_work
from gateway.store.models import EventRecord

log = logging.getLogger(__name__)

BATCH = 100  # records a POST carries at most
PAUSE_AFTER = 5  # failures in a row after which a caller's webhook counts as paused
CONNECT_SECONDS = 5.0  # of a POST's Timings.webhook_post_seconds, at most this to connect
MAX_ANSWER = 64 * 1024  # an answer's body up to this is read (and dropped); a longer one's connection is closed
USER_AGENT = "mailgw-webhook/1"


@dataclass(frozen=True)
class Answer:
    """What came back from a POST: whether it was a 2xx, and what it was in a few words (logs, last_error)."""

    ok: bool
    detail: str


class Poster:
    """POSTs to the configured URLs through aiohttp, on an event loop of its own thread: nothing retried or
    redirected by the client itself, and each POST bounded as a whole, from connecting to the answer's last byte
    (aiohttp's total timeout; a socket timeout bounds only each read, which an endpoint trickling its answer would
    never reach, and a POST that outlived its gateway's lease could overlap another gateway's)."""

    def __init__(self, seconds: float):
        self._timeout = aiohttp.ClientTimeout(total=seconds, connect=min(CONNECT_SECONDS, seconds))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook-http", daemon=True)
        self._thread.start()
        self._session = self._run(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": USER_AGENT}, auto_decompress=False)

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout.total + 5)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        return self._run(self._post(url, body, headers))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                if response.content_length is not None and response.content_length <= MAX_ANSWER:
                    await response.read()  # the whole exchange within the bound; the connection is kept
                # Otherwise (no length, or a long one) nothing is read, and the connection is closed, not kept.
                return Answer(200 <= response.status < 300, f"HTTP {response.status}")
        except TimeoutError:
            return Answer(False, f"no whole answer within {self._timeout.total:g} s")
        except aiohttp.ClientError as exc:
            return Answer(False, f"cannot reach it ({type(exc).__name__}: {str(exc)[-100:]})")

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._session.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def body_of(records: list[EventRecord]) -> bytes:
    """The JSON a POST carries: the records in proto JSON names, in log order."""
    return json.dumps({"events": [event_json(record) for record in records]}, separators=(",", ":")).encode()


def signed_headers(hook: Webhook, body: bytes, now: float) -> dict[str, str]:
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(hook.secret, timestamp, body),
    }


class WebhookDelivery:
    """This gateway process's webhook loops, one per configured caller (process/gateway.py starts them)."""

    def __init__(self, hooks: dict[str, Webhook], feed: EventFeed, timings: Timings, poster: Poster | None = None):
        self._stopping = threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[-64:]  # its leases' holder name
        if timings.webhook_lease_seconds <= 2 * timings.webhook_post_seconds:
            raise ValueError("a webhook POST must end well within its gateway's hold (Timings)")
        self._poster = poster = poster or Poster(timings.webhook_post_seconds)
        self._callers = [
            CallerWebhook(hook, poster, self.owner, feed, timings, self._stopping) for hook in hooks.values()
        ]
        self.loops = [caller.loop for caller in self._callers]

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop(self, grace: float) -> None:
        """Stop every loop (a POST in hand gets `grace` seconds), then hand each caller's cursor over at once."""
        self._stopping.set()
        for caller in self._callers:
            caller.wake.set()
        deadline = time.monotonic() + grace
        for caller in self._callers:
            caller.loop.join(max(deadline - time.monotonic(), 0.1))
            if not caller.loop.alive:
                caller.release()
        if not any(caller.loop.alive for caller in self._callers):
            self._poster.close()


class CallerWebhook:
    """One caller's deliveries. While this gateway holds the caller's cursor it is the only writer of it, so the
    cursor is kept here and read from the database only when (re)taken."""

    def __init__(
        self, hook: Webhook, poster: Poster, owner: str, feed: EventFeed, timings: Timings, stopping: threading.Event
    ):
        self.hook, self._poster, self._owner, self._feed, self._timings = hook, poster, owner, feed, timings
        self.wake = feed.listen()
        self.loop = Loop(
            f"webhook:{hook.caller}",
            self.step,
            every=timings.webhook_idle_seconds,
            stopping=stopping,
            wake=self.wake,
            quiet=UNAVAILABLE,
        )
        self._cursor: cursors.Cursor | None = None
        self._held_until = 0.0  # time.monotonic() when this gateway's hold ends, as far as it knows
        self._retry_at = 0.0  # time.monotonic() before which no POST is tried (the backoff after a failure)
        self._next_take = 0.0  # time.monotonic() before which another gateway's hold is not tried again
        self._paused = metrics.WEBHOOK_PAUSED.labels(hook.caller)
        self._posts = {
            ok: metrics.WEBHOOK_POSTS.labels(hook.caller, "delivered" if ok else "failed") for ok in (True, False)
        }
        self._events = metrics.WEBHOOK_EVENTS.labels(hook.caller)

    def step(self) -> float | None:
        """One POST of the caller's next records, when there are some and the backoff allows; how long to wait."""
        with unit_of_work():
            if self._cursor is None and time.monotonic() < self._next_take:
                return self._next_take - time.monotonic()  # another gateway delivers (woken for nothing)
            cursor = self._hold()
            if cursor is None:
                self._next_take = time.monotonic() + self._timings.webhook_idle_seconds
                return None  # look again after `every`: a stopping gateway hands over, a dead one's lease ends
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                return wait
            if self._feed.last <= cursor.position:
                return None  # nothing new in the log at all
            records = event_log.after(self.hook.caller, cursor.position, limit=BATCH)
        if not records:
            return None
        try:
            body = body_of(records)
        except ValueError as exc:  # a record of a newer version (a type this one does not know): for an upgraded one
            answer = Answer(False, f"a record this version cannot shape ({str(exc)[:80]})")
        else:
            answer = self._poster.post(self.hook.url, body, signed_headers(self.hook, body, time.time()))
        self._posts[answer.ok].inc()
        with unit_of_work():
            if answer.ok:
                return self._delivered(cursor, records)
            return self._failed(cursor, answer)

    def _hold(self) -> cursors.Cursor | None:
        """The caller's cursor while this gateway holds it, the hold taken or renewed when it runs short."""
        lease = self._timings.webhook_lease_seconds
        if self._cursor is not None and self._held_until - time.monotonic() > lease / 2:
            return self._cursor
        started, now = time.monotonic(), database_now()
        taken = cursors.take(self.hook.caller, self._owner, now=now, until=_after(now, lease))
        if taken is None:
            self._let_go()
            return None
        if self._cursor is None:  # newly taken: the backoff another gateway (or this one before) left
            retry_in = (taken.next_attempt_at - now).total_seconds() if taken.next_attempt_at else 0.0
            self._retry_at = time.monotonic() + max(retry_in, 0.0)
            self._paused.set(int(taken.failures >= PAUSE_AFTER))
        self._cursor, self._held_until = taken, started + lease  # from before the take: never later than its end
        return taken

    def _let_go(self) -> None:
        """Another gateway delivers for the caller now (this one's hold had ended): its to report a pause."""
        if self._cursor is not None:
            log.info("webhook of caller %s: another gateway took it over", self.hook.caller)
            self._paused.set(0)
        self._cursor = None

    def _delivered(self, cursor: cursors.Cursor, records: list[EventRecord]) -> float:
        now = database_now()
        if not cursors.delivered(self.hook.caller, self._owner, position=records[-1].position, now=now):
            self._let_go()
            return 0.0
        self._events.inc(len(records))
        metrics.WEBHOOK_DELAY.observe(max((now - records[0].created_at).total_seconds(), 0.0))
        if cursor.failures >= PAUSE_AFTER:
            log.info(
                "webhook of caller %s resumed: %s answered after %d failures since %s UTC; delivering its backlog",
                self.hook.caller,
                self.hook.shown_url,
                cursor.failures,
                f"{cursor.failing_since:%Y-%m-%d %H:%M:%S}" if cursor.failing_since else "?",
            )
            self._paused.set(0)
        self._cursor = cursors.Cursor(records[-1].position, 0, None, None)
        return 0.0  # more may wait: look again at once

    def _failed(self, cursor: cursors.Cursor, answer: Answer) -> float:
        failures = cursor.failures + 1
        timings = self._timings
        delay = min(timings.webhook_retry_base_seconds * 2 ** min(failures - 1, 30), timings.webhook_retry_max_seconds)
        now = database_now()
        since = cursor.failing_since or now
        kept = cursors.failed(
            self.hook.caller,
            self._owner,
            failures=failures,
            since=since,
            retry_at=_after(now, delay),
            error=answer.detail,
        )
        if not kept:
            self._let_go()
            return 0.0
        self._cursor = cursors.Cursor(cursor.position, failures, since, _after(now, delay))
        self._retry_at = time.monotonic() + delay
        if failures == PAUSE_AFTER:
            self._paused.set(1)
            log.warning(
                "webhook of caller %s paused: %s failed %d times in a row (last: %s); its records wait, and it is "
                "tried again in %g s, then at most %g s apart",
                self.hook.caller,
                self.hook.shown_url,
                failures,
                answer.detail,
                delay,
                timings.webhook_retry_max_seconds,
            )
        else:
            log.info(
                "webhook of caller %s: %s: %s; trying again in %g s",
                self.hook.caller,
                self.hook.shown_url,
                answer.detail,
                delay,
            )
        return delay

    def release(self) -> None:
        """Hand the caller's cursor over (this process stops): another gateway may deliver at once."""
        if self._cursor is None:
            return
        try:
            with unit_of_work():
                cursors.release(self.hook.caller, self._owner, now=database_now())
        except UNAVAILABLE:
            pass  # the hold ends with its lease
        self._cursor = None


def _after(moment: datetime.datetime, seconds: float) -> datetime.datetime:
    return moment + datetime.timedelta(seconds=seconds)
