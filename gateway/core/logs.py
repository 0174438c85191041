"""Logging for both processes: one setup (text or one JSON object a line), and address masking (logs never carry
bodies or full addresses)."""

import datetime
import hashlib
import json
import logging
import os
import re
import sys

LOG_FORMATS = ("text", "json")
# The ids of the work a line is about, passed by the log sites as `extra=`; the JSON format shows them as fields.
WORK_IDS = ("message_id", "ses_message_id", "contact", "caller", "sns_message_id")
# Anything address-shaped that a log site did not mask (a library's message, SES's error text, a traceback): both
# formats mask it too.
_UNMASKED_ADDRESS = re.compile(r"([A-Za-z0-9._%+=!#$&'/?^`{|}~-])[A-Za-z0-9._%+=!#$&'/?^`{|}~-]*@(?=[^\s@]+\.)")


def setup_logging(default_level: str = "INFO") -> None:
    """Log lines to stderr at MAILGW_LOG_LEVEL (default INFO; a command run by hand passes WARNING), as
    MAILGW_LOG_FORMAT says: text (default) or json."""
    level = os.environ.get("MAILGW_LOG_LEVEL", default_level).upper()
    log_format = os.environ.get("MAILGW_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        print(f"mailgw: MAILGW_LOG_FORMAT must be text or json, not {log_format[:40]!r}", file=sys.stderr)
        raise SystemExit(2)  # as startup.EXIT_CONFIG
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
        logging.captureWarnings(True)  # Python's warnings as log lines too, not as plain text on stderr
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    # Peewee's DEBUG lines carry query parameters, i.e. recipients' addresses.
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLogger().level))
    # botocore's DEBUG lines carry request and response bodies (raw messages sent to SES, SQS message bodies), and its
    # INFO lines are chatter of every client made ("Found credentials in environment variables."): warnings only.
    for chatty in ("botocore", "boto3"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


class TextFormatter(logging.Formatter):
    """One line of text (with its traceback, if any), anything address-shaped in it masked."""

    def format(self, record: logging.LogRecord) -> str:
        return _UNMASKED_ADDRESS.sub(r"\1***@", super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, event (the message), the ids of the work that
    the log site passed (WORK_IDS), and the traceback of an exception. Line breaks inside values are escaped, so a
    value cannot start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": _UNMASKED_ADDRESS.sub(r"\1***@", record.getMessage()),
        }
        for key in WORK_IDS:
            value = record.__dict__.get(key)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = _UNMASKED_ADDRESS.sub(r"\1***@", self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def error_text(status: int, message: str) -> str:
    """The message of an error another service answered (SES, SQS), fit for a log line: one printable line, cut at
    300 characters. A markup document (the HTML page of a proxy or load balancer, an XML body) is replaced by the HTTP
    status: it would spill a page into the log, and says nothing that the status and the error code do not."""
    text = " ".join(message.split())
    if _MARKUP.match(text):
        return f"HTTP {status} (a markup body, not shown)"
    return "".join(c if c.isprintable() else "?" for c in text[:300])


_MARKUP = re.compile(r"<[!?/]?[A-Za-z]")


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
