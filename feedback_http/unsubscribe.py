"""What the unsubscribe link does to its contact: look it up, unsubscribe it, undo that; each through the one status
function, each answering what the page shows (run off the event loop, see app.in_database)."""

import datetime
from dataclasses import dataclass

from gateway.core.errors import UndoRefused
from gateway.core.logs import masked
from gateway.core.states import StatusSource
from gateway.store.contacts import change_status, find_contact
from gateway.store.models import ContactStatus

RESUBSCRIBE_REASON = "undid their unsubscribe on the unsubscribe page"


@dataclass(frozen=True)
class LinkContact:
    """What a page shows of the contact its link names: the address masked (a***@example.org, enough to recognise
    which of one's addresses it is, too little to learn one from a forwarded link) and its status."""

    address: str
    status: ContactStatus


@dataclass(frozen=True)
class Unsubscribed:
    """The contact after an unsubscribe, and the undo secret when this request made it on the page (shown only in
    the answer to that request: it is what lets that browser undo it)."""

    contact: LinkContact
    undo_secret: str | None = None


@dataclass(frozen=True)
class Resubscribed:
    """The contact after an undo, and why the undo was refused (an UndoRefused reason; "" when it was done)."""

    contact: LinkContact
    refused: str = ""


def look_up(contact_id: str) -> LinkContact | None:
    """The contact an unsubscribe link names, as its page shows it; None for an unknown id."""
    contact = find_contact(contact_id=contact_id)
    return None if contact is None else LinkContact(masked(contact.email), contact.status)


def unsubscribe(
    contact_id: str, *, source: StatusSource, undo_window: datetime.timedelta | None
) -> Unsubscribed | None:
    """Unsubscribe the link's contact (a higher status stays, see change_status); with `undo_window` (the page flow),
    a change this request made gets an undo secret for that long. None for an unknown id."""
    update = change_status(
        ContactStatus.UNSUBSCRIBED, source=source, reason=source, contact_id=contact_id, undo_window=undo_window
    )
    if update is None:
        return None
    return Unsubscribed(look_up(contact_id), update.undo_secret)


def resubscribe(contact_id: str, undo_secret: str) -> Resubscribed | None:
    """The recipient's undo with the secret their unsubscribe's page was given: active again, or unchanged with the
    reason it was refused; None for an unknown id."""
    try:
        update = change_status(
            ContactStatus.ACTIVE, source=StatusSource.RECIPIENT, reason=RESUBSCRIBE_REASON, contact_id=contact_id,
            undo_secret=undo_secret,
        )  # fmt: skip
    except UndoRefused as exc:  # raised before anything was written
        return Resubscribed(look_up(contact_id), exc.reason)
    if update is None:
        return None
    return Resubscribed(look_up(contact_id))
