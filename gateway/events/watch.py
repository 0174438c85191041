"""One caller's watch of the event log (WatchEvents): from a cursor, its own records in log order, then keep-alives
while nothing happens. Each read is a unit of database work of its own on its thread's connection (which every RPC
thread keeps), and a slow reader holds nothing but its place (the gRPC server sends one response at a time)."""

import base64
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.core import errors
from gateway.core.states import EventType
from gateway.events.feed import EventFeed
from gateway.store import event_log
from gateway.store.database import unit_of_work
from gateway.store.models import EventRecord

PAGE = 100  # records read at once
KEEPALIVE_SECONDS = 15.0
WAIT_SLICE = 1.0  # a waiting stream looks whether it has ended at least this often
CURSOR_VERSION = "v1"


def cursor_of(position: int) -> str:
    """The opaque cursor that resumes right after `position`."""
    return base64.urlsafe_b64encode(f"{CURSOR_VERSION}:{position}".encode()).decode().rstrip("=")


def position_of(cursor: str) -> int:
    """The position a cursor names; InvalidRequest for anything no response carried."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii") if len(cursor) <= 64 else ""
        version, _, number = text.partition(":")
        if version == CURSOR_VERSION and number.isdigit() and len(number) <= 19:
            return int(number)
    except (ValueError, UnicodeError):
        pass
    raise errors.InvalidRequest({"cursor": "not a cursor of this gateway's events; start without one"})


@dataclass(frozen=True)
class KeepAlive:
    """Nothing new: the cursor to resume from (past every record the watch has looked at)."""

    position: int


class Watchers:
    """How many streams are open here, by caller: past `per_caller` for one caller, or `total` for all (each holds
    one of the server's MAILGW_GRPC_WORKERS threads), TooManyWatchers."""

    def __init__(self, per_caller: int, total: int):
        self._per_caller, self._total = per_caller, total
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def one(self, caller: str) -> Iterator[None]:
        with self._lock:
            if self._open.get(caller, 0) >= self._per_caller:
                raise errors.TooManyWatchers(
                    f"{self._per_caller} streams of yours are open on this gateway (MAILGW_MAX_WATCHERS_PER_CALLER)",
                    limit=str(self._per_caller),
                )
            if sum(self._open.values()) >= self._total:
                raise errors.TooManyWatchers(
                    f"{self._total} streams are open on this gateway (MAILGW_MAX_WATCHERS)", limit=str(self._total)
                )
            self._open[caller] = self._open.get(caller, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._open[caller] -= 1


def watch(
    caller: str,
    cursor: str,
    feed: EventFeed,
    *,
    types: tuple[EventType, ...] = (),
    tenant: str = "",
    active: Callable[[], bool] = lambda: True,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> Iterator[EventRecord | KeepAlive]:
    """The caller's records after `cursor` (empty: from now), in position order, for as long as `active()`; a
    KeepAlive once it has caught up, then after each `keepalive_seconds` without news. CursorExpired when records
    after the cursor were purged."""
    with unit_of_work():
        if cursor:
            position = position_of(cursor)
            oldest = event_log.oldest_position()
            if position > event_log.last_position():  # not of this log: a restored database, another deployment
                raise errors.CursorExpired(
                    "that cursor is beyond the end of this gateway's event log; resume from oldestCursor",
                    oldestCursor=cursor_of(oldest - 1),
                )
            if position < oldest - 1:
                raise errors.CursorExpired(
                    "the events after that cursor are past MAILGW_EVENT_RETENTION_DAYS; resume from oldestCursor",
                    oldestCursor=cursor_of(oldest - 1),
                )
        else:
            position = event_log.last_position()
    wanted = tuple(t.value for t in types)
    looked_to = position  # every record of the caller's up to here was sent (or filtered out)
    caught_up = False
    while active() and not feed.stopping:
        with unit_of_work():
            last = event_log.last_position()
            records = event_log.after(caller, looked_to, limit=PAGE, types=wanted, tenant=tenant)
        yield from records
        if len(records) == PAGE:
            looked_to = records[-1].position
            continue
        looked_to = max(looked_to, last, records[-1].position if records else 0)
        if not caught_up:
            caught_up = True
            yield KeepAlive(looked_to)
        quiet_until = time.monotonic() + keepalive_seconds
        while not feed.wait_beyond(looked_to, WAIT_SLICE):  # a slice at a time: a stream that ended is seen soon
            if not active() or feed.stopping:
                return
            if time.monotonic() >= quiet_until:
                yield KeepAlive(looked_to)
                quiet_until = time.monotonic() + keepalive_seconds
