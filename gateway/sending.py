"""SendEmail's domain flow: idempotency, the guard, the composer, the transport, the record of the send."""

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import peewee

from gateway import guard
from gateway.compose import compose, unsubscribe_url
from gateway.errors import RequestIdReused, RequestInProgress
from gateway.logs import masked
from gateway.models import Contact, SentMessage, database, utcnow
from gateway.outgoing import CONTACT_TAG, OutgoingEmail

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05


class Transport(Protocol):
    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
        """Hand one raw message to the mail system; returns its message id."""


@dataclass(frozen=True)
class Sent:
    message_id: str
    contact_id: str


class Mailer:
    """Sends OutgoingEmails through a transport, never to a suppressed recipient, at most once per request_id."""

    def __init__(self, transport: Transport, public_base_url: str):
        self._transport = transport
        self._public_base_url = public_base_url

    def send(self, email: OutgoingEmail, request_id: str = "", wait: float = 30.0) -> Sent:
        """Send `email`; with a request_id, a repeat returns the first response (AIP-155), waiting up to `wait` seconds
        for a racing first call to finish."""
        if not request_id:
            contact = guard.admit(email.recipient_key)
            message_id = self._deliver(email, contact)
            SentMessage.create(contact=contact, ses_message_id=message_id, sent_at=utcnow())
            return Sent(message_id, contact.contact_id)

        fingerprint = email.fingerprint()
        give_up = time.monotonic() + wait
        while True:
            earlier = (
                SentMessage.select(SentMessage, Contact.contact_id)
                .join(Contact)
                .where(SentMessage.request_id == request_id)
                .get_or_none()
            )
            if earlier is None:
                contact = guard.admit(email.recipient_key)
                try:
                    with database.atomic():
                        claim = SentMessage.create(contact=contact, request_id=request_id, request_hash=fingerprint)
                except peewee.IntegrityError:
                    continue  # a racing call claimed it first: wait for its response
                return self._send_claimed(email, contact, claim)
            if earlier.request_hash != fingerprint:
                raise RequestIdReused()
            if earlier.ses_message_id:
                return Sent(earlier.ses_message_id, earlier.contact.contact_id)
            if time.monotonic() >= give_up:
                raise RequestInProgress(
                    "another call with this request_id is still sending; retry later to get its response",
                    requestId=request_id,
                )
            time.sleep(POLL_SECONDS)

    def _send_claimed(self, email: OutgoingEmail, contact: Contact, claim: SentMessage) -> Sent:
        try:
            message_id = self._deliver(email, contact)
        except Exception:
            claim.delete_instance()  # nothing was sent: free the request_id so the caller may retry
            raise
        SentMessage.update(ses_message_id=message_id, sent_at=utcnow()).where(SentMessage.id == claim.id).execute()
        return Sent(message_id, contact.contact_id)

    def _deliver(self, email: OutgoingEmail, contact: Contact) -> str:
        raw = compose(email, unsubscribe_url(self._public_base_url, contact.contact_id))
        tags = dict(email.tags) | {CONTACT_TAG: contact.contact_id}
        message_id = self._transport.send(raw, sender=email.sender.addr_spec, recipient=email.to.addr_spec, tags=tags)
        log.info(
            "sent %s to %s (contact %s, %d bytes)", message_id, masked(email.to.addr_spec), contact.contact_id, len(raw)
        )
        return message_id
