"""SNS HTTP(S) envelope verification: canonical string, certificate URL rule, certificate cache."""

import asyncio
import base64
import binascii
import datetime
import json
import re
from collections import OrderedDict
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.core.ids import is_token


class MalformedEnvelope(Exception):
    """The body is not an SNS envelope (→ HTTP 400)."""


class VerificationFailed(Exception):
    """The envelope is not a genuine message from an allowed topic (→ HTTP 403)."""


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched now (→ HTTP 503, SNS retries)."""


class ConfirmationFailed(Exception):
    """Confirming the subscription failed (→ HTTP 503, SNS retries)."""


# The keys each Type signs, in signing order; Subject is signed only when the key is present.
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_VERIFYING_KEYS = ("SignatureVersion", "Signature", "SigningCertURL")
_OPTIONAL_KEYS = ("Subject", "UnsubscribeURL")
# Lambda relays spell these differently (AWS's PHP validator canonicalises them the same way).
_LAMBDA_SPELLINGS = {
    "SigningCertUrl": "SigningCertURL",
    "SubscribeUrl": "SubscribeURL",
    "UnsubscribeUrl": "UnsubscribeURL",
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# A full match on the host, its middle label an AWS region: a suffix check lets any S3 bucket under amazonaws.com
# sign (django-ses CVE), and a loose middle label let buckets named "sns" sign (sns.s3.amazonaws.com,
# sns.s3-us-west-2.amazonaws.com). Regions: us-east-1, eu-central-2, us-gov-west-1; China's (cn-north-1) are
# served from amazonaws.com.cn, and only theirs.
_SNS_HOST = re.compile(
    r"sns\.(?:(?!cn-)[a-z]{2}(?:-gov)?-[a-z]+-[0-9]{1,2}\.amazonaws\.com|cn-[a-z]+-[0-9]{1,2}\.amazonaws\.com\.cn)",
    re.IGNORECASE | re.ASCII,
)
_MAX_CERTIFICATE_BYTES = 64 * 1024


def parse_envelope(body: bytes) -> dict[str, str]:
    """The envelope's string fields, Lambda spellings canonicalised; raises MalformedEnvelope."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise MalformedEnvelope("body is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise MalformedEnvelope("body is not a JSON object")
    for lambda_key, key in _LAMBDA_SPELLINGS.items():
        if key not in document and lambda_key in document:
            document[key] = document[lambda_key]
    kind = document.get("Type")
    signed_keys = _SIGNED_KEYS.get(kind) if isinstance(kind, str) else None
    if signed_keys is None:
        raise MalformedEnvelope("unknown or missing Type")
    envelope = {}
    # Other keys (MessageAttributes is an object) are neither signed nor used, so they are dropped.
    for key in (*signed_keys, *_VERIFYING_KEYS, *_OPTIONAL_KEYS):
        if key not in document:
            if key in _OPTIONAL_KEYS:
                continue
            raise MalformedEnvelope(f"missing {key}")
        if not isinstance(document[key], str):
            raise MalformedEnvelope(f"{key} is not a string")
        envelope[key] = document[key]
    try:
        _timestamp(envelope["Timestamp"])
    except ValueError:
        raise MalformedEnvelope("Timestamp is not an ISO-8601 UTC time") from None
    if not is_token(envelope["MessageId"]):  # stored to deduplicate redeliveries: it must fit as it is
        raise MalformedEnvelope("MessageId is not 1-128 printable ASCII characters")
    return envelope


def _timestamp(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError("no time zone")
    return moment


def _string_to_sign(envelope: dict[str, str]) -> bytes:
    keys = _SIGNED_KEYS.get(envelope.get("Type"))
    if keys is None:
        raise VerificationFailed("unknown Type")
    try:
        return "".join(f"{key}\n{envelope[key]}\n" for key in keys if key != "Subject" or key in envelope).encode()
    except KeyError as exc:
        raise VerificationFailed(f"missing {exc.args[0]}") from None


def _sns_url_parts(url: str | None, *, pem: bool) -> tuple[str, str]:
    """(host, path and query) of an https URL on an SNS host; raises VerificationFailed otherwise."""
    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        raise VerificationFailed("URL is unreadable") from None
    if parts.scheme != "https" or "@" in parts.netloc or port not in (None, 443):
        raise VerificationFailed("URL is not https on an SNS host")
    if not _SNS_HOST.fullmatch(parts.hostname or ""):
        raise VerificationFailed("URL host is not an SNS host")
    if pem and not parts.path.endswith(".pem"):
        raise VerificationFailed("certificate URL does not end in .pem")
    return parts.hostname, parts.path + (f"?{parts.query}" if parts.query else "")


class SnsVerifier:
    """Verifies SNS envelopes against their topic allow-list and AWS's signing certificates."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        topic_arns: frozenset[str],
        endpoint_url: str | None = None,
        fetch_timeout: float = 5.0,
        cache_size: int = 64,
        max_age: datetime.timedelta | None = None,
    ) -> None:
        self._session = session
        self._topic_arns = topic_arns
        self._endpoint = urlsplit(endpoint_url) if endpoint_url else None
        self._timeout = aiohttp.ClientTimeout(total=fetch_timeout)
        self._cache_size = cache_size
        self._max_age = max_age
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._fetches: dict[str, asyncio.Task[x509.Certificate]] = {}

    async def verify(self, envelope: dict[str, str], *, check_age: bool = True) -> None:
        """Returns when the envelope is genuine; raises VerificationFailed or CertificateUnavailable. `check_age`:
        refuse one signed longer ago than max_age (a replay over HTTPS); an SQS queue's backlog is never refused for its
        age, since keeping notifications through an outage is what the queue is for."""
        # An allowed topic first: anyone can point a validly signed topic of their own at us.
        if envelope.get("TopicArn") not in self._topic_arns:
            raise VerificationFailed("topic is not allowed")
        algorithm = _HASHES.get(envelope.get("SignatureVersion"))
        if algorithm is None:
            raise VerificationFailed("unsupported SignatureVersion")
        try:
            signature = base64.b64decode(envelope.get("Signature", ""), validate=True)
            signed_at = _timestamp(envelope.get("Timestamp", ""))
        except (binascii.Error, ValueError):
            raise VerificationFailed("Signature or Timestamp unreadable") from None
        too_old = self._max_age is not None and datetime.datetime.now(datetime.UTC) - signed_at > self._max_age
        if check_age and too_old:
            raise VerificationFailed("message is too old")
        data = _string_to_sign(envelope)
        certificate = await self._certificate(envelope.get("SigningCertURL"))
        if not certificate.not_valid_before_utc <= signed_at <= certificate.not_valid_after_utc:
            raise VerificationFailed("certificate was not valid at the message Timestamp")
        try:
            certificate.public_key().verify(signature, data, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise VerificationFailed("signature does not match") from None

    async def confirm_subscription(self, envelope: dict[str, str]) -> None:
        """GETs the SubscribeURL of a (verified) SubscriptionConfirmation; raises ConfirmationFailed."""
        # Visiting an UnsubscribeConfirmation's SubscribeURL would re-subscribe (listmonk's bug).
        if envelope.get("Type") != "SubscriptionConfirmation" or envelope.get("TopicArn") not in self._topic_arns:
            raise VerificationFailed("only a SubscriptionConfirmation of an allowed topic is confirmed")
        url = self._fetch_url(envelope.get("SubscribeURL"), pem=False)
        try:
            async with self._session.get(url, timeout=self._timeout, allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    raise ConfirmationFailed(f"SubscribeURL answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConfirmationFailed(f"SubscribeURL unreachable: {exc!r}") from None

    def _fetch_url(self, url: str | None, *, pem: bool) -> str:
        # Rebuilt from the checked parts, so the host fetched is the host checked.
        host, path_and_query = _sns_url_parts(url, pem=pem)
        if self._endpoint is None:
            return f"https://{host}{path_and_query}"
        return f"{self._endpoint.scheme}://{self._endpoint.netloc}{path_and_query}"

    async def _certificate(self, url: str | None) -> x509.Certificate:
        certificate = self._certificates.get(url)
        if certificate is not None:  # its URL was checked when it was fetched
            self._certificates.move_to_end(url)
            return certificate
        fetch_url = self._fetch_url(url, pem=True)
        # One fetch per URL however many messages wait for it; shielded so one cancelled waiter
        # does not cancel it for the others.
        fetch = self._fetches.get(url)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch_certificate(url, fetch_url))
            self._fetches[url] = fetch
            fetch.add_done_callback(lambda done: self._fetch_done(url, done))
        return await asyncio.shield(fetch)

    def _fetch_done(self, url: str, fetch: asyncio.Task[x509.Certificate]) -> None:
        del self._fetches[url]
        if not fetch.cancelled():
            fetch.exception()  # retrieved here so a fetch whose waiters all left is not reported as lost

    async def _fetch_certificate(self, url: str, fetch_url: str) -> x509.Certificate:
        try:
            async with self._session.get(fetch_url, timeout=self._timeout, allow_redirects=False) as response:
                if response.status >= 500:
                    raise CertificateUnavailable(f"certificate host answered {response.status}")
                if response.status != 200:
                    raise VerificationFailed(f"certificate host answered {response.status}")
                pem = b""
                async for chunk in response.content.iter_any():
                    pem += chunk
                    if len(pem) > _MAX_CERTIFICATE_BYTES:
                        raise VerificationFailed("certificate is too large")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CertificateUnavailable(f"certificate host unreachable: {exc!r}") from None
        try:
            certificate = x509.load_pem_x509_certificate(pem)
            if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
                raise ValueError("not an RSA key")
        except ValueError:
            raise VerificationFailed("certificate URL did not serve a PEM X.509 RSA certificate") from None
        # Only a good certificate is cached: a cached failure would refuse every retry until restart.
        self._certificates[url] = certificate
        while len(self._certificates) > self._cache_size:
            self._certificates.popitem(last=False)
        return certificate
