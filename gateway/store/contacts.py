"""Contacts and their statuses: the one place that decides severity, history and idempotency."""

import functools
import logging
from dataclasses import dataclass
from typing import NamedTuple

from gateway.ids import new_contact_id
from gateway.ops import contact_metrics
from gateway.ops.logs import contact_ref, masked
from gateway.store import ses_list
from gateway.store.database import database, insert_row, joined_transaction, prepared, utcnow
from gateway.store.models import Contact, ContactStatus, StatusChange

log = logging.getLogger(__name__)


# The EmailTag every message carries, so each SES event about it names the contact it was sent to.
CONTACT_TAG = "contact_id"

# The link holder's undo (the unsubscribe page's "resubscribe" button) is the one move down the severity order that
# is not an operator's: unsubscribed -> active, and only when the unsubscribe was the recipient's own through our
# link. A bounce, a complaint, an unsubscribe SES reported or an operator's suppression is never undone by whoever
# holds a link.
RECIPIENT = "recipient"
RECIPIENT_UNSUBSCRIBES = frozenset({"unsubscribe-page", "one-click", "unsubscribe-link"})


@prepared
def _contact_by_email():
    return Contact.select().where(Contact.email == "")


@prepared
def _update_status():
    return Contact.update(status=ContactStatus.ACTIVE, reason="", updated_at=None).where(Contact.id == 0)


def find_contact(*, email: str | None = None, contact_id: str | None = None) -> Contact | None:
    """A contact by normalised address or by contact id; None when there is none."""
    if email is not None:
        return next(iter(Contact.raw(_contact_by_email(), email)), None)
    return Contact.get_or_none(Contact.contact_id == contact_id)


class Recipient(NamedTuple):
    """What the guard reads of a contact, as one row tuple: building a Contact model costs ~100 us more per call,
    on the path every SendEmail and every dispatched message takes."""

    pk: int
    contact_id: str
    status: ContactStatus


RECIPIENT_COLUMNS = (Contact.id, Contact.contact_id, Contact.status)


@prepared
def _recipient_by_email():
    return Contact.select(*RECIPIENT_COLUMNS).where(Contact.email == "")


@prepared
def _recipient_by_pk():
    return Contact.select(*RECIPIENT_COLUMNS).where(Contact.id == 0)


@prepared
def _locked_recipient_by_email():
    # Row lock on PostgreSQL (SQLite holds the database write lock from BEGIN IMMEDIATE),
    # so two processes applying events to one contact cannot lose either update.
    query = Contact.select(*RECIPIENT_COLUMNS).where(Contact.email == "")
    return query.for_update() if database.for_update else query


@prepared
def _email_by_contact_id():
    return Contact.select(Contact.email).where(Contact.contact_id == "")


def recipient(*, email: str | None = None, pk: int | None = None) -> Recipient | None:
    """The guard's view of a contact, by normalised address or by row, as the database holds it now."""
    sql, key = (_recipient_by_email(), email) if email is not None else (_recipient_by_pk(), pk)
    row = database.execute_sql(sql, (key,)).fetchone()
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


def change_status(
    to: ContactStatus,
    *,
    source: str,
    reason: str = "",
    email: str | None = None,
    contact_id: str | None = None,
    actor: str = "",
) -> StatusUpdate | None:
    """Move one contact to `to`, writing a history row in the same transaction.

    The contact is named by normalised `email` (created when unknown, so that the guard
    blocks an address we never mailed) or by `contact_id` (None is returned when unknown).
    Events only move a contact up the severity order complained > bounced > unsubscribed >
    active. Moving it down is never an event's doing: it takes a named `actor` (an operator
    reactivating it, or the suppression sync undoing what only SES's list had set) and a
    reason, both kept in the history row. Repeating a change is a no-op, so redelivered
    events are harmless. The one lowering without an actor: source RECIPIENT, the recipient's
    own undo of their own unsubscribe (see RECIPIENT), may move unsubscribed to active. What the
    change asks of SES's suppression list is recorded in the same transaction (store/ses_list.py).
    """
    with joined_transaction():
        if email is None:  # an unsubscribe link: the id must exist
            row = database.execute_sql(_email_by_contact_id(), (contact_id,)).fetchone()
            if row is None:
                return None
            email = row[0]
        else:
            insert_row(Contact, ignore_conflict=True, email=email, contact_id=new_contact_id())
        pk, contact_id, current = database.execute_sql(_locked_recipient_by_email(), (email,)).fetchone()
        current = ContactStatus(current)
        may_lower = bool(actor)
        if source == RECIPIENT:  # the recipient's undo, and nothing wider (see RECIPIENT)
            may_lower = (
                to is ContactStatus.ACTIVE and current is ContactStatus.UNSUBSCRIBED and unsubscribed_by_recipient(pk)
            )
        if to == current or (to.severity < current.severity and not may_lower):
            return StatusUpdate(Recipient(pk, contact_id, current), changed=False)
        if to.severity < current.severity and not reason.strip():
            raise ValueError("lowering a contact's status needs a reason")
        now, reason = utcnow(), Contact.reason.db_value(reason)  # storable: no NUL, bounded
        database.execute_sql(_update_status(), (to.value, reason, now, pk))
        insert_row(
            StatusChange,
            contact=pk,
            from_status=current,
            to_status=to,
            source=source,
            reason=reason,
            created_at=now,
            actor=actor,
        )
        ses_list.note_status_change(pk, current, to, source)
        # Counted when the change is committed: this may be a caller's transaction (a group of notifications) that
        # rolls back and runs again, and peewee forgets a rolled-back transaction's callbacks. (A savepoint rolled
        # back around this call would not forget it: no caller makes one.)
        database.after_commit(functools.partial(contact_metrics.status_changed, current, to, source))
        if log.isEnabledFor(logging.INFO):
            ref, by = contact_ref(contact_id), f"{source} ({actor})" if actor else source
            log.info("contact %s (%s): %s -> %s by %s", ref, masked(email), current, to, by, extra={"contact": ref})
        return StatusUpdate(Recipient(pk, contact_id, to), changed=True)


def unsubscribed_by_recipient(pk: int) -> bool:
    """Whether the contact's latest status change is its recipient's own unsubscribe through our link."""
    latest = (
        StatusChange.select(StatusChange.to_status, StatusChange.source)
        .where(StatusChange.contact == pk)
        .order_by(StatusChange.id.desc())
        .first()
    )
    return (
        latest is not None
        and latest.to_status is ContactStatus.UNSUBSCRIBED
        and latest.source in RECIPIENT_UNSUBSCRIBES
    )


def count_soft_bounce(email: str) -> int:
    """One more soft bounce in a row for the contact of a normalised address (created when unknown); the count."""
    contact = get_or_create_contact(email)
    Contact.update(soft_bounces=Contact.soft_bounces + 1).where(Contact.id == contact.id).execute()
    return Contact.get_by_id(contact.id).soft_bounces


def reset_soft_bounces(email: str) -> None:
    """A delivery ends a run of soft bounces: only consecutive ones count toward the limit."""
    Contact.update(soft_bounces=0).where((Contact.email == email) & (Contact.soft_bounces != 0)).execute()
