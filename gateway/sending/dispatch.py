"""Dispatch: claim due messages at the shared pace, ask the guard again, compose, send, record the outcome.

One claimer thread takes tokens from the shared budget and claims that many due messages in one statement, so no
message is held unless it may be sent now; worker threads send them; a housekeeping thread (housekeeping.py) ends
the leases of dead dispatchers, resends unknown outcomes once, expires, purges and re-reads SES's quotas.
"""

import datetime
import logging
import os
import queue as local_queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import peewee

from gateway.ops.logs import contact_ref, masked
from gateway.sending import guard
from gateway.sending.compose import compose, unsubscribe_url
from gateway.sending.failures import (
    MESSAGE_EXPIRED,
    RECIPIENT_SUPPRESSED,
    Failure,
    Outcome,
    SendFailed,
    retry_delay,
)
from gateway.sending.housekeeping import Housekeeper
from gateway.sending.outgoing import OutgoingEmail
from gateway.sending.pacing import Pacer
from gateway.sending.pause import DAILY_QUOTA, Pause, PauseGate
from gateway.store import queue
from gateway.store.contacts import CONTACT_TAG
from gateway.store.database import database, drop_idle_connections, utcnow
from gateway.store.models import MessageState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # an idle dispatcher looks for due messages this often (at once when its own process accepts one)
BATCH = 16  # messages claimed in one statement, at most
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


class Transport(Protocol):
    """What hands one composed message to the mail system (sending/ses.py, sending/outbox.py)."""

    paced_by_ses: bool  # the rate and daily quota come from SES's GetAccount (send_quota()) unless configured

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
        """One attempt; the mail system's message id, or SendFailed with the classified failure."""


@dataclass(frozen=True)
class DispatchSettings:
    workers: int = 4
    lease_seconds: float = 60.0
    max_message_age_seconds: float = 86400.0
    pause_probe_seconds: float = 60.0
    unknown_resend_seconds: float = 900.0
    retention_days: float = 30.0
    public_base_url: str = "http://127.0.0.1:8080"


class Dispatcher:
    """This process's share of the queue. `on_pause(reason)` hears when dispatch pauses (None: resumed)."""

    def __init__(
        self,
        transport,
        pacer: Pacer,
        settings: DispatchSettings,
        *,
        on_pause: Callable[[Pause | None], None] = lambda pause: None,
    ):
        self._transport = transport
        self._pacer = pacer
        self._settings = settings
        self._worker_id = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self._slots = threading.Semaphore(settings.workers)  # one per worker not busy with a message
        self._work: local_queue.SimpleQueue = local_queue.SimpleQueue()
        self._stopping = threading.Event()
        self._abandon_records = threading.Event()
        self._wake = threading.Event()
        self._gate = PauseGate(settings.pause_probe_seconds, on_pause)
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._housekeeper = Housekeeper(
            pacer,
            unknown_resend_seconds=settings.unknown_resend_seconds,
            max_message_age_seconds=settings.max_message_age_seconds,
            retention_days=settings.retention_days,
            paused=lambda: self._gate.current is not None,
        )

    @property
    def pause(self) -> Pause | None:
        return self._gate.current

    def start(self) -> None:
        with database.connection_context():
            self._pacer.start()
        self._threads = [
            threading.Thread(target=self._claim_loop, name="dispatch-claim", daemon=True),
            threading.Thread(target=self._housekeeper.run, args=(self._stopping,), name="dispatch-housekeeping"),
        ]
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"dispatch-{i}", daemon=True)
            for i in range(self._settings.workers)
        ]
        for thread in self._threads + self._workers:
            thread.start()

    def wake(self) -> None:
        """A message was just accepted here: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, grace: float) -> None:
        """Stop claiming, give back what was claimed but not started, let in-flight sends finish and be recorded."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        unstarted = []
        while True:
            try:
                unstarted.append(self._work.get_nowait().pk)
            except local_queue.Empty:
                break
        if unstarted:
            self._bookkeep(lambda: queue.release(unstarted), "release")
        for _ in self._workers:
            self._work.put(None)
        deadline = time.monotonic() + grace
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._abandon_records.set()
        for worker in self._workers:
            worker.join(5.0)

    # --- claiming ----------------------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                idle_for = self._claim_once()
            except DATABASE_ERRORS as exc:
                log.warning("dispatch cannot reach the database: %s", type(exc).__name__)
                drop_idle_connections()
                idle_for = 1.0
            except Exception:
                log.exception("dispatch failed to claim; trying again")
                idle_for = 1.0
            if idle_for:
                self._wake.wait(idle_for)
                self._wake.clear()

    def _claim_once(self) -> float:
        """Claim what may be sent now; how long to wait before the next look (0: look again at once)."""
        limit = self._gate.claim_limit(BATCH, self._quota_freed)
        if limit == 0:
            return min(POLL_SECONDS, max(0.01, self._gate.seconds_to_probe()))
        if not self._slots.acquire(timeout=POLL_SECONDS):
            return 0.0
        slots = 1
        while slots < limit and self._slots.acquire(blocking=False):
            slots += 1
        claimed: list[queue.Claimed] = []
        try:
            with database.connection_context():
                grant = self._pacer.take(slots)
                if grant.granted:
                    claimed = queue.claim(
                        grant.granted, lease_seconds=self._settings.lease_seconds, worker=self._worker_id
                    )
                    self._pacer.give_back(grant.granted - len(claimed))
        finally:
            for _ in range(slots - len(claimed)):
                self._slots.release()
        if not grant.granted:
            if grant.quota_spent:
                self._gate.shut(Pause(DAILY_QUOTA, "SES's 24-hour sending quota is used up"))
                return POLL_SECONDS
            return min(POLL_SECONDS, grant.wait)
        if claimed:
            self._gate.probing_with(claimed[0].pk)
        for message in claimed:
            self._work.put(message)
        return 0.0 if claimed else POLL_SECONDS

    def _quota_freed(self) -> bool:
        """A spent daily quota is probed by asking SES for it again."""
        with database.connection_context():
            remaining = self._pacer.refresh()
        return remaining is not None and remaining != 0

    # --- sending ---------------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while (message := self._work.get()) is not None:
            try:
                self._deliver(message)
            except Exception:
                log.exception("dispatch of %s failed unexpectedly; it is retried later", message.message_id)
                failure = Failure(Outcome.RETRY, "INTERNAL", detail="the gateway failed to dispatch it")
                self._record_failure(message, failure)
            finally:
                self._slots.release()

    def _deliver(self, message: queue.Claimed) -> None:
        age = utcnow() - message.created_at
        if age.total_seconds() >= self._settings.max_message_age_seconds:
            self._record(message, MessageState.EXPIRED, Failure(Outcome.RETRY, MESSAGE_EXPIRED), attempted=False)
            return self._gate.after_attempt(message.pk, None, sent=False)
        with database.connection_context():
            contact = guard.recheck(message.contact_pk)
        if contact is None or contact.status.suppressed:
            status = contact.status.value if contact else "deleted"
            log.info("dispatch refused %s: the recipient is %s now", message.message_id, status)
            failure = Failure(Outcome.REFUSED, RECIPIENT_SUPPRESSED, detail=f"the recipient is {status}")
            self._record(message, MessageState.SUPPRESSED, failure, attempted=False)
            return self._gate.after_attempt(message.pk, None, sent=False)

        email = OutgoingEmail.from_payload(message.payload)
        raw = compose(email, unsubscribe_url(self._settings.public_base_url, contact.contact_id))
        tags = dict(email.tags) | {CONTACT_TAG: contact.contact_id, queue.MESSAGE_TAG: message.message_id}
        recipient, ref = masked(email.to.addr_spec), contact_ref(contact.contact_id)
        try:
            ses_message_id = self._transport.send(
                raw, sender=email.sender.addr_spec, recipient=email.to.addr_spec, tags=tags
            )
        except SendFailed as exc:
            failure = exc.failure
            log.warning(
                "send of %s to %s (contact %s) failed: %s %s (%s)",
                message.message_id,
                recipient,
                ref,
                failure.reason,
                failure.ses_error_code,
                failure.outcome.value,
            )
            self._record_failure(message, failure)
            return self._gate.after_attempt(message.pk, failure, sent=False)
        # SES has it: from here on only the bookkeeping is retried, never the send.
        self._bookkeep(lambda: queue.record_sent(message.pk, ses_message_id), message.message_id)
        log.info(
            "sent %s as %s to %s (contact %s, %d bytes)", message.message_id, ses_message_id, recipient, ref, len(raw)
        )
        self._gate.after_attempt(message.pk, None, sent=True)

    def _record_failure(self, message: queue.Claimed, failure: Failure) -> None:
        now = utcnow()
        settings = self._settings
        if failure.outcome is Outcome.RETRY:
            due = now + datetime.timedelta(seconds=retry_delay(message.attempts + 1))
            too_old = (due - message.created_at).total_seconds() >= settings.max_message_age_seconds
            state = MessageState.EXPIRED if too_old else MessageState.QUEUED
            self._record(message, state, failure, due_at=due)
        elif failure.outcome is Outcome.REFUSED:
            self._record(message, MessageState.FAILED, failure)
        elif failure.outcome is Outcome.PAUSE:
            self._record(message, MessageState.QUEUED, failure)
            self._gate.shut(Pause(failure.reason, failure.detail or failure.ses_error_code))
        else:
            resend = now + datetime.timedelta(seconds=settings.unknown_resend_seconds)
            self._record(message, MessageState.UNKNOWN, failure, due_at=resend)

    def _record(
        self,
        message: queue.Claimed,
        state: MessageState,
        failure: Failure,
        *,
        due_at: datetime.datetime | None = None,
        attempted: bool = True,
    ) -> None:
        self._bookkeep(
            lambda: queue.record_outcome(
                message.pk,
                state,
                reason=failure.reason,
                ses_error_code=failure.ses_error_code,
                detail=failure.detail,
                due_at=due_at,
                attempted=attempted,
            ),
            message.message_id,
        )

    def _bookkeep(self, record: Callable[[], None], what: str) -> None:
        """Write an outcome, retrying while the database is away: what happened at SES must not be forgotten (a
        message SES accepted is never sent again because its SENT could not be written at first)."""
        delay = 0.2
        while True:
            try:
                with database.connection_context():
                    record()
                return
            except DATABASE_ERRORS as exc:
                drop_idle_connections()
                if self._abandon_records.is_set():
                    log.error("could not record the outcome of %s before shutdown: %s", what, type(exc).__name__)
                    return
                log.warning("cannot record the outcome of %s yet (%s); retrying", what, type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
