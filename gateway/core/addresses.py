"""Email addresses as callers and SES write them: bounded, parsed in linear time, normalised to a contact key."""

import functools
import re
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The text is not a mailable address."""


class Mailbox(NamedTuple):
    """A checked address: the display name as given, the addr-spec in its ASCII (IDNA) form. A plain pair rather than
    email.headerregistry.Address, which parses its addr-spec again on every construction (~50 us, per message the
    dispatcher reads back from the queue)."""

    display_name: str
    addr_spec: str

    @property
    def domain(self) -> str:
        return self.addr_spec.rpartition("@")[2]


# Header fields must stay on one line: a CR or LF in them is how header injection starts.
HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_DISPLAY_NAME = 200  # with the address, a header line stays far below SMTP's 998 octets
MAX_ADDR_SPEC = 320  # 64-octet local part, "@", 255-octet domain (RFC 5321 limits; the validator is stricter)
# The longest "Name <addr>" worth reading: a quoted, padded name and the address. Longer input is refused before
# anything parses it, and only inputs this short reach the cache below.
MAX_ADDRESS_FIELD = MAX_DISPLAY_NAME + MAX_ADDR_SPEC + 16


def parse_address(value: str) -> Mailbox | str:
    """The Mailbox in "Name <addr>" or "addr", or why it is not one."""
    if len(value) > MAX_ADDRESS_FIELD:
        return f"longer than {MAX_ADDRESS_FIELD} characters"
    return _parse_bounded(value)


@functools.lru_cache(maxsize=4096)
def _parse_bounded(value: str) -> Mailbox | str:
    # Cached: senders and busy recipients repeat; at most 4096 inputs of at most MAX_ADDRESS_FIELD characters.
    if HEADER_UNSAFE.search(value):
        return "must not contain line breaks or control characters"
    name, addr = _split_display_name(value)
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip()
    if len(name) > MAX_DISPLAY_NAME:
        return f"the display name is longer than {MAX_DISPLAY_NAME} characters"
    try:
        valid = validate_email(addr, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return str(exc)
    # The ASCII form (IDNA domain) is what SES accepts on the envelope and in headers.
    return Mailbox(name, valid.ascii_email)


def _split_display_name(value: str) -> tuple[str, str]:
    """("Name", "addr") from "Name <addr>"; ("", value) when there are no angle brackets around the end.

    String search, not a regex: a backtracking pattern took seconds on a long run of spaces.
    """
    if not value.endswith(">"):
        return "", value
    opening = value.rfind("<")
    if opening < 0:
        return "", value
    return value[:opening].strip(), value[opening + 1 : -1].strip()


def sender_name(sender: Mailbox) -> str:
    """How a recipient knows a sender: its display name, else its domain (in Unicode, as a person reads it)."""
    if sender.display_name:
        return sender.display_name
    try:
        return sender.domain.encode("ascii").decode("idna")
    except UnicodeError:  # a label Python's IDNA 2003 codec refuses: the ASCII form is still the sender's domain
        return sender.domain


def address_key(address: Mailbox) -> str:
    """The contact key of an address parse_address accepted (already trimmed and ASCII): its lower-case form."""
    return address.addr_spec.lower()


def email_key(address: str) -> str:
    """The normalised form contacts are stored under: trimmed, ASCII (IDNA) domain, lower case."""
    parsed = parse_address(address.strip())
    if isinstance(parsed, str):
        raise InvalidAddress(parsed)
    return address_key(parsed)
