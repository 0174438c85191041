"""SendEmail's domain flow: idempotency, the guard, the composer, the transport, the record of the send."""

import datetime
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

import peewee

from gateway.errors import GatewayError, RequestIdReused, RequestInProgress, SendOutcomeUnknown, SesUnavailable
from gateway.ops.logs import contact_ref, masked
from gateway.sending import guard
from gateway.sending.compose import compose, unsubscribe_url
from gateway.sending.outgoing import OutgoingEmail
from gateway.store.contacts import CONTACT_TAG
from gateway.store.models import Contact, SentMessage, database, insert_row, utcnow

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
MAX_WAIT_SECONDS = 30.0
# A claim still "sending" after this long belongs to a call that died: no send takes longer (3 attempts,
# 5 s connect and 15 s read timeouts, backoff).
STALE_CLAIM = datetime.timedelta(minutes=2)
SENDING, SENT, UNKNOWN = "sending", "sent", "unknown"


class Transport(Protocol):
    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str], deadline: float | None) -> str:
        """Hand one raw message to the mail system before `deadline` (time.monotonic()); returns its message id."""


@dataclass(frozen=True)
class Sent:
    message_id: str
    contact_id: str


class Mailer:
    """Sends OutgoingEmails through a transport, never to a suppressed recipient, at most once per request_id."""

    def __init__(self, transport: Transport, public_base_url: str):
        self._transport = transport
        self._public_base_url = public_base_url

    def send(
        self, email: OutgoingEmail, *, request_id: str = "", caller: str = "", deadline: float | None = None
    ) -> Sent:
        """Send `email` for `caller` before `deadline` (time.monotonic()).

        With a request_id (scoped to the caller), a repeat returns the first response (AIP-155); a repeat racing
        the first call waits for it, at most MAX_WAIT_SECONDS.
        """
        if not request_id:
            contact = guard.admit(email.recipient_key)
            message_id = self._deliver(email, contact, deadline)
            insert_row(
                SentMessage, contact=contact, ses_message_id=message_id, caller=caller, state=SENT, sent_at=utcnow()
            )
            return Sent(message_id, contact.contact_id)

        fingerprint = email.fingerprint()
        give_up = min(deadline or math.inf, time.monotonic() + MAX_WAIT_SECONDS)
        while True:
            earlier = (
                SentMessage.select(SentMessage, Contact.contact_id)
                .join(Contact)
                .where((SentMessage.caller == caller) & (SentMessage.request_id == request_id))
                .get_or_none()
            )
            if earlier is None:
                contact = guard.admit(email.recipient_key)
                try:
                    with database.atomic():
                        claim = SentMessage.create(
                            contact=contact,
                            caller=caller,
                            request_id=request_id,
                            request_hash=fingerprint,
                            state=SENDING,
                        )
                except peewee.IntegrityError:
                    continue  # a racing call claimed it first: wait for its response
                return self._send_claimed(email, contact, claim, deadline)
            if earlier.request_hash != fingerprint:
                raise RequestIdReused()
            if earlier.state == SENT:
                return Sent(earlier.ses_message_id, earlier.contact.contact_id)
            if earlier.state == UNKNOWN or utcnow() - earlier.created_at > STALE_CLAIM:
                # The first call died (or lost SES's answer) while SES had the message: sending again could
                # mail the recipient twice, so the caller decides.
                raise SendOutcomeUnknown(
                    "an earlier call with this request_id was interrupted while SES had the message, which may have "
                    "been sent; check before sending it again under a new request_id",
                    requestId=request_id,
                )
            if time.monotonic() >= give_up:
                raise RequestInProgress(
                    "another call with this request_id is still sending; retry later to get its response",
                    requestId=request_id,
                )
            time.sleep(POLL_SECONDS)

    def _send_claimed(self, email: OutgoingEmail, contact: Contact, claim: SentMessage, deadline: float | None) -> Sent:
        try:
            message_id = self._deliver(email, contact, deadline)
        except SesUnavailable as exc:
            if exc.maybe_sent:
                SentMessage.update(state=UNKNOWN).where(SentMessage.id == claim.id).execute()
            else:
                claim.delete_instance()
            raise
        except Exception:
            claim.delete_instance()  # nothing was sent: free the request_id so the caller may retry
            raise
        SentMessage.update(ses_message_id=message_id, state=SENT, sent_at=utcnow()).where(
            SentMessage.id == claim.id
        ).execute()
        return Sent(message_id, contact.contact_id)

    def _deliver(self, email: OutgoingEmail, contact: Contact, deadline: float | None) -> str:
        raw = compose(email, unsubscribe_url(self._public_base_url, contact.contact_id))
        tags = dict(email.tags) | {CONTACT_TAG: contact.contact_id}
        recipient, ref = masked(email.to.addr_spec), contact_ref(contact.contact_id)
        try:
            message_id = self._transport.send(
                raw, sender=email.sender.addr_spec, recipient=email.to.addr_spec, tags=tags, deadline=deadline
            )
        except GatewayError as exc:
            log.warning("send to %s (contact %s) failed: %s %s", recipient, ref, exc.reason, exc.metadata)
            raise
        log.info("sent %s to %s (contact %s, %d bytes)", message_id, recipient, ref, len(raw))
        return message_id
