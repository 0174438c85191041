"""Logging for both processes: one setup, and address masking (logs never carry bodies or full addresses)."""

import hashlib
import logging
import os


def setup_logging() -> None:
    """Log lines to stderr at MAILGW_LOG_LEVEL (default INFO)."""
    level = os.environ.get("MAILGW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Peewee's DEBUG lines carry query parameters, i.e. recipients' addresses.
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLogger().level))


def masked(address: str) -> str:
    """An address fit for logs: first character of the local part, then the domain ("a***@example.org"); what
    arrived from outside is cut to a domain's length and shown printable, so it cannot forge a log line."""
    local, _, domain = address.rpartition("@")
    shown = f"{local[:1]}***@{domain[:253]}" if local else "***"
    return shown if shown.isprintable() else "".join(c if c.isprintable() else "?" for c in shown)


def contact_ref(contact_id: str) -> str:
    """A contact id fit for logs: the id is the secret of an unsubscribe link, so logs carry a short digest of it
    ("c-3f9a0b12c4"); an operator holding an id can compute its reference, nobody can go the other way."""
    return "c-" + hashlib.sha256(contact_id.encode()).hexdigest()[:10]
