"""Every field is bounded before anything parses it, and no id reaches the database as something it refuses: the same
typed answer on SQLite and PostgreSQL, never INTERNAL, and nothing changes."""

import json
import threading

import grpc
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core import addresses
from gateway.store.models import Contact, Message, database
from support.sns_signing import signed_envelope
from tests.rpc import error_info, rpc_failure, settled


def send_request(**overrides) -> pb.SendEmailRequest:
    fields = {"to": "alice@example.org", "subject": "Hi", "text_body": "Hello"} | overrides
    return pb.SendEmailRequest(**fields)


def violations(call, request) -> dict[str, str]:
    code, _, details = rpc_failure(call, request, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(details).reason == "INVALID_REQUEST"
    return {v.field: v.description for v in details["BadRequest"][0].field_violations}


def rows() -> tuple[int, int]:
    with database.connection_context():
        return Contact.select().count(), Message.select().count()


# --- bounded before parsed --------------------------------------------------------------------------------


@pytest.mark.one_database
def test_a_long_run_of_spaces_in_an_address_is_refused_and_stalls_no_other_call(gateway, ses):
    """60 KB of spaces between two words took the address regex 6.5 s, holding every other RPC of the process."""
    hostile = send_request(to="a" + " " * 60_000 + "b <alice@example.org>")
    answers = []
    senders = [
        threading.Thread(target=lambda: answers.append(violations(gateway.SendEmail, hostile))) for _ in range(8)
    ]
    for sender in senders:
        sender.start()
    ordinary = gateway.SendEmail(send_request(), timeout=5)  # an ordinary call beside them meets its deadline
    for sender in senders:
        sender.join()

    assert answers == [{"to": f"longer than {addresses.MAX_ADDRESS_FIELD} characters"}] * 8
    assert settled(gateway, ordinary.message_id).state == pb.MESSAGE_STATE_SENT
    assert len(ses.sent) == 1


@pytest.mark.one_database
def test_the_worst_bounded_address_is_parsed_and_refused(gateway, ses):
    name = " " * (addresses.MAX_ADDRESS_FIELD - 25)
    assert violations(gateway.SendEmail, send_request(to=f"x{name}x <@example.org>")).keys() == {"to"}
    assert ses.sent == []


@pytest.mark.one_database
def test_refused_huge_addresses_are_not_kept_in_the_address_cache(gateway):
    """150 refused 1 MB addresses grew the process by 176 MB: the cache kept every refused input."""
    before = addresses._parse_bounded.cache_info().currsize
    for i in range(150):
        violations(gateway.SendEmail, send_request(to=f"{i}" + "x" * 1_000_000 + "@example.org"))
    assert addresses._parse_bounded.cache_info().currsize == before


@pytest.mark.one_database
@pytest.mark.parametrize(
    "overrides, field, description",
    [
        ({"subject": "x" * 1_000_000}, "subject", "longer than 900 characters"),
        ({"from_address": "x" * 100_000 + "@example.com"}, "from_address", "longer than 536 characters"),
        ({"reply_to": "Name <" + "x" * 100_000 + ">"}, "reply_to", "longer than 536 characters"),
        ({"tags": {f"t{i}": "v" for i in range(41)}}, "tags", "at most 40 tags"),
        ({"tags": {"n" * 100_000: "v"}}, "tags[" + "n" * 64 + "…]", "names and values need 1-256 ASCII"),
        ({"tags": {"name": "v" * 257}}, "tags[name]", "names and values need 1-256 ASCII"),
    ],
)
def test_every_string_field_is_capped_by_its_limit(gateway, ses, overrides, field, description):
    found = violations(gateway.SendEmail, send_request(**overrides))

    assert list(found) == [field]
    assert found[field].startswith(description)
    assert ses.sent == []


@pytest.mark.one_database
def test_get_contact_status_caps_the_address_before_parsing(gateway):
    found = violations(gateway.GetContactStatus, pb.GetContactStatusRequest(email="a" + " " * 60_000 + "b@example.org"))
    assert found == {"email": f"longer than {addresses.MAX_ADDRESS_FIELD} characters"}


# --- hostile ids: one typed answer on both databases ---------------------------------------------------------


@pytest.mark.parametrize("request_id", ["order\x00-1", "r" * 129, "r" * 200, "ordér-1", "tab\tid"])
def test_a_request_id_the_database_cannot_hold_is_invalid_argument(gateway, ses, request_id):
    """PostgreSQL refused a NUL or a 200-character request_id: INTERNAL there, accepted on SQLite."""
    found = violations(gateway.SendEmail, send_request(request_id=request_id))

    assert found == {"request_id": "1-128 printable ASCII characters (a UUID is a good choice)"}
    assert ses.sent == [] and rows() == (0, 0)


def test_a_128_character_printable_request_id_is_accepted(gateway, ses):
    request_id = "".join(chr(32 + i % 95) for i in range(128))
    first = gateway.SendEmail(send_request(request_id=request_id))
    assert gateway.SendEmail(send_request(request_id=request_id)) == first
    assert rows() == (1, 1)


@pytest.mark.parametrize("contact_id", ["x\x00" * 11, "c" * 200, "not-a-contact-id", "ü" * 22, ""])
def test_a_contact_id_that_is_not_one_is_invalid_argument(gateway, contact_id):
    found = violations(gateway.GetContactStatus, pb.GetContactStatusRequest(contact_id=contact_id))
    assert found == {"contact_id": "not a contact id (22 URL-safe characters)"}


@pytest.mark.parametrize("message_id", ["m\x00" * 11, "m" * 129, "with space", "ü" * 10, ""])
def test_a_message_id_that_cannot_be_one_is_invalid_argument(gateway, message_id):
    found = violations(gateway.GetMessage, pb.GetMessageRequest(message_id=message_id))
    assert found == {"message_id": "not a message id (as SendEmail returns it)"}


@pytest.mark.parametrize("email", ["a\x00@example.org", "nobody\x00"])
def test_an_address_with_a_nul_is_invalid_argument(gateway, email):
    assert list(violations(gateway.GetContactStatus, pb.GetContactStatusRequest(email=email))) == ["email"]


# --- the sidecar: ids from outside never reach the database as they came --------------------------------------


@pytest.mark.parametrize("message_id", ["m" * 200, "id\x00nul", "with space", ""])
async def test_an_sns_message_id_that_cannot_be_stored_is_bad_request(make_sidecar, signer, message_id):
    sidecar = await make_sidecar()
    envelope = signed_envelope(signer)
    envelope["MessageId"] = message_id  # refused before the signature is even checked

    response = await sidecar.post("/sns", data=json.dumps(envelope))

    assert response.status == 400
    assert "MessageId" in await response.text()
    assert rows() == (0, 0)


@pytest.mark.one_database
@pytest.mark.parametrize("path", ["%00" * 22, "a%00" + "b" * 19, "x" * 4000])
async def test_unsubscribe_paths_that_are_not_ids_are_not_found(make_sidecar, path):
    sidecar = await make_sidecar()
    for method in (sidecar.get, sidecar.post):
        assert (await method(f"/unsubscribe/{path}")).status == 404
    assert rows() == (0, 0)
