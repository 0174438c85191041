"""Hostile input, property-based (hypothesis): SendEmail over real gRPC with every field attacked, POST /sns with
random and mutated envelopes, the unsubscribe routes with random paths and forms; plus fixed cases that the fuzz
may miss in a short run (wrong JSON types at every key, deep nesting, malformed forms), and the sidecar's size limit
and body timeout over raw sockets.

The properties: never a 5xx, UNKNOWN or INTERNAL; never a status change, feedback event or subscription
confirmation from a body that SNS did not sign; never a malformed MIME message reaching SES; slow and oversized
bodies cut off. The number of examples comes from a hypothesis settings profile: by default "hostile-input" (80
per test, seconds in all); `HYPOTHESIS_PROFILE=soak` runs 5,000 per test. Failing examples are kept under
.pytest_cache/hypothesis and replayed first on the next run."""

import asyncio
import base64
import binascii
import collections
import dataclasses
import datetime
import email
import email.header
import email.policy
import itertools
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from yarl import URL

from feedback_http.config import FeedbackSettings
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.store.contacts import get_or_create_contact
from gateway.store.models import Contact, ContactStatus, FeedbackEvent, StatusChange, database
from support import ses_samples
from support.sns_signing import CERT_URL, SUBSCRIBE_URL, TOPIC_ARN, signed_envelope, sns_timestamp
from tests.rpc import error_info, rpc_failure, settled

# --- hypothesis profiles ---------------------------------------------------------------------------------------

settings.register_profile(
    "hostile-input",
    max_examples=80,
    deadline=None,  # a 1 MB body over gRPC, boto3 and the SES stand-in takes a while; only the answer counts
    suppress_health_check=list(HealthCheck),  # big generated bodies and fixtures shared by all examples are intended
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".pytest_cache" / "hypothesis"),
    print_blob=True,
)
settings.register_profile("soak", parent=settings.get_profile("hostile-input"), max_examples=5_000)
# `make check`'s: the fast tier after each change tries fewer inputs; `make test` (CI) the full 80 per property.
settings.register_profile("check", parent=settings.get_profile("hostile-input"), max_examples=20)
FUZZ = settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "hostile-input")))
# Whether a fuzz test may ask that some input reached a given stage (the signature check, say): with make test's 80
# inputs; make check's 20 may all be refused earlier, by chance.
COVERAGE_ASKED = FUZZ.max_examples >= 80

# Line breaks and C0 controls (tab aside): RFC 5322 header text cannot carry them, so the API refuses them.
HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
INJECTIONS = [
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "\t",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\r\nBcc: victim@example.net",
    "\nCc: victim@example.net\n",
    "\r\n\r\nX-Injected: yes",
]
ENCODED_WORD_LOOKALIKES = ["=?utf-8?q?hello?=", "=?UTF-8?B?SGk=?=", "=?iso-8859-1?q?caf=E9?="]
PUBLIC_BASE_URL = "https://mail.example.com"  # conftest's settings
MAX_LINE = 998  # RFC 5322 2.1.1, octets without CRLF


# --- SendEmail: strategies -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Addr:
    """A generated address field and what the API must make of it: "valid", "invalid" or "unknown"."""

    value: str
    verdict: str
    name: str | None = None  # when accepted, the display name the recipient must see (None: not checked)
    addr: str | None = None  # when accepted, the addr-spec the recipient must see


LONG = 900  # a subject up to this long must be accepted (the documented limit)
MAX_DISPLAY_NAME = 200  # the documented limit of a display name


GOOD_ADDRESSES = [
    "alice@example.org",
    "Bob.Smith+tag@example.com",
    "o'brien@example.co.uk",
    "x@bücher.example",
    "user_1@sub.example.net",
    "a!#$%&*+/=?^_`{|}~-@example.org",
    "zoe@münchen.de",
    "info@例え.jp",
    "X@XN--BCHER-KVA.EXAMPLE",
    "q@ドメイン.テスト",
]
BAD_ADDRESSES = [  # each one is refused, whatever display name it comes with
    "no-at-sign",
    "a@@example.org",
    "a@example..org",
    "two@example.org, three@example.org",
    '"quoted local"@example.org',
    ".a@example.org",
    "a@-example.org",
    "a@localhost",
    "@example.org",
    "a@",
    "a b@example.org",
    "a@[127.0.0.1]",
]
DOMAINS = ["example.org", "example.com", "bücher.example", "xn--bcher-kva.example", "münchen.de", "例え.jp"]
NON_ASCII_LOCAL_PARTS = ["zoë", "用户", "δοκιμή", "josé.garcía", "ü", "аdmin"]  # the last "а" is Cyrillic

# Display names the recipient must see as written: no controls, no angle brackets, not padded or quoted at the ends.
clean_name_chars = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="<>")
clean_names = st.one_of(
    st.text(clean_name_chars, max_size=30),
    st.lists(
        st.sampled_from(['"', "\\", ",", ";", ":", "@", "(", ")", ".", "[", "]", "Zoë", "Ünïcode", "你好", "Jr.", " "]),
        max_size=8,
    ).map("".join),
    st.sampled_from(ENCODED_WORD_LOOKALIKES),
    st.builds(lambda c, n: c * n, st.sampled_from(["N", "Ñ", "你"]), st.integers(900, 10_000)),  # very long names
).filter(lambda n: n == n.strip() and not n.startswith('"') and not n.endswith('"'))

valid_addr_specs = st.one_of(
    st.sampled_from(GOOD_ADDRESSES),
    st.builds(
        "{}@{}".format,
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
        st.sampled_from(DOMAINS),
    ),
)


@st.composite
def valid_addresses(draw) -> Addr:
    spec = draw(valid_addr_specs)
    form = draw(st.sampled_from(["bare", "padded", "angle", "named", "quoted"]))
    if form == "bare":
        return Addr(spec, "valid", "", spec)
    if form == "padded":
        return Addr(f"  {spec}\t ", "valid", "", spec)
    if form == "angle":
        return Addr(f"<{spec}>", "valid", "", spec)
    name = draw(clean_names)
    value = f"{name} <{spec}>" if form == "named" else f'"{name}" <{spec}>'
    # Display names are documented to allow 200 characters; a longer one is refused.
    return Addr(value, "valid" if len(name) <= MAX_DISPLAY_NAME else "invalid", name, spec)


invalid_addresses = st.one_of(
    st.sampled_from(BAD_ADDRESSES),
    st.builds("{}@{}".format, st.sampled_from(NON_ASCII_LOCAL_PARTS), st.sampled_from(DOMAINS)),  # SES cannot send
    st.builds(
        "{} <{}>".format,
        clean_names,
        st.one_of(
            st.sampled_from(BAD_ADDRESSES[:3]),
            st.builds("{}@{}".format, st.sampled_from(NON_ASCII_LOCAL_PARTS), st.sampled_from(DOMAINS)),
        ),
    ),
).map(lambda value: Addr(value, "invalid"))

unknown_addresses = st.one_of(
    st.text(max_size=40),
    st.emails(),
    st.builds("{} <{}>".format, st.text(max_size=20), st.text(max_size=30)),
    st.builds("{}<{}@{}>>".format, st.text(max_size=10), st.text(max_size=10), st.sampled_from(DOMAINS)),
    st.builds("{}@{}".format, st.text(min_size=60, max_size=70, alphabet="abc"), st.sampled_from(DOMAINS)),
).map(lambda value: Addr(value, "unknown"))

addresses = st.one_of(valid_addresses(), valid_addresses(), invalid_addresses, unknown_addresses)
optional_addresses = st.one_of(st.just(Addr("", "valid", None, None)), addresses)

subjects = st.one_of(
    st.text(clean_name_chars, min_size=1, max_size=80),
    st.text(max_size=40),  # anything, controls included
    st.lists(
        st.sampled_from(
            ["Invoice", "Grüße", "你好", "a,b;c", "  ", "\t", "x" * 200, "é" * 100, "😀", *ENCODED_WORD_LOOKALIKES]
        ),
        max_size=12,
    ).map(" ".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "你", "a,", "a "]), st.integers(980, 1_010)),  # at 998
    st.builds(lambda n: "x" * n, st.integers(9_000, 11_000)),  # a 10k line without spaces
    st.sampled_from(["", "   ", "\u3000"]),
)


acceptable_subjects = st.one_of(
    st.text(clean_name_chars, min_size=1, max_size=80),
    st.lists(
        st.sampled_from(["Invoice", "Grüße", "你好", "a,b;c", "\t", "x" * 200, "😀", *ENCODED_WORD_LOOKALIKES]),
        min_size=1,
        max_size=5,
    ).map(" ".join),
    st.builds(lambda c, n: (c * n)[:n], st.sampled_from(["x", "é", "你", "a,", "a "]), st.integers(980, 998)),
).filter(lambda s: s.strip() and not HEADER_UNSAFE.search(s))


def _at_most_1mb(text: str) -> str:
    return text.encode()[:1_000_000].decode(errors="ignore")


bodies = st.one_of(
    st.just(""),
    st.text(),
    st.builds(lambda chunk, n: _at_most_1mb(chunk * n), st.text(min_size=1, max_size=8), st.integers(1, 140_000)),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "你", "=", ".", " ", "😀"]), st.integers(9_000, 11_000)),
    st.lists(
        st.sampled_from(
            ["", ".", "..", "From me", "--boundary--", "=", "=20", "\r", "\r\n", " ", "\t", "x" * 1_000, "Bcc: v@x.net"]
        ),
        max_size=30,
    ).map("\n".join),
)
html_bodies = st.one_of(
    bodies,
    st.builds("<html><body>{}</BODY >{}".format, st.text(max_size=50), st.text(max_size=20)),
    st.builds("<p>{}</p></body></body>".format, st.text(max_size=50)),
)
tag_names = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
any_tag_text = st.one_of(tag_names, st.text(max_size=20), st.sampled_from(["contact_id", "x" * 257, "", "ses:x"]))
tags = st.one_of(
    st.just({}),
    st.dictionaries(tag_names, tag_names, max_size=5),
    st.dictionaries(any_tag_text, any_tag_text, max_size=5),
)


def without_nul(text: str) -> str:
    return text.replace("\x00", "")


# Acceptable but awkward values: every request built from these alone must be sent, and sent well formed.
acceptable = {
    "to": valid_addresses(),
    "from_address": st.one_of(st.just(Addr("", "valid")), valid_addresses()),
    "reply_to": st.one_of(st.just(Addr("", "valid")), valid_addresses()),
    "subject": acceptable_subjects,
    "text_body": st.one_of(st.just(""), bodies.map(without_nul)),
    "html_body": st.one_of(st.just(""), html_bodies.map(without_nul)),
    "tags": st.dictionaries(tag_names.filter(lambda n: n != "contact_id"), tag_names, max_size=5),
    "request_id": st.one_of(st.just(""), st.from_regex(r"[\x20-\x7e]{1,120}", fullmatch=True)),
}
# Anything at all for one field.
hostile = {
    "to": addresses,
    "from_address": optional_addresses,
    "reply_to": optional_addresses,
    "subject": subjects,
    "text_body": bodies,
    "html_body": st.one_of(st.just(""), html_bodies),
    "tags": tags,
    "request_id": st.one_of(st.text(max_size=300), st.sampled_from(["\x00", "r" * 129, "ordér", "tab\tid"])),
}
_request_numbers = itertools.count()


def unique_request_id(fields: dict) -> dict:
    """The request id made unique per example (hypothesis draws the same ones again), keeping its verdict: one of up
    to 128 characters gets a suffix within the limit, a longer one stays as it is."""
    request_id = fields["request_id"]
    if not request_id or len(request_id) > 128:
        return fields
    return fields | {"request_id": f"{request_id[:120]}~{next(_request_numbers)}"}


def injected(draw, value, field: str):
    """value with one of INJECTIONS inserted at a drawn position, and its new verdict for address fields."""
    injection = draw(st.sampled_from(INJECTIONS))
    if field == "tags":
        if not value:
            return {"campaign": injection}
        name = draw(st.sampled_from(sorted(value)))
        return {**value, name: value[name] + injection}
    old = value.value if isinstance(value, Addr) else value
    at = draw(st.integers(0, len(old)))
    new = old[:at] + injection + old[at:]
    if not isinstance(value, Addr):
        return new
    if HEADER_UNSAFE.search(new.strip()):
        return Addr(new, "invalid")
    if not new.strip():
        return Addr(new, "unknown")  # blank: whether a blank from_address means "the default" is not specified
    if new.strip() == old.strip():
        return dataclasses.replace(value, value=new)
    return Addr(new, "invalid" if value.verdict == "invalid" else "unknown")


@st.composite
def send_requests(draw) -> dict:
    """Awkward but acceptable fields; in most examples one or two of them replaced by anything or injected into."""
    fields = {name: draw(strategy) for name, strategy in acceptable.items()}
    if not fields["text_body"] and not fields["html_body"]:
        fields["text_body"] = "Hello"
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        if draw(st.booleans()):
            fields[name] = draw(hostile[name])
        else:
            fields[name] = injected(draw, fields[name], name)
    return fields


def expected_violations(fields: dict) -> tuple[set[str], bool]:
    """(fields that must be refused, whether the whole request is certainly acceptable)."""
    refused = set()
    for name in ("to", "from_address", "reply_to"):
        if fields[name].verdict == "invalid":
            refused.add(name)
    subject = fields["subject"]
    if not subject.strip() or HEADER_UNSAFE.search(subject):
        refused.add("subject")
    if not fields["text_body"] and not fields["html_body"]:
        refused.add("text_body")
    for body in ("text_body", "html_body"):
        if "\x00" in fields[body]:
            refused.add(body)
    tag_ok = re.compile(r"[A-Za-z0-9_-]{1,256}")
    for name, value in fields["tags"].items():
        if (
            name in ("contact_id", "message_id", "priority", "tenant")
            or not tag_ok.fullmatch(name)
            or not tag_ok.fullmatch(value)
        ):
            refused.add(f"tags[{name}]" if len(name) <= 64 else f"tags[{name[:64]}…]")  # the path echoed back is cut
    if fields["request_id"] and not re.fullmatch(r"[\x20-\x7e]{1,128}", fields["request_id"]):
        refused.add("request_id")
    certain = (
        not refused
        and len(subject) <= LONG  # a longer one may be refused, or sent folded
        and all(fields[n].verdict == "valid" for n in ("to", "from_address", "reply_to"))
    )
    return refused, certain


def failure_of(err: grpc.RpcError) -> tuple:
    """(code, message, {detail type: [details]}) of a failed call, read as tests/rpc.py reads them."""

    def call():
        raise err

    return rpc_failure(call)


def to_request(fields: dict) -> pb.SendEmailRequest:
    values = {k: (v.value if isinstance(v, Addr) else v) for k, v in fields.items()}
    return pb.SendEmailRequest(**values)


# --- SendEmail: what a well-formed message is --------------------------------------------------------------------

ALLOWED_TOP_HEADERS = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def collapsed(text: str) -> str:
    return " ".join(text.split())


def ascii_domain(domain: str) -> str:
    return domain.encode("idna").decode().lower()


def rfc2047_display_name(raw_value: str) -> str:
    """The display name of an encoded "=?utf-8?…?= <addr>" header as RFC 2047 reads it: adjacent encoded words join
    without the folding space between them. Python's address parser keeps that space (seen with a 200-character name
    split across two encoded words), which is the oracle's fault, not the message's."""
    decoded = str(email.header.make_header(email.header.decode_header(raw_value)))
    return decoded.rpartition(" <")[0]


def check_address_header(header, field: Addr, envelope_address: str | None, raw_value: str) -> None:
    addresses = header.addresses
    assert len(addresses) == 1, f"{header.name} names {len(addresses)} addresses: {str(header)!r}"
    address = addresses[0]
    assert address.addr_spec.isascii()
    if envelope_address is not None:
        assert address.addr_spec == envelope_address, f"{header.name} is not the address SES sends to/from"
    if field.addr is not None:  # what the caller asked for is known
        local, domain = field.addr.rsplit("@", 1)
        assert address.username == local
        assert address.domain.lower() == ascii_domain(domain)
        seen = rfc2047_display_name(raw_value) if raw_value.startswith("=?") else address.display_name
        assert collapsed(seen) == collapsed(field.name), (
            f"{header.name}: the recipient sees {seen!r}, the caller asked for {field.name!r}"
        )


def check_message(raw: bytes, ses_request, fields: dict, contact_id: str, message_id: str) -> None:
    """The raw MIME SES received is what a strict reader takes for exactly the message asked for."""
    lines = raw.split(b"\r\n")
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b""), "bare CR or LF"
    assert b"\x00" not in raw
    assert raw.isascii(), "8-bit data in a message without an 8bit Content-Transfer-Encoding"
    head, _, _ = raw.partition(b"\r\n\r\n")
    too_long_headers = [line[:80] for line in head.split(b"\r\n") if len(line) > MAX_LINE]
    assert not too_long_headers, f"header lines over {MAX_LINE} octets: {too_long_headers}"
    too_long = [line[:80] for line in lines if len(line) > MAX_LINE]
    assert not too_long, f"body lines over {MAX_LINE} octets: {too_long}"

    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        assert part.defects == [], f"{part.get_content_type()} part: {part.defects}"
        for name, value in part.items():
            assert getattr(value, "defects", ()) == (), f"{name}: {value.defects} in {str(value)[:200]!r}"
    names = [name.lower() for name in message.keys()]
    counts = collections.Counter(names)
    assert set(names) <= ALLOWED_TOP_HEADERS, f"unexpected headers: {set(names) - ALLOWED_TOP_HEADERS}"
    for name in ("from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post", "date", "message-id"):
        assert counts[name] == 1, f"{counts[name]} {name} headers"
    assert counts["reply-to"] == (1 if fields["reply_to"].value.strip() else 0)

    # Equal up to runs of whitespace: readers unfold, and turn U+0085 or U+2028 into a space.
    subject = str(message["Subject"])
    assert collapsed(subject) == collapsed(fields["subject"]), f"the recipient sees the Subject {subject[:200]!r}"
    url = f"{PUBLIC_BASE_URL}/unsubscribe/{contact_id}"
    assert message["List-Unsubscribe"].strip() == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw_values = {name.lower(): value for name, value in message.raw_items()}
    check_address_header(
        message["To"], fields["to"], ses_request.body["Destination"]["ToAddresses"][0], raw_values["to"]
    )
    check_address_header(
        message["From"], fields["from_address"], ses_request.body["FromEmailAddress"], raw_values["from"]
    )
    if fields["reply_to"].value.strip():
        check_address_header(message["Reply-To"], fields["reply_to"], None, raw_values["reply-to"])

    text_body, html_body = fields["text_body"], fields["html_body"]
    parts = {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}
    expected_types = {"text/plain"} if text_body else set()
    expected_types |= {"text/html"} if html_body else set()
    assert set(parts) == expected_types
    if text_body and html_body:
        assert message.get_content_type() == "multipart/alternative"
    if text_body:
        # Line breaks travel as CRLF; SMTP has no bare CR, so a CR on its own is a line break too.
        text = parts["text/plain"].get_content().replace("\r\n", "\n")
        assert text.startswith(re.sub(r"\r\n|\r", "\n", text_body)), "the text part does not start with the text"
        assert url in text
    if html_body:
        assert url in parts["text/html"].get_content()
    assert ses_request.tags == {
        **fields["tags"],
        "contact_id": contact_id,
        "message_id": ses_request.tags["message_id"],
        "priority": "transactional",
    }
    assert ses_request.body["ConfigurationSetName"] == "my-leads-now-config"


# --- SendEmail: the tests ----------------------------------------------------------------------------------------


def test_send_email_with_hostile_fields_is_refused_cleanly_or_sent_well_formed(gateway, ses):
    """Any SendEmail answers OK or INVALID_ARGUMENT (one ErrorInfo, the bad fields named, nothing sent); an OK one
    hands SES exactly one well-formed message carrying exactly what was asked for."""
    outcomes = collections.Counter()

    @FUZZ
    @given(fields=send_requests())
    def send(fields):
        fields = unique_request_id(fields)
        refused, certain = expected_violations(fields)
        before = len(ses.sent)
        try:
            response = gateway.SendEmail(to_request(fields), timeout=60)
        except grpc.RpcError as err:
            code, message, details = failure_of(err)
            outcomes[code.name] += 1
            event(f"SendEmail {code.name}")
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {message}"
            info = error_info(details)  # exactly one, domain mailgateway
            assert info.reason == "INVALID_REQUEST"
            assert "Traceback" not in message
            named = {violation.field for violation in details["BadRequest"][0].field_violations}
            assert refused <= named, f"{refused - named} not named among the violations {named}"
            assert not certain, f"a valid request was refused: {named}"
            assert len(ses.sent) == before, "SES was called for a refused request"
            return
        outcomes["OK"] += 1
        event("SendEmail OK")
        assert not refused, f"{sorted(refused)} should have been refused"
        # Dispatched before the next example starts, so each example counts only its own SES requests.
        assert settled(gateway, response.message_id).state == pb.MESSAGE_STATE_SENT
        assert len(ses.sent) == before + 1
        sent = ses.sent[-1]
        check_message(sent.raw, sent, fields, response.contact_id, response.message_id)

    send()
    assert outcomes["OK"] and outcomes["INVALID_ARGUMENT"], f"the fuzz did not reach both outcomes: {outcomes}"


@pytest.mark.one_database
@pytest.mark.parametrize("field", ["to", "from_address", "reply_to"])
def test_non_ascii_local_part_is_invalid_argument_and_nothing_is_sent(gateway, ses, field):
    """SES cannot send to or from an SMTPUTF8 local part: refused for that field, whatever display name it has."""

    @FUZZ
    @given(
        local=st.sampled_from(NON_ASCII_LOCAL_PARTS),
        domain=st.sampled_from(DOMAINS),
        name=st.one_of(st.just(""), clean_names.filter(lambda n: len(n) < 100)),
    )
    def send(local, domain, name):
        address = f"{name} <{local}@{domain}>" if name else f"{local}@{domain}"
        fields = {"to": "alice@example.org", "subject": "Hi", "text_body": "Hello"} | {field: address}
        request = pb.SendEmailRequest(**fields)
        before = len(ses.sent)

        code, _, details = rpc_failure(gateway.SendEmail, request, timeout=30)

        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(details).reason == "INVALID_REQUEST"
        assert [v.field for v in details["BadRequest"][0].field_violations] == [field]
        assert len(ses.sent) == before

    send()


@pytest.mark.one_database
@pytest.mark.parametrize(
    "megabytes, code",
    [(0.9, grpc.StatusCode.OK), (1.5, grpc.StatusCode.INVALID_ARGUMENT), (2.5, grpc.StatusCode.RESOURCE_EXHAUSTED)],
)
def test_body_size_up_to_and_over_the_message_limit_and_the_grpc_receive_limit(make_gateway, ses, megabytes, code):
    """Within MAILGW_MAX_MESSAGE_BYTES (1 MiB here) a big body is sent well formed; over it, INVALID_ARGUMENT naming
    the body; over the gRPC receive limit that follows it (a MiB more) gRPC itself answers RESOURCE_EXHAUSTED (no
    ErrorInfo: the gateway never saw the call), never UNKNOWN or INTERNAL; nothing is sent."""
    _, gateway = make_gateway(max_message_bytes=1024 * 1024)
    line = "Lorem ipsum dolor sit amet, é 你好 " * 200 + "\n"
    body = line * int(megabytes * 1024 * 1024 / len(line.encode()))
    fields = {
        "to": Addr("alice@example.org", "valid", "", "alice@example.org"),
        "from_address": Addr("", "valid"),
        "reply_to": Addr("", "valid"),
        "subject": "Big",
        "text_body": body,
        "html_body": "",
        "tags": {},
    }
    assert abs(len(body.encode()) / 1024 / 1024 - megabytes) < 0.1

    if code == grpc.StatusCode.OK:
        response = gateway.SendEmail(to_request(fields), timeout=120)
        assert settled(gateway, response.message_id, timeout=60).state == pb.MESSAGE_STATE_SENT
        check_message(ses.sent[0].raw, ses.sent[0], fields, response.contact_id, response.message_id)
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        got, message, details = rpc_failure(gateway.SendEmail, to_request(fields), timeout=120)
        assert got == code, f"{got.name}: {message}"
        [violation] = details["BadRequest"][0].field_violations
        assert violation.field == "text_body" and "(MAILGW_MAX_MESSAGE_BYTES)" in violation.description
        assert ses.sent == []
    else:
        got, message, details = rpc_failure(gateway.SendEmail, to_request(fields), timeout=120)
        assert got == code, f"{got.name}: {message}"
        assert "larger than max" in message
        assert "ErrorInfo" not in details
        assert ses.sent == []


# --- the sidecar: fixtures and helpers ---------------------------------------------------------------------------

SNS_KEYS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Subject",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "UnsubscribeURL",
    "Token",
    "SubscribeURL",
]
JUNK_KEYS = ["SigningCertUrl", "SubscribeUrl", "MessageAttributes", "type", "", "Signature ", "\u0000", "x" * 300]
SIGNED_KEYS = {  # what SNS signs for each Type (plus SignatureVersion and Signature themselves)
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:not-ours"
OTHER_RECIPIENT = "other@example.com"
BYSTANDERS = ["bystander@example.com", "zoë@example.com", OTHER_RECIPIENT]
HOSTILE_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com:8443/x.pem",
    "https://sns.us-east-1.amazonaws.com:99999/x.pem",
    "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.txt",
    "https://[::1/x.pem",
    "file:///etc/passwd",
    "",
    "https://sns.us-east-1.amazonaws.com/%zz.pem",
    "https://sns.us-east-1.amazonaws.com/\x00.pem",
    "https://sns.us-east-1.amazonaws.com/a b\r\nX: y.pem",
    "https://sns.us-east-1.amazonaws.com/" + "a" * 20_000 + ".pem",
    "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-other.pem",
    "https://sns.eu-west-1.amazonaws.com/x.pem?a=1#frag",
]


class Bridge:
    """Runs coroutines on the test's event loop from the thread hypothesis runs in (`@given` runs no coroutines)."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()

    def __call__(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def run(self, function):
        """Run the hypothesis test `function` in a worker thread while this loop serves the app."""
        return await self.loop.run_in_executor(None, function)


async def exchange(client, method: str, url, body: bytes | None = None, headers: dict | None = None):
    async with client.request(method, url, data=body, headers=headers or {}) as response:
        return response.status, await response.read()


def seed_contacts(emails) -> dict[str, str]:
    with database.connection_context():
        return {address: get_or_create_contact(address).contact_id for address in emails}


def database_state() -> dict:
    with database.connection_context():
        return {
            "contacts": {c.email: c.status for c in Contact.select()},
            "changes": [(c.contact.email, c.to_status, c.source) for c in StatusChange.select().join(Contact)],
            "events": [e.notification_id for e in FeedbackEvent.select()],
        }


def sns_headers(content_type: str = "text/plain; charset=UTF-8", message_type: str = "Notification") -> dict:
    return {"Content-Type": content_type, "x-amz-sns-message-type": message_type}


# --- POST /sns: random bodies -----------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.sampled_from(["", "2", "1"])
)
json_junk = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
deep_nesting = st.builds(lambda n: "[" * n + '{"Type": "Notification"}' + "]" * n, st.sampled_from([50, 1_000, 50_000]))
huge_strings = st.builds(lambda chunk, n: chunk * n, st.text(min_size=1, max_size=4), st.integers(1_000, 90_000))
timestamps = st.one_of(
    st.just(sns_timestamp(datetime.datetime.now(datetime.UTC))),
    st.datetimes(
        timezones=st.builds(
            datetime.timezone, st.timedeltas(datetime.timedelta(hours=-23), datetime.timedelta(hours=23))
        )
    ).map(datetime.datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00", "now", ""]),
)
envelope_values = {
    "Type": st.sampled_from(["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation", "notification"]),
    "MessageId": st.one_of(st.uuids().map(str), st.text(max_size=200)),
    "TopicArn": st.sampled_from([TOPIC_ARN, TOPIC_ARN, FOREIGN_TOPIC, TOPIC_ARN.upper(), TOPIC_ARN + " "]),
    "Subject": st.text(max_size=30),
    "Message": st.one_of(st.just(ses_samples.message(ses_samples.bounce_event())), st.text(max_size=50)),
    "Timestamp": timestamps,
    "SignatureVersion": st.sampled_from(["1", "2", "3", "02", ""]),
    "Signature": st.one_of(st.binary(min_size=1, max_size=512).map(lambda b: base64.b64encode(b).decode()), st.text()),
    "SigningCertURL": st.sampled_from([CERT_URL, CERT_URL, *HOSTILE_CERT_URLS]),
    "UnsubscribeURL": st.text(max_size=30),
    "Token": st.text(max_size=30),
    "SubscribeURL": st.sampled_from([SUBSCRIBE_URL, "https://evil.example/confirm", "http://127.0.0.1:1/"]),
}


@st.composite
def envelope_shaped(draw) -> dict:
    """Every SNS key with a plausible or junk value, some dropped, some of another JSON type, junk keys added."""
    document = {key: draw(values) for key, values in envelope_values.items()}
    for key in draw(st.sets(st.sampled_from(SNS_KEYS), max_size=3)):
        if draw(st.booleans()):
            del document[key]
        else:
            document[key] = draw(json_junk)
    for key in draw(st.sets(st.sampled_from(JUNK_KEYS), max_size=2)):
        document[key] = draw(json_junk)
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.sampled_from(SNS_KEYS))] = draw(huge_strings)
    return document


def is_aware_time(text: str) -> bool:
    try:
        return datetime.datetime.fromisoformat(text).utcoffset() is not None
    except ValueError:
        return False


@st.composite
def plausible_envelopes(draw) -> dict:
    """Well-formed envelopes of our topic with made-up signatures: they all reach signature verification."""
    document = {key: draw(values) for key, values in envelope_values.items()}
    document["Type"] = draw(st.sampled_from(sorted(SIGNED_KEYS)))
    document["TopicArn"] = TOPIC_ARN
    document["Timestamp"] = draw(timestamps.filter(is_aware_time))
    return document


def encode_json(document, *, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def invalid_utf8(draw) -> bytes:
    body = encode_json(draw(envelope_shaped()), ascii_only=False)
    at = draw(st.integers(0, len(body)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]))
    return body[:at] + junk + body[at:]


random_bodies = st.one_of(
    st.binary(max_size=2_000),
    invalid_utf8(),
    st.builds(encode_json, json_junk, ascii_only=st.booleans()),
    st.builds(encode_json, envelope_shaped(), ascii_only=st.booleans()),
    st.builds(encode_json, plausible_envelopes(), ascii_only=st.booleans()),
    st.builds(encode_json, plausible_envelopes(), ascii_only=st.booleans()),
    deep_nesting.map(str.encode),
    st.builds(lambda n: b"x" * n, st.sampled_from([262_143, 262_144, 262_145, 400_000])),  # at the size limit
)
content_types = st.sampled_from(
    ["text/plain; charset=UTF-8", "application/json", "", "multipart/form-data", "text/plain; charset=nope"]
)


@pytest.mark.one_database
async def test_sns_random_bodies_get_4xx_and_change_nothing(make_sidecar, sns_host):
    """Random bytes, invalid UTF-8, JSON of every type, nested junk, huge fields, envelope look-alikes: 400, 403 or
    413 (exactly when over max_body_bytes), never 200 or 5xx; afterwards nothing changed, nothing was confirmed."""
    sidecar = await make_sidecar(sns_max_age_seconds=3_600)
    limit = FeedbackSettings().max_body_bytes
    seed_contacts([ses_samples.RECIPIENT, *BYSTANDERS])
    before = database_state()
    bridge = Bridge()
    statuses = collections.Counter()

    @FUZZ
    @given(body=random_bodies, content_type=content_types, message_type=st.sampled_from(["Notification", "junk", ""]))
    def post(body, content_type, message_type):
        status, text = bridge(exchange(sidecar, "POST", "/sns", body, sns_headers(content_type, message_type)))
        statuses[status] += 1
        event(f"POST /sns {status}")
        assert status in (400, 403, 413), f"{status}: {text[:300]!r}"
        assert (status == 413) == (len(body) > limit), f"{len(body)} bytes answered {status}"

    await bridge.run(post)

    assert database_state() == before
    assert sns_host.confirmations == []
    if COVERAGE_ASKED:
        assert statuses[403], f"no example got past parsing to verification: {statuses}"


USED_KEYS = {  # what the sidecar reads of each Type; other keys are dropped unread
    kind: {*keys, "SignatureVersion", "Signature", "SigningCertURL", "Subject", "UnsubscribeURL"}
    for kind, keys in SIGNED_KEYS.items()
}
WRONG_TYPES = [[], {}, ["x"], {"x": "y"}, 1, 1.5, True, None]
FORGED_SIGNATURE = base64.b64encode(bytes(256)).decode()


@pytest.mark.one_database
async def test_sns_wrong_json_type_at_every_key_is_bad_request(make_sidecar, signer):
    """An envelope with a made-up signature and any one key holding a list, object, number, boolean or null
    instead of a string: 400 when the sidecar reads that key, else 403 (the signature); never 5xx, nothing changes."""
    sidecar = await make_sidecar()
    seed_contacts([ses_samples.RECIPIENT])
    before = database_state()
    wrong = []
    for kind in SIGNED_KEYS:
        template = signed_envelope(signer, kind) | {"Signature": FORGED_SIGNATURE}
        for key in SNS_KEYS:
            for value in WRONG_TYPES:
                body = json.dumps(template | {key: value}).encode()
                status, text = await exchange(sidecar, "POST", "/sns", body, sns_headers(message_type=kind))
                expected = 400 if key in USED_KEYS[kind] or key == "Type" else 403
                if status != expected:
                    wrong.append(f"{kind} with {key}={json.dumps(value)}: {status} {text[:80]!r}")
    assert not wrong, f"{len(wrong)} wrong answers:\n" + "\n".join(wrong)
    assert database_state() == before


NESTING = 40_000  # deep, yet the body stays under max_body_bytes


@pytest.mark.one_database
@pytest.mark.parametrize(
    "body",
    [
        b"[" * NESTING + b"]" * NESTING,
        b'{"a":' * NESTING + b"1" + b"}" * NESTING,
        b'{"Type": "Notification", "MessageAttributes": ' + b"[" * NESTING + b"]" * NESTING + b"}",
    ],
    ids=["arrays", "objects", "in-an-unread-key"],
)
async def test_sns_deeply_nested_json_is_bad_request(make_sidecar, body):
    """Nested junk is malformed input (400), not a server error."""
    sidecar = await make_sidecar()
    assert len(body) <= FeedbackSettings().max_body_bytes

    status, text = await exchange(sidecar, "POST", "/sns", body, sns_headers())

    assert status == 400, f"{status}: {text[:200]!r}"


# --- POST /sns: mutated genuine envelopes -----------------------------------------------------------------------


def retimed(timestamp: str, draw) -> str:
    moment = datetime.datetime.fromisoformat(timestamp)
    shift = draw(st.sampled_from([0, 1, -86_400_000]).map(lambda ms: datetime.timedelta(milliseconds=ms)))
    spelling = draw(st.sampled_from(["sns", "iso", "offset"]))
    moment += shift
    if spelling == "sns":
        return sns_timestamp(moment)
    if spelling == "iso":
        return moment.isoformat()
    return moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()


@st.composite
def mutations(draw, genuine: dict) -> bytes:
    """A genuine envelope, changed on purpose: dict-level mutations, then sometimes byte-level ones."""
    document = dict(genuine)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(SNS_KEYS + JUNK_KEYS))
        op = draw(
            st.sampled_from(
                ["flip", "flip", "drop", "set", "retype", "version", "retime", "cert", "reencode", "lambda", "junk"]
            )
        )
        if op == "flip" and isinstance(document.get(key), str) and document[key]:
            value = document[key]
            at = draw(st.integers(0, len(value) - 1))
            document[key] = value[:at] + draw(st.characters(exclude_categories=("Cs",))) + value[at + 1 :]
        elif op == "drop":
            document.pop(key, None)
        elif op == "set":
            document[key] = draw(st.one_of(json_junk, envelope_values.get(key, json_junk)))
        elif op == "retype":
            document["Type"] = draw(
                st.sampled_from(["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation", "notification"])
            )
        elif op == "version":
            document["SignatureVersion"] = draw(st.sampled_from(["1", "2", "3", "02", " 2", "", 2, None]))
        elif op == "retime" and isinstance(document.get("Timestamp"), str):
            document["Timestamp"] = retimed(genuine["Timestamp"], draw)
        elif op == "cert":
            document["SigningCertURL"] = draw(st.sampled_from(HOSTILE_CERT_URLS))
        elif op == "reencode" and isinstance(document.get("Message"), str):
            try:
                parsed = json.loads(document["Message"])
            except ValueError:
                continue
            document["Message"] = json.dumps(parsed, indent=draw(st.sampled_from([None, 0, 2])), sort_keys=True)
        elif op == "lambda":
            document["SigningCertUrl"] = document.pop("SigningCertURL", CERT_URL)
        elif op == "junk":
            document[key if key in JUNK_KEYS else "x-junk"] = draw(st.one_of(json_junk, huge_strings))
    body = encode_json(document, ascii_only=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["bit", "truncate", "insert", "duplicate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "bit" and body:
            body = body[:at] + bytes([body[at] ^ (1 << draw(st.integers(0, 7)))]) + body[at + 1 :]
        elif op == "truncate":
            body = body[:at]
        elif op == "insert":
            body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
        elif op == "duplicate" and body.endswith(b"}"):
            key = draw(st.sampled_from(SIGNED_KEYS["SubscriptionConfirmation"] + ("SignatureVersion", "Signature")))
            body = body[:-1] + b', "' + key.encode() + b'": ' + json.dumps(draw(json_junk)).encode() + b"}"
    return body


MISSING = object()


def carries_the_genuine_signature(body: bytes, genuine: dict) -> bool:
    """Whether the body still holds exactly what SNS signed of `genuine`: its signed keys (present or absent alike),
    its SignatureVersion and its signature bytes. Unsigned keys (certificate URL, junk) may differ."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(document, dict):
        return False
    for key in (*SIGNED_KEYS[genuine["Type"]], "SignatureVersion"):
        if document.get(key, MISSING) != genuine.get(key, MISSING) or type(document.get(key)) is not type(
            genuine.get(key)
        ):
            return False
    try:
        return base64.b64decode(document["Signature"], validate=True) == base64.b64decode(genuine["Signature"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return False


@pytest.mark.one_database
async def test_sns_mutated_genuine_envelopes_are_refused_and_change_nothing(make_sidecar, signer, sns_host):
    """Genuinely signed envelopes (a bounce and a subscription confirmation) with a byte of a signed field flipped,
    keys dropped or retyped, Type/SignatureVersion/Timestamp changed, hostile certificate URLs, junk keys, broken
    bytes: 400, 403 or 413, never 5xx, and 200 only when what SNS signed is intact. Only such envelopes may change a
    status, record an event or visit a SubscribeURL; the unmutated envelopes still work afterwards."""
    sidecar = await make_sidecar()
    limit = FeedbackSettings().max_body_bytes
    seed_contacts([ses_samples.RECIPIENT, *BYSTANDERS])
    before = database_state()
    bounce = ses_samples.bounce_event(
        "Permanent", "General", [ses_samples.bounced_recipient(), ses_samples.bounced_recipient(OTHER_RECIPIENT)]
    )
    genuine = {
        "Notification": signed_envelope(signer, message=ses_samples.message(bounce), subject="bounce"),
        "SubscriptionConfirmation": signed_envelope(signer, "SubscriptionConfirmation"),
    }
    bridge = Bridge()
    accepted = collections.Counter()
    statuses = collections.Counter()

    @FUZZ
    @given(data=st.data(), kind=st.sampled_from(sorted(genuine)))
    def post(data, kind):
        body = data.draw(mutations(genuine[kind]), label="body")
        intact = carries_the_genuine_signature(body, genuine[kind])
        status, text = bridge(exchange(sidecar, "POST", "/sns", body, sns_headers(message_type=kind)))
        statuses[status] += 1
        event(f"POST /sns {status} {'signature intact' if intact else 'forged'}")
        assert status in ((200, 400, 403, 413) if intact else (400, 403, 413)), f"{status}: {text[:300]!r}"
        assert (status == 413) == (len(body) > limit), f"{len(body)} bytes answered {status}"
        if status == 200:
            accepted[kind] += 1

    await bridge.run(post)

    after = database_state()
    if not accepted["Notification"]:
        assert after == before, "an unverified body changed the database"
    else:  # only the genuine bounce (intact signature, unsigned keys changed) may have been applied
        assert set(after["events"]) == {genuine["Notification"]["MessageId"]}
        assert {email for email, _, _ in after["changes"]} <= {ses_samples.RECIPIENT, OTHER_RECIPIENT}
        assert set(after["contacts"]) == set(before["contacts"])
    assert len(sns_host.confirmations) == accepted["SubscriptionConfirmation"]
    assert set(sns_host.confirmations) <= {SUBSCRIBE_URL.removeprefix("https://sns.us-east-1.amazonaws.com")}
    if COVERAGE_ASKED:
        assert statuses[403], f"no mutation reached signature verification: {statuses}"

    # The untouched envelopes are accepted: the checks above could see a change.
    for kind, envelope in genuine.items():
        status, _ = await exchange(
            sidecar, "POST", "/sns", json.dumps(envelope).encode(), sns_headers(message_type=kind)
        )
        assert status == 200
    final = database_state()
    assert final["contacts"][ses_samples.RECIPIENT] is ContactStatus.BOUNCED
    assert final["contacts"]["bystander@example.com"] is ContactStatus.ACTIVE
    assert len(sns_host.confirmations) == accepted["SubscriptionConfirmation"] + 1


# --- /unsubscribe/{contact_id}: random paths and forms ---------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BENIGN_FORMS = [
    (None, None),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=Web-Form"),
    ("application/x-www-form-urlencoded", b""),
    ("text/plain", b"List-Unsubscribe=One-Click"),
]
hostile_forms = st.tuples(
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=nope",
            "application/x-www-form-urlencoded; charset=utf-16",
            "multipart/form-data",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=xyz",
        ]
    ),
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(
            [
                b"\xff\xfe=\xc3(",
                b"List-Unsubscribe=%FF%FE",
                b"%",
                b"a=%zz&&&==",
                b"--xyz\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--xyz--\r\n",
                b'--xyz\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--xyz--\r\n',
                b"--xyz\r\n\r\n",
                b"--xyz--",
            ]
        ),
    ),
)


@st.composite
def contact_ids(draw, real: list[str], *, include_real: bool) -> str:
    """A path segment: a real contact id (when include_real), random text, or one close to a real id."""
    kinds = ["text", "id-like", "mutated", "padded"] + (["real", "real"] if include_real else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "real":
        return draw(st.sampled_from(real))
    if kind == "text":
        segment = draw(st.text(min_size=1, max_size=40))
    elif kind == "id-like":
        segment = draw(st.text(ID_ALPHABET, min_size=22, max_size=22))
    elif kind == "mutated":  # one character of a real id changed: another id, however close
        original = draw(st.sampled_from(real))
        at = draw(st.integers(0, 21))
        swap = draw(st.sampled_from([c for c in ID_ALPHABET + "é%./" if c != original[at]]))
        segment = original[:at] + swap + original[at + 1 :]
    else:
        original = draw(st.sampled_from(real))
        segment = draw(st.sampled_from([f"{original} ", f" {original}", f"{original}x", original[:-1], f"{original}/"]))
    return segment


@pytest.mark.one_database
async def test_unsubscribe_routes_with_random_paths_and_forms(make_sidecar):
    """GET and POST /unsubscribe/<random segment> with benign and hostile forms: never 5xx; 404 for every id that
    does not exist (400 allowed only for a hostile form); GET of a real id shows the page; nothing changes."""
    sidecar = await make_sidecar()
    real = list(seed_contacts(["reader@example.com", "other-reader@example.com"]).values())
    before = database_state()
    bridge = Bridge()
    statuses = collections.Counter()

    @FUZZ
    @given(
        data=st.data(),
        method=st.sampled_from(["GET", "POST"]),
        form=st.one_of(st.sampled_from(BENIGN_FORMS), hostile_forms),
        query=st.one_of(st.just(""), st.text(max_size=20).map(lambda q: "?" + quote(q, safe="=&"))),
    )
    def visit(data, method, form, query):
        # POST names only ids that do not exist (a real one would unsubscribe), some one character off a real one.
        segment = data.draw(contact_ids(real, include_real=method == "GET"), label="segment")
        exists = segment in real
        assume(method == "GET" or not exists)
        content_type, body = form
        headers = {"Content-Type": content_type} if content_type else {}
        url = URL(f"/unsubscribe/{quote(segment, safe='')}{query}", encoded=True)
        status, page = bridge(exchange(sidecar, method, url, body if method == "POST" else None, headers))
        statuses[status] += 1
        event(f"{method} /unsubscribe {status}")
        assert status < 500, f"{method} {url} ({content_type!r}, {body!r}): {status} {page[:300]!r}"
        if exists:
            assert status == 200 and b"<button" in page
        elif method == "GET" or form in BENIGN_FORMS:
            assert status == 404, f"{method} {url}: {status}"
        else:
            assert status in (400, 404), f"{method} {url} ({content_type!r}, {body!r}): {status}"

    await bridge.run(visit)

    assert database_state() == before
    assert statuses[404], statuses

    # The real ids still work: the checks above could see a change.
    for method in ("GET", "POST"):
        status, _ = await exchange(sidecar, method, f"/unsubscribe/{real[0]}", b"List-Unsubscribe=One-Click", FORM)
        assert status == 200
    assert database_state()["contacts"]["reader@example.com"] is ContactStatus.UNSUBSCRIBED


MALFORMED_FORMS = [
    ("application/x-www-form-urlencoded", b"\x80"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=%FF%FE"),
    ("application/x-www-form-urlencoded; charset=nope", b"List-Unsubscribe=One-Click"),
    ("application/x-www-form-urlencoded; charset=utf-16", b"List-Unsubscribe=One-Click"),
    ("multipart/form-data", b"List-Unsubscribe=One-Click"),
    ("multipart/form-data; boundary=", b"--\r\n"),
    ("multipart/form-data; boundary=xyz", b"not multipart at all"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--xyz--\r\n"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\n"),
]


@pytest.mark.one_database
async def test_unsubscribe_post_with_a_malformed_form_is_a_client_error(make_sidecar):
    """A POST whose form cannot be read (bad bytes, unknown charset, broken multipart) is never a 5xx: 400 or 404
    for an unknown id, 400 or 200 (the POST itself unsubscribes) for a real one; no other contact changes."""
    sidecar = await make_sidecar()
    ids = seed_contacts(["reader@example.com", "bystander@example.com"])
    wrong = []
    for contact_id, allowed in ((NOBODY, (400, 404)), (ids["reader@example.com"], (200, 400))):
        for content_type, body in MALFORMED_FORMS:
            headers = {"Content-Type": content_type}
            status, _ = await exchange(sidecar, "POST", f"/unsubscribe/{contact_id}", body, headers)
            if status not in allowed:
                wrong.append(f"/unsubscribe/{contact_id} {content_type} {body[:40]!r}: {status}, not {allowed}")
    assert not wrong, f"{len(wrong)} wrong answers:\n" + "\n".join(wrong)
    assert database_state()["contacts"]["bystander@example.com"] is ContactStatus.ACTIVE


# --- limits and slow clients, over raw sockets -------------------------------------------------------------------

BODY_TIMEOUT = 0.5
ANSWER_WITHIN = BODY_TIMEOUT + 5  # the timeout plus generous scheduling slack
NOBODY = "A" * 22  # a well-formed id no contact has


async def read_answer(reader: asyncio.StreamReader) -> int | str:
    """The status code of the server's answer, or "closed" when it closed the connection without one."""
    try:
        line = await reader.readline()
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    if not line:
        return "closed"
    return int(line.split()[1])


def request_head(path: str, content_type: str, *, length: int | None) -> bytes:
    """A POST's request line and headers; length None: chunked transfer coding."""
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: mail.example.com\r\nContent-Type: {content_type}\r\n{framing}\r\n").encode()


ROUTES = {"/sns": "text/plain; charset=UTF-8", f"/unsubscribe/{NOBODY}": "application/x-www-form-urlencoded"}


@pytest.mark.one_database
@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize(
    "framing, size, expected",
    [
        ("content-length", 1024, {"/sns": 400, f"/unsubscribe/{NOBODY}": 404}),  # exactly the limit: read
        ("content-length", 1025, 413),
        ("content-length", 64 * 1024, 413),
        ("chunked", 64 * 1024, 413),
    ],
)
async def test_oversized_body_is_cut_off_with_413(make_sidecar, path, framing, size, expected):
    """A body over max_body_bytes is answered 413, with or without a Content-Length; one at the limit is read."""
    sidecar = await make_sidecar(max_body_bytes=1024)
    body = b"List-Unsubscribe=" + b"x" * (size - 17)
    if framing == "chunked":
        head = request_head(path, ROUTES[path], length=None)
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[i : i + 4096] for i in range(0, size, 4096)))
        payload += b"0\r\n\r\n"
    else:
        head, payload = request_head(path, ROUTES[path], length=size), body
    reader, writer = await asyncio.open_connection(sidecar.server.host, sidecar.server.port)
    try:
        writer.write(head + payload)
        await writer.drain()
        answer = await asyncio.wait_for(read_answer(reader), 10)
    finally:
        writer.close()
    assert answer == (expected[path] if isinstance(expected, dict) else expected)


async def trickle(writer: asyncio.StreamWriter) -> None:
    """One byte every 0.1 s: never idle long, never done."""
    while True:
        await asyncio.sleep(0.1)
        writer.write(b"x")
        await writer.drain()


@pytest.mark.one_database
@pytest.mark.parametrize(
    "path, pace",
    [
        ("/sns", "stops"),
        ("/sns", "trickles"),
        ("/sns", "declares-too-much"),
        (f"/unsubscribe/{NOBODY}", "stops"),
        (f"/unsubscribe/{NOBODY}", "trickles"),
    ],
)
async def test_slow_client_is_cut_off_by_the_body_timeout(make_sidecar, path, pace):
    """A client that sends the headers and a little of its body, then stops (or trickles a byte at a time, or
    declares far more than the limit), is answered 408/400 (413 for the over-long declaration) or disconnected
    within MAILGW_HTTP_BODY_TIMEOUT_SECONDS instead of holding a handler forever."""
    sidecar = await make_sidecar(environ={"MAILGW_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)})
    declared = 10**12 if pace == "declares-too-much" else 100_000  # 100 kB is under max_body_bytes
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(sidecar.server.host, sidecar.server.port)
    dripping = None
    try:
        writer.write(request_head(path, ROUTES[path], length=declared) + b"List-Unsubscribe=")
        await writer.drain()
        started = loop.time()
        if pace == "trickles":
            dripping = asyncio.create_task(trickle(writer))
        try:
            answer = await asyncio.wait_for(read_answer(reader), 30)
        except TimeoutError:
            pytest.fail(f"the sidecar neither answered nor closed the connection in 30 s ({pace} client on {path})")
        elapsed = loop.time() - started
    finally:
        if dripping is not None:
            dripping.cancel()
        writer.close()
    allowed = {"closed", 408, 400} | ({413} if pace == "declares-too-much" else set())
    assert answer in allowed, f"{pace} client on {path}: {answer}"
    assert elapsed < ANSWER_WITHIN, f"cut off only after {elapsed:.1f} s (body timeout {BODY_TIMEOUT} s)"
