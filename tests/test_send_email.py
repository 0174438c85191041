"""SendEmail end to end over gRPC: the guard, the queue, composition, errors and idempotency, with SES on loopback."""

import threading

import grpc
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.logs import contact_ref
from gateway.store.contacts import change_status
from gateway.store.models import ContactStatus, StatusChange, database
from support.processes import wait_until
from tests.rpc import error_info, rpc_failure, settled


def send_request(**overrides) -> pb.SendEmailRequest:
    fields = {"to": "alice@example.org", "subject": "Your invoice", "text_body": "Hello Alice"} | overrides
    return pb.SendEmailRequest(**fields)


def sent_through(gateway, request: pb.SendEmailRequest, ses) -> tuple[pb.SendEmailResponse, object]:
    """SendEmail, then the request SES received once the message was dispatched."""
    response = gateway.SendEmail(request)
    assert settled(gateway, response.message_id).state == pb.MESSAGE_STATE_SENT
    [received] = [r for r in ses.sent if r.tags["message_id"] == response.message_id]
    return response, received


def suppress(email: str, status: ContactStatus):
    with database.connection_context():
        return change_status(status, source="test", reason="test", email=email).contact


# --- the Email Guard ---------------------------------------------------------------------------------


def test_send_is_accepted_then_reaches_ses_and_creates_an_active_contact(gateway, ses):
    response = gateway.SendEmail(send_request())

    assert response.message_id.startswith("msg_") and len(response.message_id) == 26  # the gateway's own id
    message = settled(gateway, response.message_id)
    assert message.state == pb.MESSAGE_STATE_SENT
    assert (message.attempts, message.contact_id) == (1, response.contact_id)
    assert [r.message_id for r in ses.sent] == [message.ses_message_id]
    status = gateway.GetContactStatus(pb.GetContactStatusRequest(contact_id=response.contact_id))
    assert status.email == "alice@example.org"
    assert status.status == pb.CONTACT_STATUS_ACTIVE


@pytest.mark.parametrize("status", [ContactStatus.UNSUBSCRIBED, ContactStatus.BOUNCED, ContactStatus.COMPLAINED])
def test_suppressed_recipient_is_refused_before_any_request_reaches_ses(gateway, ses, status):
    contact = suppress("alice@example.org", status)

    # Trimmed and compared case-insensitively: the same person however the caller writes the address.
    code, message, details = rpc_failure(gateway.SendEmail, send_request(to="  Alice <ALICE@Example.ORG> "))

    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert status.value in message
    info = error_info(details)
    assert info.reason == "RECIPIENT_SUPPRESSED"
    assert dict(info.metadata) == {"status": status.value, "contactId": contact.contact_id}
    assert ses.sent == []


def test_contact_ids_are_random_128_bit_url_safe_tokens(gateway):
    ids = {gateway.SendEmail(send_request(to=f"user{i}@example.org")).contact_id for i in range(20)}

    assert len(ids) == 20
    for contact_id in ids:
        assert len(contact_id) == 22  # 16 random bytes, base64url without padding
        assert set(contact_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_same_address_in_other_case_is_the_same_contact(gateway):
    first = gateway.SendEmail(send_request(to="Bob@Example.org"))
    second = gateway.SendEmail(send_request(to=" bob@EXAMPLE.ORG"))

    assert first.contact_id == second.contact_id


# --- composition ---------------------------------------------------------------------------------------


@pytest.mark.one_database
def test_message_carries_footer_link_and_one_click_unsubscribe_headers(gateway, ses):
    response, received = sent_through(gateway, send_request(html_body="<html><body><p>Hello</p></body></html>"), ses)

    url = f"https://mail.example.com/unsubscribe/{response.contact_id}"
    mime = received.mime
    assert mime["List-Unsubscribe"].strip() == f"<{url}>"  # folded onto a continuation line when long
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in mime.iter_parts())
    assert text.startswith("Hello Alice") and url in text
    assert html.index(url) < html.index("</body>")


@pytest.mark.one_database
def test_the_answer_carries_the_unsubscribe_link_that_the_mail_carries(gateway, ses):
    response, received = sent_through(gateway, send_request(request_id="req-link"), ses)

    assert response.unsubscribe_url == f"https://mail.example.com/unsubscribe/{response.contact_id}"
    assert received.mime["List-Unsubscribe"].strip() == f"<{response.unsubscribe_url}>"
    assert response.unsubscribe_url in received.mime.get_content()
    repeated = gateway.SendEmail(send_request(request_id="req-link"))  # AIP-155: the first answer, link included
    assert repeated.unsubscribe_url == response.unsubscribe_url


@pytest.mark.one_database
def test_html_only_message_has_the_footer_link(gateway, ses):
    response, received = sent_through(gateway, send_request(text_body="", html_body="<p>Hi</p>"), ses)

    mime = received.mime
    assert mime.get_content_type() == "text/html"
    assert f"https://mail.example.com/unsubscribe/{response.contact_id}" in mime.get_content()


@pytest.mark.one_database
def test_non_ascii_subject_display_names_and_idn_domain_are_encoded(gateway, ses):
    _, request = sent_through(
        gateway,
        send_request(
            to="Zoë Ünïcode, Jr. <zoe@bücher.example>",
            subject="Grüße — 你好",
            from_address='"Équipe, Support" <support@example.com>',
            text_body="Prix : 10 €",
        ),
        ses,
    )

    head = request.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # every header is RFC 2047 / IDNA encoded
    mime = request.mime
    assert mime["Subject"] == "Grüße — 你好"
    assert mime["To"].addresses[0].display_name == "Zoë Ünïcode, Jr."
    assert mime["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"
    assert mime["From"].addresses[0].display_name == "Équipe, Support"
    assert mime.get_content().startswith("Prix : 10 €")
    assert request.body["Destination"] == {"ToAddresses": ["zoe@xn--bcher-kva.example"]}
    assert request.body["FromEmailAddress"] == "support@example.com"


@pytest.mark.one_database
def test_configuration_set_tags_and_reply_to_reach_ses(gateway, ses):
    request = send_request(reply_to="help@example.com", tags={"campaign": "invoice-2026"})
    response, request = sent_through(gateway, request, ses)

    assert request.body["ConfigurationSetName"] == "my-leads-now-config"
    # Every SES event about the message names its contact, the gateway's message id and its priority.
    expected = {
        "campaign": "invoice-2026",
        "contact_id": response.contact_id,
        "message_id": response.message_id,
        "priority": "transactional",
    }
    assert request.tags == expected
    assert request.mime["Reply-To"] == "help@example.com"
    assert request.mime["From"] == "Example App <noreply@example.com>"


def test_priority_and_tenant_read_back_and_name_the_message_in_every_ses_event(gateway, ses):
    request = send_request(priority=pb.PRIORITY_CRITICAL, tenant="acme-corp_2")

    response, received = sent_through(gateway, request, ses)

    assert received.tags["priority"] == "critical" and received.tags["tenant"] == "acme-corp_2"
    message = settled(gateway, response.message_id)
    assert (message.priority, message.tenant) == (pb.PRIORITY_CRITICAL, "acme-corp_2")
    assert message.HasField("sent_at")
    assert message.created_at.ToDatetime() <= message.sent_at.ToDatetime() <= message.updated_at.ToDatetime()


def test_a_request_from_a_client_before_lanes_is_transactional_and_has_no_tenant(gateway, ses):
    old_client_request = send_request()  # neither field set, as a client built from the earlier proto sends it

    response, received = sent_through(gateway, old_client_request, ses)

    assert received.tags["priority"] == "transactional" and "tenant" not in received.tags
    message = settled(gateway, response.message_id)
    assert (message.priority, message.tenant) == (pb.PRIORITY_TRANSACTIONAL, "")


def test_a_queued_message_has_no_sent_time_yet(make_gateway):
    _, stub = make_gateway(dispatch_workers=0)

    response = stub.SendEmail(send_request(priority=pb.PRIORITY_BULK))

    message = stub.GetMessage(pb.GetMessageRequest(message_id=response.message_id))
    assert message.state == pb.MESSAGE_STATE_QUEUED and message.priority == pb.PRIORITY_BULK
    assert not message.HasField("sent_at")


@pytest.mark.one_database
@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "Hello\r\nBcc: victim@example.net"),
        ("subject", "Hello\nBcc: victim@example.net"),
        ("to", "alice@example.org\r\nBcc: victim@example.net"),
        ("from_address", "Evil\r\nBcc: victim@example.net <noreply@example.com>"),
        ("reply_to", "help@example.com\nBcc: victim@example.net"),
    ],
)
def test_header_injection_is_refused_and_nothing_is_sent(gateway, ses, field, value):
    code, _, details = rpc_failure(gateway.SendEmail, send_request(**{field: value}))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"][0].field_violations] == [field]
    assert ses.sent == []


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.one_database
@pytest.mark.parametrize(
    "overrides, fields",
    [
        ({"to": "not-an-address"}, ["to"]),
        ({"to": ""}, ["to"]),
        ({"subject": "  "}, ["subject"]),
        ({"text_body": "", "html_body": ""}, ["text_body"]),
        ({"tags": {"bad name": "x", "contact_id": "forged"}}, ["tags[bad name]", "tags[contact_id]"]),
        ({"tags": {"message_id": "forged"}}, ["tags[message_id]"]),
        ({"to": "x", "subject": ""}, ["to", "subject"]),
        ({"tags": {"priority": "critical", "tenant": "acme"}}, ["tags[priority]", "tags[tenant]"]),
        ({"priority": 7, "tenant": "Acme Corp"}, ["priority", "tenant"]),
        ({"tenant": "a" * 65}, ["tenant"]),
    ],
)
def test_invalid_request_lists_each_field_violation(gateway, ses, overrides, fields):
    code, _, details = rpc_failure(gateway.SendEmail, send_request(**overrides))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(details).reason == "INVALID_REQUEST"
    assert sorted(v.field for v in details["BadRequest"][0].field_violations) == sorted(fields)
    assert ses.sent == []


@pytest.mark.one_database
def test_missing_sender_without_default_from_is_invalid(settings, ses):
    from dataclasses import replace

    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
    from gateway.process.gateway import create_server

    gateway = create_server(replace(settings, default_from=""))
    gateway.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            code, _, details = rpc_failure(pb_grpc.MailGatewayServiceStub(channel).SendEmail, send_request())
    finally:
        gateway.stop(None)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    violation = details["BadRequest"][0].field_violations[0]
    assert (violation.field, "MAILGW_DEFAULT_FROM" in violation.description) == ("from_address", True)


def test_unknown_contact_is_not_found(gateway):
    for request in (
        pb.GetContactStatusRequest(email="nobody@example.org"),
        pb.GetContactStatusRequest(contact_id="qJIc0f3Xk9aB1cD2eF3gH4"),
    ):
        code, _, details = rpc_failure(gateway.GetContactStatus, request)
        assert code == grpc.StatusCode.NOT_FOUND
        assert error_info(details).reason == "CONTACT_NOT_FOUND"


@pytest.mark.one_database
def test_contact_status_request_without_a_key_is_invalid(gateway):
    code, _, details = rpc_failure(gateway.GetContactStatus, pb.GetContactStatusRequest())

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["BadRequest"][0].field_violations[0].field == "contact"


def test_contact_status_shows_status_reason_and_time(gateway):
    gateway.SendEmail(send_request())
    suppress("alice@example.org", ContactStatus.BOUNCED)

    status = gateway.GetContactStatus(pb.GetContactStatusRequest(email="ALICE@example.org"))

    assert status.status == pb.CONTACT_STATUS_BOUNCED
    assert status.reason == "test"
    with database.connection_context():
        change = StatusChange.get()
    assert status.updated_at.ToDatetime() == change.created_at


# --- idempotency (AIP-155) -----------------------------------------------------------------------------


def test_repeated_request_id_returns_the_first_response_and_queues_nothing(gateway, ses):
    first = gateway.SendEmail(send_request(request_id="req-1"))
    assert settled(gateway, first.message_id).state == pb.MESSAGE_STATE_SENT
    second = gateway.SendEmail(send_request(request_id="req-1"))

    assert second == first
    assert settled(gateway, first.message_id).attempts == 1
    assert len(ses.sent) == 1


def test_racing_calls_with_one_request_id_queue_once_and_share_the_response(gateway, ses):
    responses = []
    start = threading.Barrier(6)

    def call():
        start.wait()
        responses.append(gateway.SendEmail(send_request(request_id="req-race"), timeout=30))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(responses) == 6 and all(r == responses[0] for r in responses)
    assert settled(gateway, responses[0].message_id).state == pb.MESSAGE_STATE_SENT
    assert len(ses.sent) == 1


def test_request_id_reused_for_another_message_is_refused(gateway, ses):
    first = gateway.SendEmail(send_request(request_id="req-2"))

    code, _, details = rpc_failure(gateway.SendEmail, send_request(request_id="req-2", subject="Another"))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(details).reason == "REQUEST_ID_REUSED"
    assert settled(gateway, first.message_id).state == pb.MESSAGE_STATE_SENT
    assert len(ses.sent) == 1


def test_a_request_id_keeps_naming_its_message_after_ses_refused_it(gateway, ses):
    ses.fail(400, "MessageRejected", "Illegal address")
    first = gateway.SendEmail(send_request(request_id="req-3"))
    assert settled(gateway, first.message_id).state == pb.MESSAGE_STATE_FAILED

    # The caller learns the outcome from GetMessage; a repeat is the same message, not a second try.
    assert gateway.SendEmail(send_request(request_id="req-3")) == first
    assert len(ses.sent) == 1


# --- privacy -------------------------------------------------------------------------------------------


@pytest.mark.one_database
def test_logs_mask_addresses_and_never_carry_bodies(gateway, ses, caplog):
    caplog.set_level("INFO")
    sent_through(gateway, send_request(text_body="secret reset code 913472"), ses)
    suppress("alice@example.org", ContactStatus.BOUNCED)
    rpc_failure(gateway.SendEmail, send_request(text_body="secret reset code 913472"))

    logged = caplog.text
    assert "a***@example.org" in logged
    assert "alice@example.org" not in logged
    assert "913472" not in logged


@pytest.mark.one_database
def test_logs_name_a_contact_by_a_reference_never_by_its_unsubscribe_secret(gateway, ses, caplog):
    caplog.set_level("INFO")
    sent, _ = sent_through(gateway, send_request(), ses)
    suppress("alice@example.org", ContactStatus.UNSUBSCRIBED)
    rpc_failure(gateway.SendEmail, send_request())

    assert sent.contact_id not in caplog.text  # whoever reads the logs could unsubscribe the recipient
    reference = contact_ref(sent.contact_id)
    logged = [r.getMessage().split()[0] for r in caplog.records if reference in r.getMessage()]
    assert logged == ["accepted", "sent", "contact", "refused"]


@pytest.mark.one_database
@pytest.mark.parametrize(
    "status, code, reason",
    [(400, "MessageRejected", "SES_MESSAGE_REJECTED"), (500, "InternalFailure", "SES_UNAVAILABLE")],
)
def test_a_failed_send_leaves_a_masked_warning(gateway, ses, caplog, status, code, reason):
    ses.fail(status, code, "no")
    response = gateway.SendEmail(send_request(text_body="secret reset code 913472"))
    wait_until(lambda: settled(gateway, response.message_id, timeout=0).last_error.reason)

    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "failed" in r.getMessage()]
    assert "a***@example.org" in line and reason in line and code in line
    assert "alice@example.org" not in caplog.text and "913472" not in caplog.text
