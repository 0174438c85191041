"""Writing what became of each attempt, from one thread, many outcomes a transaction.

SQLite takes one writer at a time: sixteen dispatch workers each committing their own outcome spent most of their
time in SQLite's busy wait (the dispatch benchmark ran at a fifth of boto3's pace). A recorder drains whatever is
waiting and writes it in one transaction, and keeps trying while the database is away: what happened at SES must
not be forgotten.
"""

import logging
import queue as local_queue
import threading
import time
from collections.abc import Callable

import peewee

from gateway.ops import metrics
from gateway.store import queue
from gateway.store.database import unit_of_work

log = logging.getLogger(__name__)

MAX_BATCH = 500
GATHER_SECONDS = 0.02  # after the first outcome, wait this long for more: one transaction for many, fewer wake-ups


def write_until_done(
    write: Callable[[], None], what: str, abandon: threading.Event, deadline: float | None = None
) -> bool:
    """Run `write` in a unit of database work, again and again while the database refuses it (down, restarting, a
    standby that became read-only), until it succeeds, `abandon` is set or `deadline` (time.monotonic()) passes:
    an outcome SES gave is never forgotten for a passing fault, and a message SES accepted is never sent again
    because its SENT could not be written at first. Anything else is a bug: logged, and the outcomes dropped, so
    the messages' leases end and they turn UNKNOWN, settled by SES's events. True once written."""
    delay = 0.2
    while True:
        try:
            with unit_of_work():
                write()
            return True
        except peewee.DatabaseError as exc:
            if abandon.is_set() or (deadline is not None and time.monotonic() > deadline):
                log.error("could not record %s before shutdown: %s", what, type(exc).__name__)
                return False
            log.warning("cannot record %s yet (%s); retrying", what, type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        except Exception:
            log.exception("recording %s failed; their leases will end and their outcome turn unknown", what)
            return False


class Recorder:
    """One writer thread for the outcomes the dispatch workers hand it."""

    def __init__(self) -> None:
        self._pending: local_queue.SimpleQueue = local_queue.SimpleQueue()
        self.abandon = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch-record", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, outcome: queue.AttemptOutcome) -> None:
        self._pending.put(outcome)

    def stop(self, grace: float) -> None:
        """Write what is waiting (given `grace` seconds while the database is away), then stop."""
        if self._thread.ident is None:  # never started
            return
        self._pending.put(None)
        self._thread.join(grace)
        self.abandon.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            gather_until = time.monotonic() + GATHER_SECONDS
            while len(batch) < MAX_BATCH:
                try:
                    outcome = self._pending.get(timeout=max(0.0, gather_until - time.monotonic()))
                except local_queue.Empty:
                    break
                if outcome is None:
                    stopping = True
                    break
                batch.append(outcome)
            what = f"the outcome of {len(batch)} message{'s' * (len(batch) > 1)}"
            if write_until_done(lambda batch=batch: queue.record_outcomes(batch), what, self.abandon):
                metrics.sends_recorded([outcome.state for outcome in batch])  # counted once committed
