"""Logging for both processes: one setup, and address masking (logs never carry bodies or full addresses)."""

import logging
import os


def setup_logging() -> None:
    """Log lines to stderr at MAILGW_LOG_LEVEL (default INFO)."""
    level = os.environ.get("MAILGW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Peewee's DEBUG lines carry query parameters, i.e. recipients' addresses.
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLogger().level))


def masked(address: str) -> str:
    """An address fit for logs: first character of the local part, then the domain ("a***@example.org")."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"
