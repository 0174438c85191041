"""The sidecar's database work, run off the event loop and committed in groups.

SQLite commits one transaction at a time, and one per notification held SNS ingest near 740/s: whatever arrives
while a group is being committed waits for the next group, which runs all its members in one transaction. A member
hears its result only after the COMMIT that holds its work, so nothing is acknowledged before it is durable; a
member that fails fails alone (see commit_group); a database that fails fails every member of the group (each
answers 5xx and SNS retries it).

PostgreSQL takes writers in parallel and already shares WAL flushes between concurrent commits, so there each unit
is a transaction of its own, several at once: that keeps the one lock order a transaction takes (contacts sorted by
address, see feedback.record_event), so two sidecars on one database cannot deadlock on each other's groups.
"""

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from gateway.store.database import UNAVAILABLE, database, is_postgres_url, unit_of_work

MAX_GROUP = 64  # bounds how long one group holds SQLite's write lock (~0.5 ms a notification)


class GroupWriter:
    """Runs database work on `executor`: writes in `parallel` groups at once, each of up to `max_group` units."""

    def __init__(self, executor: Executor, *, max_group: int, parallel: int) -> None:
        self._executor = executor
        self._max_group = max_group
        self._parallel = parallel
        self._pending: deque[tuple[Callable[[], Any], asyncio.Future]] = deque()
        self._running = 0

    @classmethod
    def for_database(cls, executor: Executor, database_url: str, *, workers: int) -> "GroupWriter":
        if is_postgres_url(database_url):
            return cls(executor, max_group=1, parallel=workers)
        return cls(executor, max_group=MAX_GROUP, parallel=1)

    async def read(self, work: Callable[..., Any], *args, **kwargs) -> Any:
        """`work(*args, **kwargs)` that only reads, outside any transaction: on SQLite a group's transaction takes
        the write lock, which a read must not wait for."""

        def unit():
            with unit_of_work():
                return work(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, unit)

    async def write(self, work: Callable[..., Any], *args, **kwargs) -> Any:
        """`work(*args, **kwargs)` in a committed transaction; its result, or its exception, after the commit."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((functools.partial(work, *args, **kwargs), future))
        self._start_groups()
        return await future

    def _start_groups(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and self._running < self._parallel:
            group = [self._pending.popleft() for _ in range(min(self._max_group, len(self._pending)))]
            self._running += 1
            committed = loop.run_in_executor(self._executor, commit_group, [work for work, _ in group])
            committed.add_done_callback(functools.partial(self._answer, [future for _, future in group]))

    def _answer(self, futures: list[asyncio.Future], committed: asyncio.Future) -> None:
        self._running -= 1
        failure = committed.exception()
        outcomes = [(False, failure)] * len(futures) if failure else committed.result()
        for future, (ok, value) in zip(futures, outcomes, strict=True):
            if future.done():  # its caller went away; the work is done all the same
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._start_groups()


def commit_group(units: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    """The units in one transaction: (True, result) or (False, exception) for each. When one of several fails,
    the transaction is rolled back and each unit runs again in a transaction of its own, so the failure is its
    alone (savepoints would cost two statements per unit on the path where nothing fails). Raises, failing them all,
    when the database is unavailable."""
    try:
        with unit_of_work(), database.atomic():
            return [(True, unit()) for unit in units]
    except UNAVAILABLE:
        raise
    except Exception as exc:
        if len(units) == 1:
            return [(False, exc)]
    outcomes: list[tuple[bool, Any]] = []
    for unit in units:
        try:
            with unit_of_work(), database.atomic():
                outcomes.append((True, unit()))
        except UNAVAILABLE:
            raise
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes
