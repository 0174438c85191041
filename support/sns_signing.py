"""Test helper: a throwaway SNS signing certificate, envelopes signed as SNS signs them, a fake SNS host."""

import asyncio
import base64
import datetime
import functools
import json
import uuid

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e2425f004a"
)
UNSUBSCRIBE_URL = f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}:8a21d249"
# SES JSON as SNS delivers it: a string, with a newline and non-ASCII text, so UTF-8 and escapes matter.
SES_MESSAGE = json.dumps(
    {
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "zoë@example.com"}]},
    },
    ensure_ascii=False,
    indent=1,
)
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


@functools.cache
def throwaway_key() -> rsa.RSAPrivateKey:
    """One RSA key per test run: generating keys is the slow part."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sns_timestamp(moment: datetime.datetime) -> str:
    """The Timestamp spelling SNS uses: UTC, milliseconds, Z."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SigningCertificate:
    """A self-signed certificate standing in for SNS's, and its private key."""

    def __init__(
        self,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.key = key or throwaway_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, data: bytes, signature_version: str) -> str:
        """Base64 SHA1withRSA ("1") or SHA256withRSA ("2") signature of data."""
        signature = self.key.sign(data, padding.PKCS1v15(), _HASHES[signature_version]())
        return base64.b64encode(signature).decode()


def string_to_sign(envelope: dict[str, str]) -> bytes:
    """AWS's merged key list, each key only if present (as in AWS's PHP and Ruby validators)."""
    keys = ("Message", "MessageId", "Subject", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    return "".join(f"{key}\n{envelope[key]}\n" for key in keys if key in envelope).encode()


def signed_envelope(
    signer: SigningCertificate,
    type_: str = "Notification",
    *,
    signature_version: str = "2",
    message: str = SES_MESSAGE,
    subject: str | None = None,
    topic_arn: str = TOPIC_ARN,
    timestamp: str | None = None,
    cert_url: str = CERT_URL,
    subscribe_url: str = SUBSCRIBE_URL,
) -> dict[str, str]:
    """An envelope of type_ as SNS sends it, signed by signer; subject=None leaves the Subject key out."""
    envelope = {
        "Type": type_,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": message,
        "Timestamp": timestamp or sns_timestamp(datetime.datetime.now(datetime.UTC)),
    }
    if type_ == "Notification":
        if subject is not None:
            envelope["Subject"] = subject
        envelope["UnsubscribeURL"] = UNSUBSCRIBE_URL
    else:
        envelope["Token"] = "2336412f37fb687f5d51e6e2425f004a"
        envelope["SubscribeURL"] = subscribe_url
    envelope["SignatureVersion"] = signature_version
    envelope["Signature"] = signer.sign(string_to_sign(envelope), signature_version)
    envelope["SigningCertURL"] = cert_url
    return envelope


class FakeSnsHost:
    """A loopback stand-in for sns.<region>.amazonaws.com, reached through SnsVerifier's endpoint_url.

    Paths ending .pem serve certificate_pem; any other path is the SubscribeURL confirmation.
    Every request is recorded as path + query in `requests` before anything else happens.
    """

    def __init__(self, certificate_pem: bytes) -> None:
        self.certificate_pem = certificate_pem
        self.status = 200  # any other value: answer every request with it and an empty body
        self.delay = 0.0  # seconds to wait before answering: a hanging host
        self.redirect_to: str | None = None  # the confirmation endpoint answers 302 to here
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def confirmations(self) -> list[str]:
        return [path for path in self.requests if not path.split("?")[0].endswith(".pem")]

    async def start(self) -> str:
        """Listens on 127.0.0.1, port 0; returns the base URL (also in self.url)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        # Cancel a hanging answer when the client gives up, so close() does not wait for it.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeSnsHost":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        if request.path.endswith(".pem"):
            return web.Response(body=self.certificate_pem, content_type="application/x-x509-ca-cert")
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")
