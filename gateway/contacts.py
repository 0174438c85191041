"""Contacts and their statuses: the one place that decides severity, history and idempotency."""

import functools
import logging
import re
import secrets
from dataclasses import dataclass
from email.headerregistry import Address

from email_validator import EmailNotValidError, validate_email

from gateway.logs import masked
from gateway.models import Contact, ContactStatus, StatusChange, database, insert_row, prepared, utcnow

log = logging.getLogger(__name__)


class InvalidAddress(ValueError):
    """The text is not a mailable address."""


# Header fields must stay on one line: a CR or LF in them is how header injection starts.
HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# "Display Name <addr@example.com>": the name is free text (quoted and encoded when composed).
NAMED_ADDRESS = re.compile(r"(?P<name>.*?)\s*<(?P<addr>[^<>]*)>")
MAX_DISPLAY_NAME = 200  # with the address, a header line stays far below SMTP's 998 octets


@functools.lru_cache(maxsize=4096)
def parse_address(value: str) -> Address | str:
    """The Address in "Name <addr>" or "addr", or why it is not one. Cached: senders and busy recipients repeat."""
    if HEADER_UNSAFE.search(value):
        return "must not contain line breaks or control characters"
    name, addr = "", value
    if named := NAMED_ADDRESS.fullmatch(value):
        name, addr = named["name"].strip(), named["addr"].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].strip()
        if len(name) > MAX_DISPLAY_NAME:
            return f"the display name is longer than {MAX_DISPLAY_NAME} characters"
    try:
        valid = validate_email(addr, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return str(exc)
    # The ASCII form (IDNA domain) is what SES accepts on the envelope and in headers.
    return Address(display_name=name, addr_spec=valid.ascii_email)


def email_key(address: str) -> str:
    """The normalised form contacts are stored under: trimmed, ASCII (IDNA) domain, lower case."""
    parsed = parse_address(address.strip())
    if isinstance(parsed, str):
        raise InvalidAddress(parsed)
    return address_key(parsed)


def address_key(address: Address) -> str:
    """The contact key of an address parse_address accepted (already trimmed and ASCII)."""
    return address.addr_spec.lower()


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


def find_contact(*, email: str | None = None, contact_id: str | None = None) -> Contact | None:
    if email is not None:  # the guard's lookup, once per SendEmail
        return next(iter(Contact.raw(_contact_by_email(), email)), None)
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
        now = utcnow()
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
        log.info("contact %s (%s): %s -> %s by %s", contact.contact_id, masked(contact.email), current, to, source)
        return StatusUpdate(contact, changed=True)
