"""Contacts and their statuses: the one place that decides severity, history and idempotency."""

import logging
import re
import secrets
from dataclasses import dataclass

from gateway.ops.logs import contact_ref, masked
from gateway.store.database import database, insert_row, prepared, utcnow
from gateway.store.models import Contact, ContactStatus, StatusChange

log = logging.getLogger(__name__)


# contact ids are secrets.token_urlsafe(16): 22 URL-safe characters. Anything else is refused before a query.
CONTACT_ID = re.compile(r"[A-Za-z0-9_-]{22}")


# The EmailTag every message carries, so each SES event about it names the contact it was sent to.
CONTACT_TAG = "contact_id"


def is_contact_id(text: str) -> bool:
    return len(text) == 22 and CONTACT_ID.fullmatch(text) is not None


def new_contact_id() -> str:
    """128 random bits, URL-safe: the id in unsubscribe links must not be guessable."""
    return secrets.token_urlsafe(16)


@prepared
def _contact_by_email():
    return Contact.select().where(Contact.email == "")


@prepared
def _locked_contact_by_email():
    # Row lock on PostgreSQL (SQLite holds the database write lock from BEGIN IMMEDIATE),
    # so two processes applying events to one contact cannot lose either update.
    query = Contact.select().where(Contact.email == "")
    return query.for_update() if database.for_update else query


@prepared
def _update_status():
    return Contact.update(status=ContactStatus.ACTIVE, reason="", updated_at=None).where(Contact.id == 0)


@prepared
def _contact_by_pk():
    return Contact.select().where(Contact.id == 0)


def find_contact(*, email: str | None = None, contact_id: str | None = None, pk: int | None = None) -> Contact | None:
    """A contact by normalised address (the guard's lookup at acceptance), by row (its lookup at dispatch) or by
    contact id; None when there is none."""
    if email is not None:
        return next(iter(Contact.raw(_contact_by_email(), email)), None)
    if pk is not None:
        return next(iter(Contact.raw(_contact_by_pk(), pk)), None)
    return Contact.get_or_none(Contact.contact_id == contact_id)


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

    contact: Contact
    changed: bool


def change_status(
    to: ContactStatus,
    *,
    source: str,
    reason: str = "",
    email: str | None = None,
    contact_id: str | None = None,
    allow_downgrade: bool = False,
) -> StatusUpdate | None:
    """Move one contact to `to`, writing a history row in the same transaction.

    The contact is named by normalised `email` (created when unknown, so that the guard
    blocks an address we never mailed) or by `contact_id` (None is returned when unknown).
    Events only move a contact up the severity order complained > bounced > unsubscribed >
    active; only an operator's explicit `allow_downgrade` moves it down. Repeating a change
    is a no-op, so redelivered events are harmless.
    """
    with database.atomic():
        if email is None:  # an unsubscribe link: the id must exist
            contact = find_contact(contact_id=contact_id)
            if contact is None:
                return None
            email = contact.email
        else:
            insert_row(Contact, ignore_conflict=True, email=email, contact_id=new_contact_id())
        contact = next(iter(Contact.raw(_locked_contact_by_email(), email)))
        current = contact.status
        if to == current or (to.severity < current.severity and not allow_downgrade):
            return StatusUpdate(contact, changed=False)
        now, reason = utcnow(), Contact.reason.db_value(reason)  # storable: no NUL, bounded
        database.execute_sql(_update_status(), (to.value, reason, now, contact.id))
        insert_row(
            StatusChange,
            contact=contact,
            from_status=current,
            to_status=to,
            source=source,
            reason=reason,
            created_at=now,
        )
        contact.status, contact.reason, contact.updated_at = to, reason, now
        ref = contact_ref(contact.contact_id)
        log.info("contact %s (%s): %s -> %s by %s", ref, masked(contact.email), current, to, source)
        return StatusUpdate(contact, changed=True)


def count_soft_bounce(email: str) -> int:
    """One more soft bounce in a row for the contact of a normalised address (created when unknown); the count."""
    contact = get_or_create_contact(email)
    Contact.update(soft_bounces=Contact.soft_bounces + 1).where(Contact.id == contact.id).execute()
    return Contact.get_by_id(contact.id).soft_bounces


def reset_soft_bounces(email: str) -> None:
    """A delivery ends a run of soft bounces: only consecutive ones count toward the limit."""
    Contact.update(soft_bounces=0).where((Contact.email == email) & (Contact.soft_bounces != 0)).execute()
