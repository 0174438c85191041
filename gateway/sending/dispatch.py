"""Dispatch: claim due messages at the shared pace, ask the guard again, compose, send, record the outcome.

One claimer thread takes tokens from the shared budget and claims that many due messages in one statement, so no
message is held unless it may be sent now; worker threads send them; a housekeeping thread (housekeeping.py) ends
the leases of dead dispatchers, resends unknown outcomes once, expires, purges and re-reads SES's quotas.
"""

import logging
import os
import queue as local_queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from gateway.core import metrics
from gateway.core.config import Settings
from gateway.core.failures import (
    DISPATCH_FAILED,
    EXPIRED,
    NOT_DISPATCHED,
    TRANSPORT_FAILED,
    Failure,
    SendFailed,
    recipient_suppressed,
)
from gateway.core.logs import contact_ref, masked
from gateway.core.loops import PRODUCTION, Loop, Timings
from gateway.core.states import Priority
from gateway.sending import guard
from gateway.sending.attachments import LARGE_MESSAGE_BUDGET, LargeMessages
from gateway.sending.compose import compose, unsubscribe_url
from gateway.sending.housekeeping import Housekeeper
from gateway.sending.order import Order
from gateway.sending.outcomes import Outcomes
from gateway.sending.outgoing import FilesGone, OutgoingEmail
from gateway.sending.pacing import Pacer
from gateway.sending.pause import DAILY_QUOTA, Pause, PauseGate, Reached
from gateway.sending.recorder import Recorder, write_until_done
from gateway.sending.reputation import Limits, ReputationGuard
from gateway.sending.ses_tenants import SesTenantWatch
from gateway.sending.tenant_guard import TenantGuard, TenantLimits
from gateway.ses.tenants import SesTenants
from gateway.store import queue, settling
from gateway.store import ses_tenants as ses_tenant_rows
from gateway.store.contacts import CONTACT_TAG
from gateway.store.database import UNAVAILABLE, database_now, unit_of_work, utcnow
from gateway.store.models import MessageState

log = logging.getLogger(__name__)

BATCH = 16  # messages claimed in one statement, at most


class Transport(Protocol):
    """What hands one composed message to the mail system (ses/transport.py, ses/outbox.py). A transport that is
    paced_by_ses also answers send_quota() (SES's GetAccount), which pacing.py reads."""

    paced_by_ses: bool

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str | None:
        """One attempt; the mail system's message id, or SendFailed with the classified failure."""


class Dispatcher:
    """This process's share of the queue. `on_pause(reason)` hears when dispatch pauses (None: resumed)."""

    def __init__(
        self,
        transport,
        pacer: Pacer,
        settings: Settings,
        *,
        on_pause: Callable[[Pause | None], None] = lambda pause: None,
        on_tenants_paused: Callable[[list[str]], None] = lambda names: None,
        timings: Timings = PRODUCTION,
        order: Order | None = None,
        large: LargeMessages | None = None,
    ):
        self._transport = transport
        self._large = large or LargeMessages(LARGE_MESSAGE_BUDGET)  # sending's own (accepting has another)
        self._order = order or Order(lambda caller: 1.0, settings.lower_class_min_share)
        self._pacer = pacer
        self._settings = settings
        self._timings = timings
        self._sender_name = settings.sender_name  # every footer names it; derived once, not per message
        self._worker_id = f"{socket.gethostname()}:{os.getpid()}"[:64]
        # Messages this process holds (claimed, handed to a worker or being sent): one per worker, never more, so a
        # dispatcher that dies leaves behind only messages it had begun to send (an expired lease means "maybe sent").
        # When busy it waits for a quarter of the workers to be free, so a claim is one statement for several.
        self._held = 0
        self._capacity = settings.dispatch_workers
        self._min_batch = max(1, settings.dispatch_workers // 4)
        self._room = threading.Condition()
        self._work: local_queue.SimpleQueue = local_queue.SimpleQueue()
        self._stopping = threading.Event()
        self._recorder = Recorder()
        self._wake = threading.Event()
        self._gate = PauseGate(settings.pause_probe_seconds, on_pause)
        self._outcomes = Outcomes(self._recorder, self._gate, settings, timings)
        self._workers: list[threading.Thread] = []
        housekeeper = Housekeeper(
            pacer,
            unknown_resend_seconds=settings.unknown_resend_seconds,
            max_message_age_seconds=settings.max_message_age_seconds,
            retention_days=settings.message_retention_days,
            event_retention_days=settings.event_retention,
            paused=lambda: self._gate.current is not None,
            timings=timings,
            stopping=self._stopping,
        )
        background = {"stopping": self._stopping, "quiet": UNAVAILABLE}
        # This process's loops (process/gateway.py lists them with the rest): claiming, housekeeping, the guard.
        self.loops = [
            Loop("dispatch-claim", self._claim_once, every=timings.poll_seconds, wake=self._wake, **background),
            Loop("dispatch-housekeeping", housekeeper.step, every=timings.sweep_seconds, **background),
        ]
        self.reputation: ReputationGuard | None = None  # read by metrics: .reading
        self.tenants: TenantGuard | None = None
        if settings.reputation_guard:
            limits = Limits.from_settings(settings)
            self.reputation = ReputationGuard(
                limits,
                settings.reputation_check_seconds,
                pacer=pacer,
                gate=self._gate,
                follow_seconds=timings.follow_seconds,
            )
            self.loops.append(
                Loop("dispatch-reputation", self.reputation.step, every=timings.follow_seconds, **background)
            )
            self.tenants = TenantGuard(
                TenantLimits.of(limits, settings.tenant_reputation_min_sends),
                settings.reputation_check_seconds,
                follow_seconds=timings.follow_seconds,
                on_paused=on_tenants_paused,
            )
            self.loops.append(Loop("tenant-reputation", self.tenants.step, every=timings.follow_seconds, **background))
        if settings.ses_tenants:
            watch = SesTenantWatch(
                SesTenants(),
                self._gate,
                status_seconds=settings.ses_tenant_status_seconds,
                pause_in_ses=settings.ses_tenant_pause_in_ses,
                retry_seconds=timings.ses_tenant_retry_seconds,
            )
            self.loops.append(Loop("ses-tenants", watch.step, every=timings.follow_seconds, **background))

    @property
    def pause(self) -> Pause | None:
        return self._gate.current

    def start(self) -> None:
        if not self._settings.ses_tenants:
            with unit_of_work():
                ses_tenant_rows.forget()  # what SES said of the tenants holds no mail without MAILGW_SES_TENANTS
        with unit_of_work():
            self._pacer.start()
            if self.reputation is not None:
                self.reputation.start()  # before the first claim: a stored pause holds from the start
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"dispatch-{i}", daemon=True)
            for i in range(self._settings.dispatch_workers)
        ]
        self._recorder.start()
        for worker in self._workers:
            worker.start()
        for loop in self.loops:
            loop.start()

    def wake(self) -> None:
        """A message was just accepted here: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, grace: float) -> None:
        """Stop claiming, give back what was claimed but not started, let in-flight sends finish and be recorded;
        after `grace` seconds, stop waiting for them (or for the database)."""
        deadline = time.monotonic() + grace
        self._stopping.set()
        self._wake.set()
        with self._room:
            self._room.notify_all()
        for loop in self.loops:
            loop.join(max(1.0, deadline - time.monotonic()))
        unstarted = []
        while True:
            try:
                unstarted.append(self._work.get_nowait().pk)
            except local_queue.Empty:
                break
        if unstarted:
            release = lambda: queue.release(unstarted)  # noqa: E731
            write_until_done(release, "the release of unstarted claims", self._recorder.abandon, deadline)
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._recorder.stop(max(0.0, deadline - time.monotonic()))

    # --- claiming ----------------------------------------------------------------------------------------

    def _claim_once(self) -> float:
        """One turn of the claim loop: claim what may be sent now; how long to wait before the next look (0: look
        again at once)."""
        room = self._wait_for_room()
        if room == 0:
            return 0.0
        with unit_of_work():
            queue.promote_due(database_now())  # scheduled mail whose send_at came joins its lane now
        limit = min(room, self._gate.claim_limit(BATCH, self._quota_freed))  # asked after the wait: a pause may
        if limit == 0:  # have begun meanwhile
            return min(self._timings.poll_seconds, max(0.01, self._gate.seconds_to_probe()))
        claimed: list[queue.Claimed] = []

        def claim(granted: int) -> int:
            claimed.extend(
                self._order.claim(granted, lease_seconds=self._settings.dispatch_lease_seconds, worker=self._worker_id)
            )
            return len(claimed)

        try:
            with unit_of_work():
                grant = self._pacer.spend(limit, claim)  # the tokens and the claim commit together
        except BaseException:
            claimed.clear()  # rolled back with the budget: these rows were never ours
            raise
        with self._room:
            self._held += len(claimed)
        if grant.quota_spent:
            self._gate.shut(Pause(DAILY_QUOTA, "SES's 24-hour sending quota is used up"))
            return self._timings.poll_seconds
        if not claimed:  # no token yet (wait for one), or nothing due (poll)
            return min(self._timings.poll_seconds, grant.wait) if grant.wait else self._timings.poll_seconds
        self._gate.probing_with(claimed[0].pk)
        for message in claimed:
            self._work.put(message)
        return 0.0

    def _wait_for_room(self) -> int:
        """How many more messages this process may take: waits (up to a poll) while it holds so many that the
        claim would be smaller than half the workers; 0 when the wait ended without room."""
        with self._room:
            self._room.wait_for(
                lambda: self._capacity - self._held >= self._min_batch or self._held == 0 or self._stopping.is_set(),
                timeout=self._timings.poll_seconds,
            )
            return 0 if self._stopping.is_set() else self._capacity - self._held

    def _done_with_one(self) -> None:
        with self._room:
            self._held -= 1
            if self._capacity - self._held == self._min_batch or self._held == 0:  # wake the claimer once per batch
                self._room.notify()

    def _quota_freed(self) -> bool | None:
        """A spent daily quota is probed by asking SES for it again; None when SES does not say (no GetAccount
        permission, say): then a message probes."""
        with unit_of_work():
            remaining = self._pacer.refresh()
        return None if remaining is None else remaining != 0

    # --- sending ---------------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while (message := self._work.get()) is not None:
            failure, reached = None, Reached.NOT_TRIED
            try:
                failure, reached = self._deliver(message)
            except UNAVAILABLE as exc:  # before the send (the guard could not look): nothing was sent
                log.warning(
                    "dispatch of %s waits for the database: %s",
                    message.message_id,
                    type(exc).__name__,
                    extra={"message_id": message.message_id},
                )
                self._outcomes.failed(message, NOT_DISPATCHED, attempted=False)
            except FilesGone as exc:  # settled while it waited (its state stays what settled it): nothing was sent
                log.warning("%s is not sent: %s", message.message_id, exc, extra={"message_id": message.message_id})
                self._outcomes.failed(message, DISPATCH_FAILED, attempted=False)
            except Exception:  # a bug before the send: nothing was sent
                log.exception(
                    "dispatch of %s failed unexpectedly; it is retried later",
                    message.message_id,
                    extra={"message_id": message.message_id},
                )
                failure = DISPATCH_FAILED
                self._outcomes.failed(message, failure, attempted=False)
            finally:
                self._gate.after_attempt(message.pk, failure, reached)
                self._done_with_one()

    @staticmethod
    def _files_of(pk: int) -> list[tuple]:
        with unit_of_work():
            return queue.attachments_of(pk)

    def _deliver(self, message: queue.Claimed) -> tuple[Failure | None, Reached]:
        """Guard, compose, send, hand the outcome to the recorder; the failure (None: sent) and how far it got."""
        if self._outcomes.too_old(message):
            self._outcomes.record(message, self._outcomes.expired_state(message), EXPIRED, attempted=False)
            return None, Reached.NOT_TRIED
        with unit_of_work():
            contact = guard.recheck(message.contact_pk)  # right before the SES call, as the database holds it now
        if contact is None or contact.status.suppressed:
            status = contact.status.value if contact else "deleted"
            metrics.guard_refused(contact.status if contact else None, "dispatch")
            work = {"message_id": message.message_id, "contact": contact_ref(contact.contact_id) if contact else ""}
            log.info("dispatch refused %s: the recipient is %s now", message.message_id, status, extra=work)
            failure = recipient_suppressed(status)
            self._outcomes.record(message, MessageState.SUPPRESSED, failure, attempted=False)
            return None, Reached.NOT_TRIED

        # Files are copied several times on their way to SES: a large message waits for its share of the budget.
        with self._large.hold(OutgoingEmail.attached_bytes(message.payload)):
            email = OutgoingEmail.from_payload(message.payload, files=lambda: self._files_of(message.pk))
            raw = compose(email, unsubscribe_url(self._settings.public_base_url, contact.contact_id), self._sender_name)
            tags = dict(email.tags) | {
                CONTACT_TAG: contact.contact_id,
                queue.MESSAGE_TAG: message.message_id,
                queue.PRIORITY_TAG: Priority(message.priority).label,
            }
            if message.tenant:
                tags[queue.TENANT_TAG] = message.tenant
            try:
                ses_message_id = self._transport.send(
                    raw, sender=email.sender.addr_spec, recipient=email.to.addr_spec, tags=tags
                )
            except SendFailed as exc:
                failure = exc.failure
                metrics.ses_error(failure)
            except Exception:  # the request may have left: never taken for "not sent"
                log.exception(
                    "the transport failed unexpectedly sending %s",
                    message.message_id,
                    extra={"message_id": message.message_id},
                )
                failure = TRANSPORT_FAILED
            else:
                # SES has it: from here on only the bookkeeping is retried (recorder.py), never the send.
                sent = settling.AttemptOutcome(message.pk, MessageState.SENT, ses_message_id=ses_message_id)
                self._recorder.put(sent)
                metrics.reached_ses(message.priority, (utcnow() - message.ready_at).total_seconds())
                if log.isEnabledFor(logging.INFO):
                    ref = contact_ref(contact.contact_id)
                    log.info(
                        "sent %s as %s to %s (contact %s, %d bytes)",
                        message.message_id,
                        ses_message_id,
                        masked(email.to.addr_spec),
                        ref,
                        len(raw),
                        extra={"message_id": message.message_id, "contact": ref, "ses_message_id": ses_message_id},
                    )
                return None, Reached.ANSWERED
        ref = contact_ref(contact.contact_id)
        log.warning(
            "send of %s to %s (contact %s) failed: %s; %s",
            message.message_id,
            masked(email.to.addr_spec),
            ref,
            failure,  # reason, SES's code, the detail (an error page's status, never its markup)
            failure.outcome.value,
            extra={"message_id": message.message_id, "contact": ref},
        )
        self._outcomes.failed(message, failure)
        return failure, Reached.ANSWERED if failure.ses_error_code else Reached.TRIED
