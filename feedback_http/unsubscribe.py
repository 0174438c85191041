"""What the unsubscribe link does to its contact: look it up, unsubscribe it, undo that; each through the one status
function, each answering what the page shows (run off the event loop, see app.in_database)."""

from dataclasses import dataclass

from gateway.ops.logs import masked
from gateway.store.contacts import RECIPIENT, change_status, find_contact, unsubscribed_by_recipient
from gateway.store.models import ContactStatus

RESUBSCRIBE_REASON = "resubscribed on the unsubscribe page"


@dataclass(frozen=True)
class LinkContact:
    """What a page shows of the contact its link names: the address masked (a***@example.org, enough to recognise
    which of one's addresses it is, too little to learn one from a forwarded link), its status, and whether the link
    holder may undo the unsubscribe."""

    address: str
    status: ContactStatus
    can_resubscribe: bool


def look_up(contact_id: str) -> LinkContact | None:
    """The contact an unsubscribe link names, as its page shows it; None for an unknown id."""
    contact = find_contact(contact_id=contact_id)
    if contact is None:
        return None
    undoable = contact.status is ContactStatus.UNSUBSCRIBED and unsubscribed_by_recipient(contact.id)
    return LinkContact(masked(contact.email), contact.status, can_resubscribe=undoable)


def unsubscribe(contact_id: str, *, source: str) -> LinkContact | None:
    """Unsubscribe the link's contact (a higher status stays, see change_status); None for an unknown id."""
    if change_status(ContactStatus.UNSUBSCRIBED, source=source, reason=source, contact_id=contact_id) is None:
        return None
    return look_up(contact_id)


def resubscribe(contact_id: str) -> LinkContact | None:
    """The link holder's undo: active again when the recipient had unsubscribed through our link, else unchanged
    (the page then says so); None for an unknown id."""
    if change_status(ContactStatus.ACTIVE, source=RECIPIENT, reason=RESUBSCRIBE_REASON, contact_id=contact_id) is None:
        return None
    return look_up(contact_id)
