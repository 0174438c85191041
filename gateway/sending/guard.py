"""The Email Guard: may this recipient be mailed? Asked when SendEmail accepts a message, and again right before the
SES call, always of the status the database holds at that moment (no cache: a suppression must stop the next send)."""

import logging

from gateway.core import metrics
from gateway.core.errors import RecipientSuppressed
from gateway.core.logs import contact_ref, masked
from gateway.store.contacts import Recipient, ensure_recipient, recipient

log = logging.getLogger(__name__)


def admit(recipient_key: str, *, caller: str = "") -> Recipient:
    """The recipient's contact (created active on first sight) when it may be mailed; RecipientSuppressed otherwise.
    `caller` is for the log line."""
    contact = ensure_recipient(recipient_key)
    if contact.status.suppressed:
        metrics.guard_refused(contact.status, "accept")
        if log.isEnabledFor(logging.INFO):
            ref = contact_ref(contact.contact_id)
            log.info(
                "refused a send to %s: %s (contact %s)",
                masked(recipient_key),
                contact.status,
                ref,
                extra={"contact": ref, "caller": caller},
            )
        raise RecipientSuppressed(
            f"the recipient is {contact.status.value}: nothing was sent",
            status=contact.status.value,
            contactId=contact.contact_id,
        )
    return contact


def recheck(contact_pk: int) -> Recipient | None:
    """The contact of a queued message as it is now, right before its send; the caller refuses a suppressed one."""
    return recipient(pk=contact_pk)
