"""Tests of SNS envelope verification with genuine signatures and a loopback certificate host."""

import asyncio
import datetime
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from feedback_http.sns import (
    CertificateUnavailable,
    ConfirmationFailed,
    MalformedEnvelope,
    SnsVerifier,
    VerificationFailed,
    parse_envelope,
)
from support.sns_signing import (
    CERT_URL,
    SUBSCRIBE_URL,
    TOPIC_ARN,
    FakeSnsHost,
    SigningCertificate,
    signed_envelope,
    sns_timestamp,
)

OTHER_ALLOWED_TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
CERT_PATH = urlsplit(CERT_URL).path
NOW = datetime.datetime.now(datetime.UTC)


@pytest_asyncio.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def make_verifier(session: aiohttp.ClientSession, sns_host: FakeSnsHost):
    def make(**options) -> SnsVerifier:
        options = {"endpoint_url": sns_host.url, "fetch_timeout": 0.5, **options}
        return SnsVerifier(session, topic_arns=frozenset({TOPIC_ARN, OTHER_ALLOWED_TOPIC}), **options)

    return make


@pytest.fixture
def verifier(make_verifier) -> SnsVerifier:
    return make_verifier()


def wire(envelope: dict) -> bytes:
    return json.dumps(envelope).encode()


# parse_envelope


@pytest.mark.parametrize("type_", ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_parse_returns_the_envelope_fields(signer, type_):
    envelope = signed_envelope(signer, type_, subject="Amazon SES Email Event Notification")
    assert parse_envelope(wire(envelope)) == envelope


def test_parse_drops_fields_that_are_not_strings_and_not_used(signer):
    envelope = signed_envelope(signer)
    body = wire({**envelope, "MessageAttributes": {"contact": {"Type": "String", "Value": "c1"}}})
    assert parse_envelope(body) == envelope


@pytest.mark.parametrize(
    "body",
    [
        b'{"Type": "Notification", "Message": "\xff\xfe"}',
        b"Type=Notification&Message=hello",
        b"",
        b'[{"Type": "Notification"}]',
        b'"Notification"',
        b"null",
    ],
    ids=["invalid-utf8", "not-json", "empty", "json-list", "json-string", "json-null"],
)
def test_parse_rejects_a_body_that_is_not_a_json_object(body):
    with pytest.raises(MalformedEnvelope):
        parse_envelope(body)


@pytest.mark.parametrize(
    ("type_", "key"),
    [
        ("Notification", "Type"),
        ("Notification", "Message"),
        ("Notification", "MessageId"),
        ("Notification", "Timestamp"),
        ("Notification", "TopicArn"),
        ("Notification", "SignatureVersion"),
        ("Notification", "Signature"),
        ("Notification", "SigningCertURL"),
        ("SubscriptionConfirmation", "Token"),
        ("SubscriptionConfirmation", "SubscribeURL"),
        ("UnsubscribeConfirmation", "Token"),
        ("UnsubscribeConfirmation", "SubscribeURL"),
    ],
)
def test_parse_rejects_a_missing_key(signer, type_, key):
    envelope = signed_envelope(signer, type_)
    del envelope[key]
    with pytest.raises(MalformedEnvelope, match="Type" if key == "Type" else key):
        parse_envelope(wire(envelope))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Message", {"eventType": "Bounce"}),
        ("Message", None),
        ("SignatureVersion", 2),
        ("Subject", 7),
        ("TopicArn", [TOPIC_ARN]),
        ("UnsubscribeURL", None),
    ],
)
def test_parse_rejects_a_value_that_is_not_a_string(signer, key, value):
    envelope = {**signed_envelope(signer, subject="s"), key: value}
    with pytest.raises(MalformedEnvelope, match=key):
        parse_envelope(wire(envelope))


@pytest.mark.parametrize("type_", ["Unsubscribe", "notification", "SubscriptionConfirmed", ""])
def test_parse_rejects_an_unknown_type(signer, type_):
    envelope = {**signed_envelope(signer), "Type": type_}
    with pytest.raises(MalformedEnvelope, match="Type"):
        parse_envelope(wire(envelope))


@pytest.mark.parametrize("timestamp", ["yesterday", "2026-11-26T10:00:00", "2026-11-26", "2026-13-01T00:00:00Z"])
def test_parse_rejects_a_timestamp_that_is_not_iso8601_utc(signer, timestamp):
    envelope = signed_envelope(signer, timestamp=timestamp)
    with pytest.raises(MalformedEnvelope, match="Timestamp"):
        parse_envelope(wire(envelope))


@pytest.mark.asyncio
@pytest.mark.parametrize("type_", ["Notification", "SubscriptionConfirmation"])
async def test_parse_accepts_lambda_spellings_and_the_result_verifies(signer, verifier, type_):
    envelope = signed_envelope(signer, type_)
    renames = {"SigningCertURL": "SigningCertUrl", "SubscribeURL": "SubscribeUrl", "UnsubscribeURL": "UnsubscribeUrl"}
    lambda_record = {renames.get(key, key): value for key, value in envelope.items()}
    assert "SigningCertURL" not in lambda_record

    parsed = parse_envelope(wire(lambda_record))

    assert parsed == envelope
    await verifier.verify(parsed)


# verify: genuine messages


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    ("type_", "subject"),
    [
        ("Notification", None),
        ("Notification", "Amazon SES Email Event Notification"),
        ("Notification", ""),
        ("SubscriptionConfirmation", None),
        ("UnsubscribeConfirmation", None),
    ],
    ids=["notification", "notification-subject", "notification-empty-subject", "subscription", "unsubscription"],
)
async def test_verify_accepts_a_genuine_envelope(signer, sns_host, verifier, version, type_, subject):
    envelope = parse_envelope(wire(signed_envelope(signer, type_, signature_version=version, subject=subject)))
    assert ("Subject" in envelope) == (subject is not None)

    assert await verifier.verify(envelope) is None
    assert sns_host.requests == [CERT_PATH]


@pytest.mark.asyncio
async def test_verify_ignores_the_unsigned_unsubscribe_url(signer, verifier):
    envelope = signed_envelope(signer)
    envelope["UnsubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=other"
    await verifier.verify(envelope)


@pytest.mark.asyncio
async def test_verify_uses_the_certificate_valid_at_the_message_timestamp(sns_host, make_verifier):
    # Expired now, but valid when the message was signed five days ago; the message's age alone is no reason.
    signer = SigningCertificate(
        not_before=NOW - datetime.timedelta(days=10), not_after=NOW - datetime.timedelta(days=1)
    )
    sns_host.certificate_pem = signer.pem
    envelope = signed_envelope(signer, timestamp=sns_timestamp(NOW - datetime.timedelta(days=5)))

    await make_verifier().verify(envelope)


# verify: forged and altered messages


def _flip_last_byte(text: str) -> str:
    return text[:-1] + chr(ord(text[-1]) ^ 1)


def _one_millisecond_later(timestamp: str) -> str:
    return sns_timestamp(datetime.datetime.fromisoformat(timestamp) + datetime.timedelta(milliseconds=1))


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    ("type_", "subject", "alter"),
    [
        ("Notification", None, lambda e: e.update(Message=_flip_last_byte(e["Message"]))),
        ("Notification", None, lambda e: e.update(Message=e["Message"].replace("zoë", "zoe"))),
        ("Notification", None, lambda e: e.update(MessageId=_flip_last_byte(e["MessageId"]))),
        ("Notification", None, lambda e: e.update(Timestamp=_one_millisecond_later(e["Timestamp"]))),
        ("Notification", None, lambda e: e.update(TopicArn=OTHER_ALLOWED_TOPIC)),
        ("Notification", None, lambda e: e.update(Subject="")),
        ("Notification", "", lambda e: e.pop("Subject")),
        ("Notification", "Hello", lambda e: e.update(Subject="Hellp")),
        ("SubscriptionConfirmation", None, lambda e: e.update(Token=_flip_last_byte(e["Token"]))),
        ("SubscriptionConfirmation", None, lambda e: e.update(SubscribeURL=e["SubscribeURL"] + "0")),
        ("UnsubscribeConfirmation", None, lambda e: e.update(Token=_flip_last_byte(e["Token"]))),
        ("SubscriptionConfirmation", None, lambda e: e.update(Type="UnsubscribeConfirmation")),
    ],
    ids=[
        "message-byte",
        "message-utf8",
        "message-id",
        "timestamp",
        "other-allowed-topic",
        "subject-added",
        "subject-removed",
        "subject-changed",
        "token",
        "subscribe-url",
        "unsubscribe-token",
        "type",
    ],
)
async def test_verify_rejects_an_altered_envelope(signer, verifier, version, type_, subject, alter):
    envelope = signed_envelope(signer, type_, signature_version=version, subject=subject)
    await verifier.verify(dict(envelope))  # the unaltered one is genuine
    alter(envelope)

    with pytest.raises(VerificationFailed):
        await verifier.verify(envelope)


@pytest.mark.asyncio
@pytest.mark.parametrize(("signed_as", "labelled_as"), [("1", "2"), ("2", "1")])
async def test_verify_rejects_a_signature_labelled_with_the_other_version(signer, verifier, signed_as, labelled_as):
    envelope = signed_envelope(signer, signature_version=signed_as)
    envelope["SignatureVersion"] = labelled_as

    with pytest.raises(VerificationFailed):
        await verifier.verify(envelope)


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["3", "0", "", " 2", "2.0", None])
async def test_verify_rejects_an_unknown_signature_version_without_fetching(signer, sns_host, verifier, version):
    envelope = signed_envelope(signer)
    if version is None:
        del envelope["SignatureVersion"]
    else:
        envelope["SignatureVersion"] = version

    with pytest.raises(VerificationFailed, match="SignatureVersion"):
        await verifier.verify(envelope)
    assert sns_host.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize("signature", ["not base64!", "QUJD=X", "", "QUJDRA=="])
async def test_verify_rejects_an_unreadable_or_wrong_signature(signer, verifier, signature):
    envelope = {**signed_envelope(signer), "Signature": signature}

    with pytest.raises(VerificationFailed):
        await verifier.verify(envelope)


@pytest.mark.asyncio
async def test_verify_rejects_a_message_signed_by_another_key(signer, sns_host, verifier):
    impostor = SigningCertificate(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    envelope = signed_envelope(impostor)

    with pytest.raises(VerificationFailed, match="signature"):
        await verifier.verify(envelope)
    assert sns_host.requests == [CERT_PATH]  # it got as far as the genuine certificate


@pytest.mark.asyncio
async def test_verify_rejects_a_validly_signed_message_from_a_foreign_topic_before_fetching(signer, sns_host, verifier):
    envelope = signed_envelope(signer, topic_arn=FOREIGN_TOPIC)

    with pytest.raises(VerificationFailed, match="topic"):
        await verifier.verify(envelope)
    assert sns_host.requests == []


LOOK_ALIKE_CERT_URLS = [
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
    "https://sns.cn-north-1.amazonaws.com.cn.evil.example/SimpleNotificationService-1.pem",
    "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
    "https://evil-sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.amazonaws.com/SimpleNotificationService-1.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "ftp://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem/",
    "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
    "https://user:password@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:notaport/SimpleNotificationService-1.pem",
    "https://sns.us_east_1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://[::1/SimpleNotificationService-1.pem",
    "//sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "",
    # S3 buckets named "sns" answer on these hosts: their owner could serve a certificate and sign with it.
    "https://sns.s3.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.s3.dualstack.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-1.pem",  # China's regions only on .com.cn
    "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("cert_url", LOOK_ALIKE_CERT_URLS)
async def test_verify_rejects_a_look_alike_certificate_url_without_fetching(signer, sns_host, verifier, cert_url):
    envelope = signed_envelope(signer, cert_url=cert_url)

    with pytest.raises(VerificationFailed, match="URL"):
        await verifier.verify(envelope)
    assert sns_host.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cert_url",
    [
        CERT_URL,
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "https://sns.us-gov-west-1.amazonaws.com:443/SimpleNotificationService-1.pem",
        "https://SNS.EU-WEST-1.AMAZONAWS.COM/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/certs/SimpleNotificationService-1.pem?v=2",
        "https://sns.ap-southeast-7.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-northwest-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
    ],
)
async def test_verify_fetches_an_sns_certificate_url_through_the_endpoint(signer, sns_host, verifier, cert_url):
    # The positive control for the test above: these URLs do reach the (recording) host.
    envelope = signed_envelope(signer, cert_url=cert_url)

    await verifier.verify(envelope)

    parts = urlsplit(cert_url)
    assert sns_host.requests == [parts.path + (f"?{parts.query}" if parts.query else "")]


# verify: the certificate


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (NOW + datetime.timedelta(hours=1), NOW + datetime.timedelta(days=30)),
        (NOW - datetime.timedelta(days=30), NOW - datetime.timedelta(hours=1)),
    ],
    ids=["not-yet-valid", "expired"],
)
async def test_verify_rejects_a_certificate_not_valid_at_the_message_timestamp(
    sns_host, verifier, not_before, not_after
):
    signer = SigningCertificate(not_before=not_before, not_after=not_after)
    sns_host.certificate_pem = signer.pem
    envelope = signed_envelope(signer, timestamp=sns_timestamp(NOW))

    with pytest.raises(VerificationFailed, match="valid"):
        await verifier.verify(envelope)


@pytest.mark.asyncio
async def test_verify_rejects_a_message_older_than_max_age_only_when_set(signer, sns_host, make_verifier):
    envelope = signed_envelope(signer, timestamp=sns_timestamp(NOW - datetime.timedelta(hours=2)))
    await make_verifier().verify(envelope)
    await make_verifier(max_age=datetime.timedelta(hours=3)).verify(envelope)

    with pytest.raises(VerificationFailed, match="old"):
        await make_verifier(max_age=datetime.timedelta(hours=1)).verify(envelope)


def _ec_certificate_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"<html>Not a certificate</html>",
        b"",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "ec",
        "huge",
    ],
)
async def test_verify_rejects_a_body_that_is_not_an_rsa_certificate_and_does_not_cache_it(
    signer, sns_host, verifier, body
):
    if body == "ec":
        body = _ec_certificate_pem()
    elif body == "huge":
        body = signer.pem + b"\n" * 100_000
    sns_host.certificate_pem = body
    envelope = signed_envelope(signer)

    with pytest.raises(VerificationFailed, match="certificate"):
        await verifier.verify(envelope)

    sns_host.certificate_pem = signer.pem
    await verifier.verify(envelope)
    assert sns_host.requests == [CERT_PATH, CERT_PATH]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, VerificationFailed),
        (403, VerificationFailed),
        (302, VerificationFailed),
        (500, CertificateUnavailable),
        (503, CertificateUnavailable),
    ],
)
async def test_verify_maps_a_certificate_host_error_and_does_not_cache_it(signer, sns_host, verifier, status, error):
    sns_host.status = status
    envelope = signed_envelope(signer)

    with pytest.raises(error, match=str(status)):
        await verifier.verify(envelope)

    sns_host.status = 200
    await verifier.verify(envelope)
    assert sns_host.requests == [CERT_PATH, CERT_PATH]


@pytest.mark.asyncio
async def test_verify_gives_up_on_a_hanging_certificate_host_and_retries_later(signer, sns_host, make_verifier):
    verifier = make_verifier(fetch_timeout=0.2)
    sns_host.delay = 10
    envelope = signed_envelope(signer)

    started = time.monotonic()
    with pytest.raises(CertificateUnavailable):
        await verifier.verify(envelope)
    assert time.monotonic() - started < 2

    sns_host.delay = 0
    await verifier.verify(envelope)
    assert sns_host.requests == [CERT_PATH, CERT_PATH]


@pytest.mark.asyncio
async def test_verify_reports_an_unreachable_certificate_host_as_unavailable(signer, session):
    async with FakeSnsHost(signer.pem) as gone:
        closed_url = gone.url
    verifier = SnsVerifier(session, topic_arns=frozenset({TOPIC_ARN}), endpoint_url=closed_url, fetch_timeout=0.5)

    with pytest.raises(CertificateUnavailable):
        await verifier.verify(signed_envelope(signer))


@pytest.mark.asyncio
async def test_verify_fetches_a_certificate_once_for_many_messages(signer, sns_host, verifier):
    for version in ["1", "2", "1", "2", "2"]:
        await verifier.verify(signed_envelope(signer, signature_version=version))

    assert sns_host.requests == [CERT_PATH]


@pytest.mark.asyncio
async def test_concurrent_verifies_share_one_fetch(signer, sns_host, verifier):
    sns_host.delay = 0.2
    envelopes = [signed_envelope(signer) for _ in range(10)]

    await asyncio.gather(*(verifier.verify(envelope) for envelope in envelopes))

    assert sns_host.requests == [CERT_PATH]


@pytest.mark.asyncio
async def test_concurrent_verifies_share_one_failure_then_retry(signer, sns_host, verifier):
    sns_host.delay = 0.2
    sns_host.status = 500

    results = await asyncio.gather(
        *(verifier.verify(signed_envelope(signer)) for _ in range(5)), return_exceptions=True
    )

    assert all(isinstance(result, CertificateUnavailable) for result in results)
    assert sns_host.requests == [CERT_PATH]
    sns_host.delay, sns_host.status = 0, 200
    await verifier.verify(signed_envelope(signer))
    assert sns_host.requests == [CERT_PATH, CERT_PATH]


@pytest.mark.asyncio
async def test_certificate_cache_is_bounded_and_least_recently_used(signer, sns_host, make_verifier):
    verifier = make_verifier(cache_size=2)
    urls = {name: f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{name}.pem" for name in "abc"}

    for name in ["a", "b", "a", "c", "a", "b", "c"]:
        await verifier.verify(signed_envelope(signer, cert_url=urls[name]))

    # a, b fetched; a cached; c evicts b; a cached; b evicts c; c evicts a.
    fetched = [path.removeprefix("/SimpleNotificationService-").removesuffix(".pem") for path in sns_host.requests]
    assert fetched == ["a", "b", "c", "b", "c"]


# confirm_subscription


@pytest.mark.asyncio
async def test_confirm_subscription_gets_the_subscribe_url_through_the_endpoint(signer, sns_host, verifier):
    envelope = parse_envelope(wire(signed_envelope(signer, "SubscriptionConfirmation")))
    await verifier.verify(envelope)

    await verifier.confirm_subscription(envelope)

    parts = urlsplit(SUBSCRIBE_URL)
    assert sns_host.confirmations == [f"{parts.path}?{parts.query}"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://evil.example/?Action=ConfirmSubscription&Token=1",
        "https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription&Token=1",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=1",
        "https://sns.us-east-1.amazonaws.com@evil.example/?Action=ConfirmSubscription&Token=1",
        "https://sns.us-east-1.amazonaws.com:8080/?Action=ConfirmSubscription&Token=1",
    ],
)
async def test_confirm_subscription_refuses_a_foreign_subscribe_url_without_fetching(
    signer, sns_host, verifier, subscribe_url
):
    envelope = signed_envelope(signer, "SubscriptionConfirmation", subscribe_url=subscribe_url)

    with pytest.raises(VerificationFailed, match="URL"):
        await verifier.confirm_subscription(envelope)
    assert sns_host.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("type_", "topic_arn"),
    [("UnsubscribeConfirmation", TOPIC_ARN), ("Notification", TOPIC_ARN), ("SubscriptionConfirmation", FOREIGN_TOPIC)],
)
async def test_confirm_subscription_refuses_other_types_and_foreign_topics(
    signer, sns_host, verifier, type_, topic_arn
):
    # Visiting an UnsubscribeConfirmation's SubscribeURL would subscribe us again.
    envelope = signed_envelope(signer, type_, topic_arn=topic_arn)
    envelope.setdefault("SubscribeURL", SUBSCRIBE_URL)

    with pytest.raises(VerificationFailed):
        await verifier.confirm_subscription(envelope)
    assert sns_host.requests == []


@pytest.mark.asyncio
async def test_confirm_subscription_does_not_follow_a_redirect(signer, sns_host, verifier):
    sns_host.redirect_to = "/followed"
    envelope = signed_envelope(signer, "SubscriptionConfirmation")

    with pytest.raises(ConfirmationFailed, match="302"):
        await verifier.confirm_subscription(envelope)
    assert len(sns_host.requests) == 1
    assert "/followed" not in sns_host.requests


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 503, 404])
async def test_confirm_subscription_fails_retryably_on_an_error_status(signer, sns_host, verifier, status):
    sns_host.status = status
    envelope = signed_envelope(signer, "SubscriptionConfirmation")

    with pytest.raises(ConfirmationFailed, match=str(status)):
        await verifier.confirm_subscription(envelope)
    assert len(sns_host.confirmations) == 1


@pytest.mark.asyncio
async def test_confirm_subscription_gives_up_on_a_hanging_host(signer, sns_host, make_verifier):
    sns_host.delay = 10
    envelope = signed_envelope(signer, "SubscriptionConfirmation")

    started = time.monotonic()
    with pytest.raises(ConfirmationFailed):
        await make_verifier(fetch_timeout=0.2).confirm_subscription(envelope)
    assert time.monotonic() - started < 2
