"""A SendEmail request checked field by field into an OutgoingEmail, or refused with every violation."""

import datetime
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address

from gateway.core.addresses import HEADER_UNSAFE, Mailbox, address_key, parse_address
from gateway.core.errors import InvalidRequest
from gateway.core.ids import is_name, is_tenant
from gateway.core.states import Priority
from gateway.sending.attachments import Attachment, message_size
from gateway.sending.attachments import check as check_attachments
from gateway.store.contacts import CONTACT_TAG
from gateway.store.queue import MESSAGE_TAG, PRIORITY_TAG, TENANT_TAG

# SES message tags: names and values of ASCII letters, digits, "_" and "-", at most 256 characters; SES takes 50
# tags a message, and the gateway keeps some for its own.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_TAGS = 40
MAX_SUBJECT = 900  # an unbreakable subject still fits SMTP's 998-octet line, with its folding
MAX_SCHEDULE = datetime.timedelta(days=30)  # how far ahead send_at may be


@dataclass(frozen=True)
class OutgoingEmail:
    """A message the gateway may compose: addresses parsed, header fields single-line, at least one body."""

    to: Mailbox
    sender: Mailbox
    reply_to: Mailbox | None
    subject: str
    text_body: str
    html_body: str
    tags: tuple[tuple[str, str], ...]
    # Its lane (sending/order.py); kept in the queue's columns, not in the payload.
    priority: Priority = Priority.TRANSACTIONAL
    tenant: str = ""
    send_at: datetime.datetime | None = None  # naive UTC, ahead of acceptance; None: as soon as it can be
    asked_send_at: float | None = None  # the send_at the caller asked, past or not: its retry is the same request
    # Kept beside the payload (store/queue.py: one row each, deleted when the message is settled), not in it.
    attachments: tuple[Attachment, ...] = ()

    @property
    def recipient_key(self) -> str:
        """The recipient's normalised address, the key of its contact."""
        return address_key(self.to)

    def fingerprint(self) -> str:
        """A digest of everything the caller asked for, to tell a retry from a reused request_id. The lane (priority
        and tenant) counts only when it is not the default, so a request from before lanes hashes as it did."""
        # Formatted as email.headerregistry.Address does, as request hashes were before addresses became Mailboxes.
        fields = [
            _formatted(self.to),
            _formatted(self.sender),
            _formatted(self.reply_to) if self.reply_to else "",
            self.subject,
            self.text_body,
            self.html_body,
            self.tags,
        ]
        if self.priority is not Priority.TRANSACTIONAL or self.tenant:
            fields.append([int(self.priority), self.tenant])
        if self.asked_send_at is not None:
            fields.append(["send_at", repr(self.asked_send_at)])
        if self.attachments:
            fields.append(["attachments", [attachment.digest() for attachment in self.attachments]])
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

    def to_payload(self) -> str:
        """The message as the queue keeps it until it is sent (JSON)."""
        return json.dumps(
            {
                "to": self.to,  # a Mailbox is a (display name, addr-spec) pair: a JSON array
                "from": self.sender,
                "reply_to": self.reply_to,
                "subject": self.subject,
                "text": self.text_body,
                "html": self.html_body,
                "tags": self.tags,
            }
            | ({"attachments": sum(len(a.content) for a in self.attachments)} if self.attachments else {}),
            ensure_ascii=False,
        )

    @staticmethod
    def attached_bytes(payload: str) -> int:
        """The size of the stored message's files (0 without any), read without parsing the rest."""
        return json.loads(payload).get("attachments", 0) if '"attachments":' in payload else 0

    @classmethod
    def from_payload(cls, payload: str, files: Callable[[], list[tuple]] = list) -> "OutgoingEmail":
        """The message to_payload() stored (already checked when it was accepted); `files()` reads its attachments'
        rows, asked only when it has some."""
        fields = json.loads(payload)
        attachments = tuple(Attachment(*row) for row in files()) if fields.get("attachments") else ()
        if fields.get("attachments") and not attachments:  # settled meanwhile (an SES event): never sent without them
            raise FilesGone("the message's files were deleted: an SES event settled it while it waited")
        reply_to = fields["reply_to"]
        return cls(
            to=Mailbox(*fields["to"]),
            sender=Mailbox(*fields["from"]),
            reply_to=Mailbox(*reply_to) if reply_to else None,
            subject=fields["subject"],
            text_body=fields["text"],
            html_body=fields["html"],
            tags=tuple((name, value) for name, value in fields["tags"]),
            attachments=attachments,
        )


class FilesGone(RuntimeError):
    """A queued message's attachments are no longer stored (it was settled meanwhile): it is not sent."""


def _formatted(address: Mailbox) -> str:
    return str(Address(display_name=address.display_name, addr_spec=address.addr_spec))


def outgoing_email(
    *,
    to: str,
    subject: str,
    text_body: str,
    html_body: str,
    from_address: str,
    reply_to: str,
    tags: dict[str, str],
    default_from: str,
    request_id: str = "",
    priority: Priority | None = Priority.TRANSACTIONAL,
    tenant: str = "",
    send_at: float | None = None,
    attachments: list[Attachment] | None = None,
    max_bytes: int = 10 * 1024 * 1024,
) -> OutgoingEmail:
    """Check every field of a SendEmail request; raises InvalidRequest listing all violations at once.

    Every length is checked before any pattern or parser reads the text, so no field costs more than its limit.
    """
    attachments = attachments or []
    size = message_size(subject, text_body, html_body, attachments)
    if size > max_bytes:  # before anything reads the bodies or the files
        largest = "attachments" if attachments else "html_body" if len(html_body) > len(text_body) else "text_body"
        raise InvalidRequest(
            {largest: f"the message is {size:,} bytes; at most {max_bytes:,} (MAILGW_MAX_MESSAGE_BYTES)"}
        )
    violations: dict[str, str] = {}

    def address(field: str, value: str, *, required: bool) -> Mailbox | None:
        value = value.strip()
        if not value:
            if required:
                violations[field] = "required"
            return None
        parsed = parse_address(value)
        if isinstance(parsed, str):
            violations[field] = parsed
            return None
        return parsed

    recipient = address("to", to, required=True)
    sender = address("from_address", from_address or default_from, required=True)
    if "from_address" in violations and not from_address:
        violations["from_address"] = "required: the gateway has no MAILGW_DEFAULT_FROM"
    reply = address("reply_to", reply_to, required=False)

    if len(subject) > MAX_SUBJECT:
        violations["subject"] = f"longer than {MAX_SUBJECT} characters"
    elif not subject.strip():
        violations["subject"] = "required"
    elif HEADER_UNSAFE.search(subject):
        violations["subject"] = "must not contain line breaks or control characters"

    if not text_body and not html_body:
        violations["text_body"] = "at least one of text_body and html_body is required"
    for field, body in (("text_body", text_body), ("html_body", html_body)):
        if "\x00" in body:
            violations[field] = "must not contain NUL characters"

    if len(tags) > MAX_TAGS:
        violations["tags"] = f"at most {MAX_TAGS} tags"
    else:
        for name, value in tags.items():
            field = f"tags[{name}]" if len(name) <= 64 else f"tags[{name[:64]}…]"  # the field path is echoed back
            if name in (CONTACT_TAG, MESSAGE_TAG, PRIORITY_TAG, TENANT_TAG):
                violations[field] = "reserved: the gateway sets it (contact id, message id, priority, tenant)"
            elif not TAG_PATTERN.fullmatch(name) or not TAG_PATTERN.fullmatch(value):
                violations[field] = "names and values need 1-256 ASCII letters, digits, '_' or '-'"

    if request_id and not is_name(request_id):  # AIP-155: stored as given, so refused (never cut) when it does not fit
        violations["request_id"] = "1-128 printable ASCII characters (a UUID is a good choice)"

    if priority is None:
        violations["priority"] = "one of PRIORITY_CRITICAL, PRIORITY_TRANSACTIONAL, PRIORITY_BULK (or unset)"
    if tenant and not is_tenant(tenant):
        violations["tenant"] = "1-64 ASCII letters, digits, '_' or '-' (or empty for none)"

    violations |= check_attachments(attachments, html_body)

    scheduled = None
    if send_at is not None:
        now = datetime.datetime.now(datetime.UTC)
        if send_at > (now + MAX_SCHEDULE).timestamp():
            violations["send_at"] = f"at most {MAX_SCHEDULE.days} days ahead"
        elif send_at > now.timestamp():  # a past time (or now) means now
            scheduled = datetime.datetime.fromtimestamp(send_at, datetime.UTC).replace(tzinfo=None)

    if violations:
        raise InvalidRequest(violations)
    return OutgoingEmail(
        to=recipient,
        sender=sender,
        reply_to=reply,
        subject=subject.strip(),
        text_body=text_body,
        html_body=html_body,
        tags=tuple(sorted(tags.items())),
        priority=priority,
        tenant=tenant,
        send_at=scheduled,
        asked_send_at=send_at,
        attachments=tuple(
            Attachment(a.filename.strip(), a.content_type.strip().lower(), a.content, a.content_id) for a in attachments
        ),
    )
