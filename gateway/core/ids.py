"""The shapes of the ids the gateway stores or looks up, checked where they enter (an id is never cut to fit)."""

import re
import secrets

CONTACT_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): the secret of an unsubscribe link
# Ids from elsewhere (SES message ids, SNS MessageIds, message ids carried over from before the queue, which are
# SES's) and the gateway's own message ids: printable ASCII without spaces, as long as their columns.
TOKEN = re.compile(r"[\x21-\x7e]{1,128}")
# Names chosen by callers (request ids, caller names): printable ASCII, spaces allowed.
NAME = re.compile(r"[\x20-\x7e]{1,128}")
# A tenant (the client company a message is sent for): what SES accepts as a TenantName and as an EmailTag value.
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CODE = 64  # characters of an error code from elsewhere that are kept (SES's longest known is 35)
NOT_CODE = re.compile(r"[^\x21-\x7e]")


def new_contact_id() -> str:
    """128 random bits, URL-safe: the id in unsubscribe links must not be guessable."""
    return secrets.token_urlsafe(16)


def new_message_id() -> str:
    """Unguessable and URL-safe, so it can travel as an SES tag value and never names another caller's message."""
    return "msg_" + secrets.token_urlsafe(16)


def is_contact_id(text: str) -> bool:
    return len(text) == 22 and CONTACT_ID.fullmatch(text) is not None


def is_token(text: str) -> bool:
    """An id from SES or SNS, or a message id: what may be looked up as it is."""
    return len(text) <= 128 and TOKEN.fullmatch(text) is not None


def is_name(text: str) -> bool:
    """A request id or a caller's name."""
    return len(text) <= 128 and NAME.fullmatch(text) is not None


def is_tenant(text: str) -> bool:
    return len(text) <= 64 and TENANT.fullmatch(text) is not None


def storable_code(text: str) -> str:
    """An error code from elsewhere (SES's x-amzn-ErrorType) as its column keeps it: printable ASCII, cut at MAX_CODE.
    Unlike an id it is never looked up, only shown: a code longer than any SES has is cut, never refused, so one odd
    answer cannot keep its message's outcome from being recorded."""
    return NOT_CODE.sub("?", text[:MAX_CODE])
