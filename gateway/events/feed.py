"""The event log's pulse in one gateway process: a loop that gives positions to committed records (whoever wrote
them: this process, another gateway, the sidecar) and wakes this process's watchers when the log has grown."""

import threading

from gateway.core.loops import Loop
from gateway.store import event_log
from gateway.store.database import UNAVAILABLE, unit_of_work

ROUNDS = 10  # sequencing batches in one step at most (event_log.sequence's 1,000 records each)


class EventFeed:
    """One per gateway process; `loops` holds its loop (process/gateway.py starts it with the others)."""

    def __init__(self, *, every: float):
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.last = 0  # the last position given, as this process knows it
        self._listeners: list[threading.Event] = []
        self.loops = [Loop("event-log", self.step, every=every, stopping=self._stopping, quiet=UNAVAILABLE)]

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop(self, grace: float) -> None:
        """Stop the loop and end every watcher's wait (their streams end as the server stops)."""
        self._stopping.set()
        self.wake_all()
        for loop in self.loops:
            loop.join(max(grace, 1.0))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def listen(self) -> threading.Event:
        """An event set whenever the log grows (and at stop): a loop's `wake` (events/webhooks.py)."""
        event = threading.Event()
        self._listeners.append(event)
        return event

    def wake_all(self) -> None:
        """Every waiting watcher and listener looks again (one whose stream ended sees that)."""
        with self._changed:
            self._changed.notify_all()
        for event in self._listeners:
            event.set()

    def step(self) -> None:
        with unit_of_work():
            for _ in range(ROUNDS):
                if not event_log.has_unsequenced() or event_log.sequence() < event_log.BATCH:
                    break
            last = event_log.last_position()
        if last != self.last:
            self.last = last
            self.wake_all()

    def wait_beyond(self, position: int, timeout: float) -> bool:
        """Wait until the log holds a position beyond `position`, at most `timeout` seconds; whether it does."""
        with self._changed:
            if self.last <= position and not self.stopping:
                self._changed.wait(timeout)
            return self.last > position
