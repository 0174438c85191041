"""Contacts and their statuses: the one place that decides severity, history and idempotency."""

import datetime
import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from gateway.core import contact_metrics
from gateway.core.errors import UndoRefused
from gateway.core.ids import new_contact_id
from gateway.core.logs import contact_ref, masked
from gateway.core.states import EventType, StatusSource
from gateway.store import event_log, ses_list
from gateway.store.database import (
    database,
    database_now,
    insert_row,
    is_postgres,
    joined_transaction,
    prepared,
    utcnow,
)
from gateway.store.models import Contact, ContactStatus, StatusChange

log = logging.getLogger(__name__)


# The EmailTag every message carries, so each SES event about it names the contact it was sent to.
CONTACT_TAG = "contact_id"

# The recipient's undo (StatusSource.RECIPIENT: the unsubscribe page's "resubscribe" button) is the one move down the
# severity order that is not an operator's: unsubscribed -> active, and only for the browser that made that unsubscribe
# on our page, within the undo window: the page that changed the status was shown a secret, whose digest the change's
# history row keeps (see change_status). The contact id in the link lifts nothing: every caller of the API learns it.


@prepared
def _contact_by_email(email):
    return Contact.select().where(Contact.email == email)


@prepared
def _update_status(pk, status, reason, now):
    return Contact.update(status=status, reason=reason, updated_at=now).where(Contact.id == pk)


def find_contact(*, email: str | None = None, contact_id: str | None = None) -> Contact | None:
    """A contact by normalised address or by contact id; None when there is none."""
    if email is not None:
        return next(iter(_contact_by_email.models(Contact, email=email)), None)
    return Contact.get_or_none(Contact.contact_id == contact_id)


class Recipient(NamedTuple):
    """What the guard reads of a contact, as one row tuple: building a Contact model costs ~100 us more per call,
    on the path every SendEmail and every dispatched message takes."""

    pk: int
    contact_id: str
    status: ContactStatus


RECIPIENT_COLUMNS = (Contact.id, Contact.contact_id, Contact.status)


@prepared
def _recipient_by_email(email):
    return Contact.select(*RECIPIENT_COLUMNS).where(Contact.email == email)


@prepared
def _recipient_by_pk(pk):
    return Contact.select(*RECIPIENT_COLUMNS).where(Contact.id == pk)


@prepared
def _locked_recipient_by_email(email):
    # Row lock on PostgreSQL (SQLite holds the database write lock from BEGIN IMMEDIATE),
    # so two processes applying events to one contact cannot lose either update.
    query = Contact.select(*RECIPIENT_COLUMNS).where(Contact.email == email)
    return query.for_update() if is_postgres() else query


@prepared
def _email_by_contact_id(contact_id):
    return Contact.select(Contact.email).where(Contact.contact_id == contact_id)


def recipient(*, email: str | None = None, pk: int | None = None) -> Recipient | None:
    """The guard's view of a contact, by normalised address or by row, as the database holds it now."""
    row = (_recipient_by_email(email=email) if email is not None else _recipient_by_pk(pk=pk)).fetchone()
    return Recipient(row[0], row[1], ContactStatus(row[2])) if row else None


def ensure_recipient(email: str) -> Recipient:
    """The guard's view of the contact for a normalised address, created active on first sight; safe against
    racing creators."""
    found = recipient(email=email)
    if found is None:
        insert_row(Contact, ignore_conflict=True, email=email, contact_id=new_contact_id())
        found = recipient(email=email)
    return found


def get_or_create_contact(email: str) -> Contact:
    """The contact for a normalised address, created active on first sight; safe against racing creators."""
    contact = find_contact(email=email)
    if contact is None:
        insert_row(Contact, ignore_conflict=True, email=email, contact_id=new_contact_id())
        contact = find_contact(email=email)
    return contact


@dataclass(frozen=True)
class StatusUpdate:
    """What change_status did: the contact as it is now, and whether its status moved."""

    contact: Recipient
    changed: bool
    undo_secret: str | None = None  # minted for the page that made this unsubscribe (undo_window); shown nowhere else


def change_status(
    to: ContactStatus,
    *,
    source: StatusSource,
    reason: str = "",
    email: str | None = None,
    contact_id: str | None = None,
    actor: str = "",
    lower: bool = False,
    undo_window: datetime.timedelta | None = None,
    undo_secret: str = "",
) -> StatusUpdate | None:
    """Move one contact to `to`, writing a history row in the same transaction.

    The contact is named by normalised `email` (created when unknown, so that the guard
    blocks an address we never mailed) or by `contact_id` (None is returned when unknown).
    Events only move a contact up the severity order complained > bounced > unsubscribed >
    active. Moving it down is never an event's doing: it is asked for with `lower` by a named
    `actor` (an operator reactivating it, or the suppression sync undoing what only SES's list
    had set) with a reason, both kept in the history row.

    A suppression that finds the contact as high or higher already changes nothing but is kept
    as evidence (a history row from a status to itself, `evidence` the status reported), unless
    the latest row says the same already: a complaint about a contact SES's list suppressed
    keeps it complained when the list drops it, and an operator's hold on an unsubscribed
    contact outlives the recipient's undo.

    The one lowering without an actor, source StatusSource.RECIPIENT: unsubscribed -> active with the
    `undo_secret` that the unsubscribe's own request was given (`undo_window` asks for one to be
    minted: the page flow), while it lasts and while that unsubscribe is the contact's latest
    history; otherwise UndoRefused says why. What the change asks of SES's suppression list is
    recorded in the same transaction (store/ses_list.py).
    """
    with joined_transaction():
        if email is None:  # an unsubscribe link: the id must exist
            row = _email_by_contact_id(contact_id=contact_id).fetchone()
            if row is None:
                return None
            email = row[0]
        else:
            insert_row(Contact, ignore_conflict=True, email=email, contact_id=new_contact_id())
        pk, contact_id, current = _locked_recipient_by_email(email=email).fetchone()
        current = ContactStatus(current)
        unchanged = StatusUpdate(Recipient(pk, contact_id, current), changed=False)
        undone = None
        if source == StatusSource.RECIPIENT:  # the recipient's undo, and nothing wider (see above)
            if to == current:
                return unchanged  # pressed twice: done already
            undone = _undoable(pk, current, to, undo_secret)
        elif to == current or (to.severity < current.severity and not lower):
            if to.suppressed:
                _keep_evidence(pk, current, to, source=source, reason=reason, actor=actor)
            return unchanged
        elif to.severity < current.severity and not (actor and reason.strip()):
            raise ValueError("lowering a contact's status needs an actor and a reason")
        now, reason = utcnow(), Contact.reason.db_value(reason)  # storable: no NUL, bounded
        _update_status(pk=pk, status=to.value, reason=reason, now=now)
        secret, digest, until = None, None, None
        if undo_window is not None and to is ContactStatus.UNSUBSCRIBED:
            secret = secrets.token_urlsafe(UNDO_SECRET_BYTES)
            digest, until = undo_digest(secret), database_now() + undo_window
        insert_row(
            StatusChange,
            contact=pk,
            from_status=current,
            to_status=to,
            source=source,
            reason=reason,
            created_at=now,
            actor=actor,
            evidence=to,
            undo_digest=digest,
            undo_until=until,
        )
        if undone is not None:  # one use: a replayed form finds nothing to undo
            StatusChange.update(undo_digest=None).where(StatusChange.id == undone).execute()
        ses_list.note_status_change(pk, current, to, source)
        event_log.note_contact(pk, contact_id, EventType.of_contact_status(to), reason)
        # Counted when the change is committed: this may be a caller's transaction (a group of notifications) that
        # rolls back and runs again, and peewee forgets a rolled-back transaction's callbacks. (A savepoint rolled
        # back around this call would not forget it: no caller makes one.)
        database.after_commit(functools.partial(contact_metrics.status_changed, current, to, source))
        if log.isEnabledFor(logging.INFO):
            ref, by = contact_ref(contact_id), f"{source} ({actor})" if actor else source
            log.info("contact %s (%s): %s -> %s by %s", ref, masked(email), current, to, by, extra={"contact": ref})
        return StatusUpdate(Recipient(pk, contact_id, to), changed=True, undo_secret=secret)


UNDO_SECRET_BYTES = 32


def undo_digest(secret: str) -> str:
    """What the database keeps of an undo secret: its SHA-256, so a copy of the database lifts no unsubscribe."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _undoable(pk: int, current: ContactStatus, to: ContactStatus, secret: str) -> int:
    """The history row that `secret` undoes: the contact's latest, an unsubscribe minted with that secret and still
    within its window. UndoRefused otherwise, naming why."""
    if to is not ContactStatus.ACTIVE or current is not ContactStatus.UNSUBSCRIBED:
        raise UndoRefused(UndoRefused.NOT_UNSUBSCRIBED)
    digest = undo_digest(secret) if secret else ""
    latest = (
        StatusChange.select(StatusChange.id, StatusChange.undo_digest, StatusChange.undo_until)
        .where(StatusChange.contact == pk)
        .order_by(StatusChange.id.desc())
        .first()
    )
    if latest is not None and latest.undo_digest and hmac.compare_digest(latest.undo_digest, digest or "-"):
        if latest.undo_until is None or latest.undo_until <= database_now():
            raise UndoRefused(UndoRefused.EXPIRED)
        return latest.id
    # Not the latest row's: an older one of this contact (something changed since), or none (never offered, used).
    minted = digest and (
        StatusChange.select(StatusChange.id)
        .where((StatusChange.contact == pk) & (StatusChange.undo_digest == digest))
        .exists()
    )
    raise UndoRefused(UndoRefused.SUPERSEDED if minted else UndoRefused.NOT_OFFERED)


def _keep_evidence(pk: int, current: ContactStatus, reported: ContactStatus, *, source, reason, actor) -> None:
    """A suppression the contact's status already covers, kept as a history row of its own (see change_status),
    unless the same source (and actor) reported the same status since the contact was last lowered: a replayed
    import or a second click adds nothing a reconcile would not know."""
    rows = (
        StatusChange.select(
            StatusChange.from_status, StatusChange.to_status, StatusChange.evidence, StatusChange.source,
            StatusChange.actor,
        )
        .where(StatusChange.contact == pk)
        .order_by(StatusChange.id.desc())
        .tuples()
    )  # fmt: skip
    for before, after, evidence, source_then, actor_then in rows:
        if (source_then, ContactStatus(evidence or after), actor_then) == (source, reported, actor):
            return
        if ContactStatus(after).severity < ContactStatus(before).severity:
            break  # reports before a lowering were answered by it
    insert_row(
        StatusChange,
        contact=pk,
        from_status=current,
        to_status=current,
        source=source,
        reason=reason,
        actor=actor,
        evidence=reported,
    )


def count_soft_bounce(email: str) -> int:
    """One more soft bounce in a row for the contact of a normalised address (created when unknown); the count."""
    contact = get_or_create_contact(email)
    Contact.update(soft_bounces=Contact.soft_bounces + 1).where(Contact.id == contact.id).execute()
    return Contact.get_by_id(contact.id).soft_bounces


def reset_soft_bounces(email: str) -> None:
    """A delivery ends a run of soft bounces: only consecutive ones count toward the limit."""
    Contact.update(soft_bounces=0).where((Contact.email == email) & (Contact.soft_bounces != 0)).execute()
