"""Signed webhooks (MAILGW_WEBHOOK_URLS): each configured caller's records of the event log POSTed to its URL as JSON,
`{"events": [record, ...]}`, in log order, up to 100 a POST, signed with its secret (core/webhooks.py).

One gateway delivers for a caller at a time (a lease on its webhook_cursor row, store/webhooks.py), and the next
batch goes only once the endpoint acknowledged the last one with a 2xx: order holds across gateways and restarts,
nothing is skipped, and a batch whose answer was lost comes again (at least once; each record's `cursor` tells a
repeat). Any other answer (a 3xx included: no redirect is followed) or none within the timeout is a failure, tried
again after a backoff from 0.5 s, doubling, to 30 s; from the 5th failure in a row the caller's webhook is paused
(mailgw_webhook_paused, one warning) and tried every 30 s until it answers, when the backlog follows at once.

Each caller has a loop of its own (`webhook:<caller>`) on a thread of its own: a slow or dead endpoint delays only
its own caller's records, never dispatch, the sidecar or another caller. The loops wake when the log grows."""

import datetime
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import urllib3

from gateway.core import metrics
from gateway.core.loops import Loop, Timings
from gateway.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook, signature
from gateway.events.feed import EventFeed
from gateway.events.records import event_json
from gateway.store import event_log
from gateway.store import webhooks as cursors
from gateway.store.database import UNAVAILABLE, database_now, unit_of_work, utcnow
from gateway.store.models import EventRecord

log = logging.getLogger(__name__)

BATCH = 100  # records a POST carries at most
PAUSE_AFTER = 5  # failures in a row after which a caller's webhook counts as paused
LEASE_SECONDS = 60.0  # how long a gateway delivers for a caller without renewing its hold
RENEW_BEFORE_SECONDS = 30.0  # a hold with less than this left is renewed first: longer than a POST may take
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 10.0
MAX_ANSWER = 64 * 1024  # bytes of an answer's body read (and dropped); the connection is closed past them
USER_AGENT = "mailgw-webhook/1"


@dataclass(frozen=True)
class Answer:
    """What came back from a POST: whether it was a 2xx, and what it was in a few words (logs, last_error)."""

    ok: bool
    detail: str


class Poster:
    """POSTs to the configured URLs: nothing retried or redirected by the client itself, every wait bounded."""

    def __init__(self, connections: int = 1):
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=connections,
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self._pool.request(
                "POST", url, body=body, headers=headers, redirect=False, preload_content=False
            )
        except urllib3.exceptions.TimeoutError:
            return Answer(False, "no answer within the timeout")
        except urllib3.exceptions.HTTPError as exc:
            return Answer(False, f"cannot reach it ({_reason(exc)})")
        try:
            response.read(MAX_ANSWER)
            if response.read(1):  # a longer answer than anyone needs: its connection is not kept
                response.close()
        except urllib3.exceptions.HTTPError:
            response.close()
        finally:
            response.release_conn()
        return Answer(200 <= response.status < 300, f"HTTP {response.status}")


def _reason(exc: Exception) -> str:
    """urllib3's error without the connection's repr: "[Errno 111] Connection refused"."""
    return str(exc).rpartition(": ")[2][:100] or type(exc).__name__


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
        poster = poster or Poster(connections=max(len(hooks), 1))  # callers may share a host
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
        body = body_of(records)
        answer = self._poster.post(self.hook.url, body, signed_headers(self.hook, body, time.time()))
        self._posts[answer.ok].inc()
        with unit_of_work():
            if answer.ok:
                return self._delivered(cursor, records)
            return self._failed(cursor, answer)

    def _hold(self) -> cursors.Cursor | None:
        """The caller's cursor while this gateway holds it, the hold taken or renewed when it runs short."""
        if self._cursor is not None and self._held_until - time.monotonic() > RENEW_BEFORE_SECONDS:
            return self._cursor
        now = database_now()
        taken = cursors.take(self.hook.caller, self._owner, now=now, until=_after(now, LEASE_SECONDS))
        if taken is None:
            if self._cursor is not None:  # another gateway took it over (this one's hold had ended): its to report
                self._paused.set(0)
            self._cursor = None
            return None
        if self._cursor is None:  # newly taken: the backoff another gateway (or this one before) left
            retry_in = (taken.next_attempt_at - now).total_seconds() if taken.next_attempt_at else 0.0
            self._retry_at = time.monotonic() + max(retry_in, 0.0)
            self._paused.set(int(taken.failures >= PAUSE_AFTER))
        self._cursor, self._held_until = taken, time.monotonic() + LEASE_SECONDS
        return taken

    def _delivered(self, cursor: cursors.Cursor, records: list[EventRecord]) -> float:
        now = utcnow()
        if not cursors.delivered(self.hook.caller, self._owner, position=records[-1].position, now=now):
            log.info("webhook of caller %s: another gateway took it over", self.hook.caller)
            self._cursor = None
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
            log.info("webhook of caller %s: another gateway took it over", self.hook.caller)
            self._cursor = None
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
