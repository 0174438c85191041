"""Webhooks, as an operator configures them and as a receiver checks them: MAILGW_WEBHOOK_URLS and
MAILGW_WEBHOOK_SECRETS (each `caller=value,...`), and the signature every POST carries (the README's `verify` is its
receiving side).

    X-Mailgw-Timestamp: 1765161600
    X-Mailgw-Signature: v1=<hex HMAC-SHA256 of "1765161600." + body, keyed with the caller's secret>
"""

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.core.config import ConfigError, is_loopback
from gateway.core.ids import is_name

URLS, SECRETS = "MAILGW_WEBHOOK_URLS", "MAILGW_WEBHOOK_SECRETS"
TIMESTAMP_HEADER = "X-Mailgw-Timestamp"
SIGNATURE_HEADER = "X-Mailgw-Signature"
SCHEME = "v1"
MIN_SECRET_LENGTH = 16
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class Webhook:
    """Where one caller's records go, and the secret that signs them (never shown: not in repr, logs or errors)."""

    caller: str
    url: str
    secret: str = field(repr=False)

    @property
    def shown_url(self) -> str:
        """The URL as logs show it: scheme and host only (a path or query may carry a token, as Slack's do)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/…"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Mailgw-Signature value of a POST of `body` at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def webhooks_from(urls: str, secrets: str) -> dict[str, Webhook]:
    """Each caller's webhook from the two settings; ConfigError, one line naming the variable, for a caller with a URL
    and no secret (or the other way round), a URL that is not http(s) or carries user:password, a secret shorter than
    16 characters. A caller name read from MAILGW_WEBHOOK_SECRETS is never shown (it may be a secret set without
    "caller=")."""
    by_url, by_secret = _pairs(URLS, urls), _pairs(SECRETS, secrets)
    if unsigned := sorted(set(by_url) - set(by_secret)):
        raise ConfigError(f"{SECRETS}: caller {unsigned[0]!r} of {URLS} has no secret")
    if set(by_secret) - set(by_url):  # its name is not shown: a secret set without "caller=" would be
        raise ConfigError(f"{SECRETS}: an entry names a caller that {URLS} does not")
    for caller, url in by_url.items():
        parts = urlsplit(url)
        if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{URLS}: caller {caller!r}: not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"{URLS}: caller {caller!r}: user:password in a URL is not sent (the signature proves it)"
            )
        if parts.fragment:
            raise ConfigError(f"{URLS}: caller {caller!r}: a URL with a #fragment (nothing sends it)")
        try:
            parts.port  # noqa: B018 (a port out of range raises here)
        except ValueError:
            raise ConfigError(f"{URLS}: caller {caller!r}: the URL's port is not a port") from None
    for caller, secret in by_secret.items():
        if len(secret) < MIN_SECRET_LENGTH or not secret.isprintable() or not secret.isascii():
            raise ConfigError(f"{SECRETS}: caller {caller!r}: a secret is {MIN_SECRET_LENGTH}+ printable ASCII")
    return {caller: Webhook(caller, url, by_secret[caller]) for caller, url in by_url.items()}


def plain_http(webhooks: dict[str, Webhook]) -> list[str]:
    """The callers whose records would cross a network unencrypted (http:// to a host that is not loopback)."""
    return sorted(
        caller
        for caller, hook in webhooks.items()
        if hook.url.startswith("http://") and not is_loopback(urlsplit(hook.url).hostname or "")
    )


def _pairs(variable: str, value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for number, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        caller, equals, text = (part.strip() for part in item.partition("="))
        if not equals or not text:  # the entry itself is not shown: it may be a secret
            raise ConfigError(f"{variable}: entry {number} is not caller=value")
        shown = f"entry {number}" if variable == SECRETS else f"caller {caller[:40]!r}"  # a secret's entry: no name
        if not is_name(caller):
            raise ConfigError(f"{variable}: {shown}: a caller's name is 1-128 printable ASCII")
        if caller in pairs:
            raise ConfigError(
                f"{variable}: {shown} {'names a caller named before' if variable == SECRETS else 'is named twice'}"
            )
        pairs[caller] = text
    return pairs
