"""SendEmail's domain flow: idempotency, the guard, then the message durably queued; SES is not waited for."""

import logging
from dataclasses import dataclass

import peewee

from gateway.core.errors import RequestIdReused
from gateway.core.logs import contact_ref, masked
from gateway.sending import guard
from gateway.sending.admission import OPEN, Admission
from gateway.sending.outgoing import OutgoingEmail
from gateway.store import queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    message_id: str
    contact_id: str


def accept(
    email: OutgoingEmail,
    *,
    request_id: str = "",
    caller: str = "",
    admission: Admission = OPEN,
) -> Accepted:
    """Queue `email` for `caller`, or refuse it before anything is queued: RecipientSuppressed, or a limit of the
    caller's policy or of the gateway (admission.py).

    With a request_id (scoped to the caller), a repeat returns the first answer and queues nothing (AIP-155), also
    when the repeats race: the message and its request id are one row, so only one insert wins. A repeat is
    answered before any limit is asked: the message was queued when it was first accepted.
    """
    fingerprint = email.fingerprint() if request_id else None
    if request_id and (earlier := queue.by_request(caller, request_id)):
        return _repeat(earlier, fingerprint)
    contact = guard.admit(email.recipient_key, caller=caller)
    admission.admit(caller, email.priority)
    try:
        message_id = queue.enqueue(
            contact_pk=contact.pk,
            caller=caller,
            request_id=request_id or None,
            request_hash=fingerprint,
            payload=email.to_payload(),
            priority=int(email.priority),
            tenant=email.tenant,
            send_at=email.send_at,
            attachments=email.attachments,
        )
    except peewee.IntegrityError:
        earlier = queue.by_request(caller, request_id) if request_id else None
        if earlier is None:
            raise
        return _repeat(earlier, fingerprint)  # a racing call with the same request_id queued it first
    if log.isEnabledFor(logging.INFO):
        ref = contact_ref(contact.contact_id)
        work = {"message_id": message_id, "contact": ref, "caller": caller}
        log.info("accepted %s for %s (contact %s)", message_id, masked(email.to.addr_spec), ref, extra=work)
    return Accepted(message_id, contact.contact_id)


def _repeat(earlier: queue.Earlier, fingerprint: str | None) -> Accepted:
    if earlier.request_hash != fingerprint:
        raise RequestIdReused()
    return Accepted(earlier.message_id, earlier.contact_id)
