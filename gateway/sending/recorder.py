"""Writing what became of each attempt, from one thread, many outcomes a transaction.

SQLite takes one writer at a time: sixteen dispatch workers each committing their own outcome spent most of their
time in SQLite's busy wait (the dispatch benchmark ran at a fifth of boto3's pace). A recorder drains whatever is
waiting and writes it in one transaction, and keeps trying while the database is away: what happened at SES must
not be forgotten. An outcome the database refuses for good (a value it cannot hold) is stored without SES's details
instead of holding up every outcome behind it: a stalled recorder let leases end and messages be sent twice.
"""

import logging
import queue as local_queue
import threading
import time
from collections.abc import Callable

import peewee

from gateway.core import metrics
from gateway.core.failures import OUTCOME_NOT_STORED
from gateway.store import settling
from gateway.store.database import unit_of_work

log = logging.getLogger(__name__)

MAX_BATCH = 500
GATHER_SECONDS = 0.02  # after the first outcome, wait this long for more: one transaction for many, fewer wake-ups


# The database refuses this row, not every write: a value it cannot hold, a unique id another row has. Writing the
# same outcome again can never succeed, so it is isolated (see Recorder) rather than retried. Every other database
# error (down, restarting, a standby that became read-only) is retried: what happened at SES is never forgotten.
ROW_REFUSED = (peewee.DataError, peewee.IntegrityError)


def write_until_done(
    write: Callable[[], None], what: str, abandon: threading.Event, deadline: float | None = None
) -> bool:
    """Run `write` in a unit of database work, again and again while the database refuses it for a passing reason,
    until it succeeds, `abandon` is set or `deadline` (time.monotonic()) passes: an outcome SES gave is never
    forgotten for a passing fault, and a message SES accepted is never sent again because its SENT could not be
    written at first. True once written. ROW_REFUSED is raised: retrying would never end."""
    delay = 0.2
    while True:
        try:
            with unit_of_work():
                write()
            return True
        except ROW_REFUSED:
            raise
        except peewee.DatabaseError as exc:
            if abandon.is_set() or (deadline is not None and time.monotonic() > deadline):
                log.error("could not record %s before shutdown: %s", what, type(exc).__name__)
                return False
            log.warning("cannot record %s yet (%s); retrying", what, type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class Recorder:
    """One writer thread for the outcomes the dispatch workers hand it."""

    def __init__(self) -> None:
        self._pending: local_queue.SimpleQueue = local_queue.SimpleQueue()
        self.abandon = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch-record", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, outcome: settling.AttemptOutcome) -> None:
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
            self._record(batch)

    def _record(self, batch: list[settling.AttemptOutcome]) -> None:
        """The batch in one transaction; when the database refuses a row of it, each outcome alone, and one it still
        refuses as SES gave it is stored without SES's details (OUTCOME_NOT_STORED): the recorder goes on, and that
        message keeps the state its attempt led to, so a stall never turns into a resend."""
        what = f"the outcome of {len(batch)} message{'s' * (len(batch) > 1)}"
        try:
            if write_until_done(lambda: settling.record_outcomes(batch), what, self.abandon):
                metrics.sends_recorded([outcome.state for outcome in batch])  # counted once committed
            return
        except Exception as exc:  # ROW_REFUSED, or a value no driver takes
            if len(batch) == 1:
                self._record_without_details(batch[0], exc)
                return
        for outcome in batch:
            self._record([outcome])

    def _record_without_details(self, outcome: settling.AttemptOutcome, refused: Exception) -> None:
        log.error(
            "the database refused the outcome of message %d as SES gave it (%s): recorded %s without SES's details",
            outcome.pk,
            type(refused).__name__,
            outcome.state,
        )

        def plain() -> None:  # the state the attempt led to, with nothing from SES in it (no id, code or text)
            detail = f"SES's answer could not be stored as given ({type(refused).__name__})"
            settling.record_outcome(
                outcome.pk, outcome.state, reason=OUTCOME_NOT_STORED, detail=detail, due_at=outcome.due_at,
                attempted=outcome.attempted,
            )  # fmt: skip

        try:
            if write_until_done(plain, "an outcome without SES's details", self.abandon):
                metrics.sends_recorded([outcome.state])
        except Exception:  # a bug: its lease ends, and it turns unknown (settled by SES's events)
            log.exception("could not record the outcome of message %d at all", outcome.pk)
