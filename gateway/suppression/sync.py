"""One pass of the suppression-list sync: import what SES lists (incrementally, or the whole list for a reconcile),
settle the contacts SES no longer lists, then carry out our intents on SES's list (deletes always, puts when pushing).

Runs under the lease in ses_sync (store/ses_list.py), so one process at a time does it; every step is idempotent, so
a pass that stops halfway (a crash, a lost lease, SES refusing) is simply done again by the next.
"""

import datetime
import enum
import logging
import os
import socket
import threading
from dataclasses import dataclass

from gateway.core.addresses import InvalidAddress, email_key
from gateway.core.failures import retry_delay, suppression_call_retried
from gateway.core.logs import masked
from gateway.core.states import StatusSource
from gateway.ses.suppression_list import SesSuppressionList, SuppressedDestination, SuppressionCallFailed
from gateway.store import ses_list as store
from gateway.store.contacts import change_status, recipient
from gateway.store.database import database, database_now
from gateway.store.models import ContactStatus

log = logging.getLogger(__name__)

SYNC_ACTOR = "suppression-sync"  # the actor of the statuses a reconcile lowers
LEASE_SECONDS = 300.0  # renewed after every page and every batch of intents
# An incremental listing starts this long before the newest LastUpdateTime seen: an entry SES added just before the
# last pass, but listed only after it, is still found (importing one twice changes nothing).
OVERLAP = datetime.timedelta(minutes=15)
CHUNK = 100  # entries per transaction: the sidecar's writes wait for no longer than one chunk


class LeaseHeld(Exception):
    """Another process is running the sync now."""


class LeaseLost(Exception):
    """This pass held the lease too long without renewing it and another process took it over."""


@dataclass
class SyncReport:
    """What one pass did, for the log line and `mailgw suppression sync`."""

    full: bool = False
    listed: int = 0  # entries SES listed
    suppressed: int = 0  # contacts the list raised to bounced or complained
    unreadable: int = 0  # listed addresses our validator refuses (logged, masked)
    held_back: int = 0  # listed addresses left alone: an operator reactivated them meanwhile
    unlisted: int = 0  # addresses SES listed before and no longer does (full pass only)
    restored: int = 0  # contacts lowered because nothing but SES's list held them
    put: int = 0  # our suppressions put on SES's list
    deleted: int = 0  # reactivated addresses taken off it
    waiting: int = 0  # intents left for a later pass (SES failed; retried)
    refused: int = 0  # intents SES refused for good (kept, with SES's reason)


class Done(enum.StrEnum):
    """What carrying out one intent came to."""

    PUT = "put on SES's list"
    DELETED = "removed from SES's list"
    NOT_LISTED = "was not on SES's list"
    STALE = "no longer wanted"
    WAITING = "not yet: retried later"
    REFUSED = "refused by SES"


class SuppressionSync:
    """Runs passes against one SES account; `push` puts our own suppressions on SES's list."""

    def __init__(
        self,
        ses: SesSuppressionList,
        *,
        push: bool,
        reconcile_every: datetime.timedelta,
        stopping: threading.Event | None = None,
        settle_after: datetime.timedelta,
    ):
        self._ses = ses
        self._push = push
        self._reconcile_every = reconcile_every
        self._settle_after = settle_after
        self._stopping = stopping or threading.Event()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:128]

    @classmethod
    def from_settings(cls, settings, ses: SesSuppressionList, *, stopping: threading.Event | None = None):
        """As the gateway's settings ask: MAILGW_SES_SUPPRESSION_PUSH, _RECONCILE_HOURS and _SETTLE_SECONDS (a status
        set this shortly before a reconcile's listing began may not be in that listing yet: left for the next)."""
        return cls(
            ses,
            push=settings.ses_suppression_push,
            reconcile_every=datetime.timedelta(hours=settings.ses_suppression_reconcile_hours),
            settle_after=datetime.timedelta(seconds=settings.ses_suppression_settle_seconds),
            stopping=stopping,
        )

    def run(self, *, full: bool | None = None, every: datetime.timedelta | None = None) -> SyncReport | None:
        """One pass under the lease; a full one when `full`, or when None and the last reconcile is older than
        reconcile_every. With `every`, only when no pass completed within it (None: not due, or another process
        holds the lease). Without it, LeaseHeld when another process holds the lease.
        SuppressionCallFailed when SES would not list; the next pass starts again."""
        state = store.acquire_lease(self.holder, LEASE_SECONDS, idle_for=every)
        if state is None:
            if every is not None:
                return None
            raise LeaseHeld(*store.lease_holder())
        try:
            if full is None:
                full = state.cursor is None or state.last_full_at is None
                full = full or state.last_full_at <= database_now() - self._reconcile_every
            report = SyncReport(full=bool(full))
            self._pull(state, report)
            self._carry_out_due(report)
            return report
        finally:
            store.release_lease(self.holder)

    # --- pull: SES's list into contacts ---------------------------------------------------------------------

    def _pull(self, state: store.SyncState, report: SyncReport) -> None:
        began = database_now()
        added_after = None if report.full or state.cursor is None else state.cursor - OVERLAP
        newest = state.cursor
        for page in self._ses.pages(added_after=added_after):
            self._renew()
            report.listed += len(page)
            for start in range(0, len(page), CHUNK):
                self._import(page[start : start + CHUNK], began, report)
            times = [entry.last_update_time for entry in page if entry.last_update_time is not None]
            if times:
                newest = max(times + ([newest] if newest else []))
        if report.full:  # the listing was complete: whatever it did not show is off SES's list
            report.unlisted = store.forget_unseen(began)
            self._reconcile(began, report)
        store.record_pass(self.holder, cursor=newest, full=report.full)

    def _import(self, entries: list[SuppressedDestination], began: datetime.datetime, report: SyncReport) -> None:
        listed: dict[str, store.Listed] = {}
        for entry in entries:
            try:
                email = email_key(entry.address)
            except InvalidAddress as exc:
                report.unreadable += 1
                log.warning("SES lists %s, not an address we can store: %s", masked(entry.address), exc)
                continue
            earlier = listed.get(email)
            if earlier is None or earlier.reason == "BOUNCE":  # a complaint weighs more than a bounce
                listed[email] = store.Listed(email, entry.address, entry.reason, entry.last_update_time)
        with database.atomic():
            known = store.statuses_of(sorted(listed))
            # One address after the other in key order, each inserted or locked as change_status does: the order the
            # sidecar's transactions take too, so neither waits for the other in a cycle.
            for email in sorted(listed):
                entry = listed[email]
                status = store.STATUS_OF_REASON[entry.reason]
                pk, current = known.get(email, (None, ContactStatus.ACTIVE))
                if current.severity >= status.severity:
                    continue  # nothing to raise (read unlocked: skipping is never the unsafe way)
                if pk is not None and store.held_back_from_import(pk, changed_since=began - self._settle_after):
                    report.held_back += 1
                    continue
                when = entry.last_update_time
                when = f", last updated {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""
                update = change_status(
                    status,
                    source=StatusSource.SES_LIST,
                    reason=f"on SES's account suppression list ({entry.reason}{when})",
                    email=email,
                )
                report.suppressed += update.changed
            # After the contacts: the lock order of every transaction (contact, intent, mirror).
            store.mirror_seen([listed[email] for email in sorted(listed)], began)

    # --- reconcile: contacts that SES's list no longer holds ---------------------------------------------------

    def _reconcile(self, began: datetime.datetime, report: SyncReport) -> None:
        """Every bounced or complained contact that SES does not list as such: lowered to what our own feedback
        says when nothing else held it there; queued for a put when pushing and our own feedback holds it."""
        after = 0
        while held := store.held_not_listed(CHUNK, after_pk=after, with_own_feedback=self._push):
            self._renew()
            for contact in held:
                with database.atomic():
                    settled = settle(contact, not_after=began - self._settle_after, push=self._push)
                report.restored += settled
            after = held[-1].pk

    # --- our intents on SES's list -------------------------------------------------------------------------

    def _carry_out_due(self, report: SyncReport) -> None:
        after = 0
        while intents := store.due_intents(CHUNK, puts=self._push, after_pk=after):
            self._renew()
            for intent in intents:
                if self._stopping.is_set():
                    return
                done, _ = carry_out(intent, self._ses)
                if done is Done.PUT:
                    report.put += 1
                elif done in (Done.DELETED, Done.NOT_LISTED):
                    report.deleted += 1
                elif done is Done.REFUSED:
                    report.refused += 1
                elif done is Done.WAITING:  # SES throttles, is unreachable or refuses the account: not now
                    report.waiting += 1
                    return
            after = intents[-1].pk

    def _renew(self) -> None:
        if self._stopping.is_set():
            raise LeaseLost("stopping")
        if not store.renew_lease(self.holder, LEASE_SECONDS):
            raise LeaseLost("another process took over the suppression sync")


def settle(contact: store.Held, *, not_after: datetime.datetime | None, push: bool) -> bool:
    """One contact that SES's list does not hold under its status (per the mirror), in the caller's transaction. A
    bounced or complained status is lowered to the highest of what our own feedback says and what SES still lists,
    unless it changed after `not_after`; when pushing, and our own feedback holds it, it is queued for a put. True
    when it was lowered."""
    found = store.locked_status(contact.pk)  # as it is now, not as the reconcile's query saw it
    if found is None or found[0] not in store.LISTED_REASONS:
        return False
    current, updated_at = found
    listed = store.STATUS_OF_REASON.get(contact.listed_reason or "", ContactStatus.ACTIVE)
    own = store.status_without_ses_list(contact.pk)
    target = max(own, listed, key=lambda status: status.severity)
    lowered = False
    if target.severity < current.severity and (not_after is None or updated_at < not_after):
        reason = "no longer on SES's account suppression list"
        change_status(
            target, source=StatusSource.SES_LIST, reason=reason, actor=SYNC_ACTOR, email=contact.email, lower=True
        )
        current, lowered = target, True
    if push and own == current and own in store.LISTED_REASONS and listed != own:
        if store.intent_of(contact.pk) is None:
            store.want(contact.pk, store.PUT, store.LISTED_REASONS[own])
    return lowered


def carry_out(intent: store.Intent, ses: SesSuppressionList):
    """Make one intent true on SES's list: (Done, the failure when it was not)."""
    contact = recipient(pk=intent.contact_pk)
    if intent.action == store.PUT:
        if contact is None or contact.status not in store.LISTED_REASONS:
            store.forget_intent(intent)  # reactivated since (its own intent replaced this one) or gone
            return Done.STALE, None
        reason = store.LISTED_REASONS[contact.status]
        address = intent.email
    else:
        reason, address = "", store.mirror_address(intent.email) or intent.email
    try:
        if intent.action == store.PUT:
            ses.put(address, reason)
            done = Done.PUT
        else:
            done = Done.DELETED if ses.delete(address) else Done.NOT_LISTED
    except SuppressionCallFailed as exc:
        return _failed(intent, exc, ses.retry_base_seconds), exc.failure
    with database.atomic():
        # The contact first: the lock order of every transaction that changes a status (then intent, then mirror).
        now = store.locked_status(intent.contact_pk)
        store.forget_intent(intent)
        if done is Done.PUT:
            store.mirror_seen([store.Listed(intent.email, address, reason, None)], database_now())
            if now is not None and now[0] not in store.LISTED_REASONS:
                # Reactivated while SES took the put, and that reactivation's delete may have come first.
                store.want(intent.contact_pk, store.DELETE)
        else:
            store.mirror_forget(intent.email)
            if now is not None and now[0] in store.LISTED_REASONS:
                # Bounced again while the delete waited (SES dropped a message to it, still listed): what only the
                # list said no longer holds.
                settle(store.Held(intent.contact_pk, intent.email, None), not_after=None, push=False)
    log.info("suppression list: %s %s (%s)", masked(intent.email), done, intent.action)
    return done, None


def _failed(intent: store.Intent, exc: SuppressionCallFailed, retry_base_seconds: float) -> Done:
    failure = exc.failure
    if not suppression_call_retried(failure):
        store.refuse_intent(intent, failure.reason)
        log.warning("SES refused to %s %s on its suppression list: %s", intent.action, masked(intent.email), exc)
        return Done.REFUSED
    delay = retry_delay(intent.attempts + 1, retry_base_seconds)  # the job's period is usually longer: the next pass
    store.retry_intent(intent, failure.reason, delay)
    action, email = intent.action, masked(intent.email)
    log.warning("could not %s %s on SES's suppression list: %s; again in %.0f s", action, email, exc, delay)
    return Done.WAITING


def describe(report: SyncReport) -> str:
    """One line for the log and the command line."""
    kind = "full reconcile" if report.full else "incremental"
    parts = [
        f"{kind}: SES listed {report.listed}",
        f"{report.suppressed} contacts suppressed",
        f"{report.held_back} held back (reactivated)",
        f"{report.unreadable} unreadable",
    ]
    if report.full:
        parts += [f"{report.unlisted} no longer listed", f"{report.restored} contacts restored"]
    parts += [
        f"{report.put} put on SES's list",
        f"{report.deleted} removed from it",
        f"{report.waiting} waiting",
        f"{report.refused} refused",
    ]
    return ", ".join(parts)
