"""SendEmail end to end over gRPC: the guard, composition, errors and idempotency, with SES on loopback."""

import threading

import grpc
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.ops.logs import contact_ref
from gateway.store.contacts import change_status
from gateway.store.models import ContactStatus, StatusChange, database
from tests.rpc import error_info, rpc_failure


def send_request(**overrides) -> pb.SendEmailRequest:
    fields = {"to": "alice@example.org", "subject": "Your invoice", "text_body": "Hello Alice"} | overrides
    return pb.SendEmailRequest(**fields)


def suppress(email: str, status: ContactStatus):
    with database.connection_context():
        return change_status(status, source="test", reason="test", email=email).contact


# --- the Email Guard ---------------------------------------------------------------------------------


def test_send_reaches_ses_and_creates_an_active_contact(gateway, ses):
    response = gateway.SendEmail(send_request())

    assert len(ses.sent) == 1
    assert response.message_id.startswith("0100019")
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
    assert ses.requests == []


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


def test_message_carries_footer_link_and_one_click_unsubscribe_headers(gateway, ses):
    response = gateway.SendEmail(send_request(html_body="<html><body><p>Hello</p></body></html>"))

    url = f"https://mail.example.com/unsubscribe/{response.contact_id}"
    mime = ses.sent[0].mime
    assert mime["List-Unsubscribe"].strip() == f"<{url}>"  # folded onto a continuation line when long
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in mime.iter_parts())
    assert text.startswith("Hello Alice") and url in text
    assert html.index(url) < html.index("</body>")


def test_html_only_message_has_the_footer_link(gateway, ses):
    response = gateway.SendEmail(send_request(text_body="", html_body="<p>Hi</p>"))

    mime = ses.sent[0].mime
    assert mime.get_content_type() == "text/html"
    assert f"https://mail.example.com/unsubscribe/{response.contact_id}" in mime.get_content()


def test_non_ascii_subject_display_names_and_idn_domain_are_encoded(gateway, ses):
    gateway.SendEmail(
        send_request(
            to="Zoë Ünïcode, Jr. <zoe@bücher.example>",
            subject="Grüße — 你好",
            from_address='"Équipe, Support" <support@example.com>',
            text_body="Prix : 10 €",
        )
    )

    request = ses.sent[0]
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


def test_configuration_set_tags_and_reply_to_reach_ses(gateway, ses):
    response = gateway.SendEmail(send_request(reply_to="help@example.com", tags={"campaign": "invoice-2026"}))

    request = ses.sent[0]
    assert request.body["ConfigurationSetName"] == "my-leads-now-config"
    assert request.tags == {"campaign": "invoice-2026", "contact_id": response.contact_id}
    assert request.mime["Reply-To"] == "help@example.com"
    assert request.mime["From"] == "Example App <noreply@example.com>"


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
    assert ses.requests == []


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, fields",
    [
        ({"to": "not-an-address"}, ["to"]),
        ({"to": ""}, ["to"]),
        ({"subject": "  "}, ["subject"]),
        ({"text_body": "", "html_body": ""}, ["text_body"]),
        ({"tags": {"bad name": "x", "contact_id": "forged"}}, ["tags[bad name]", "tags[contact_id]"]),
        ({"to": "x", "subject": ""}, ["to", "subject"]),
    ],
)
def test_invalid_request_lists_each_field_violation(gateway, ses, overrides, fields):
    code, _, details = rpc_failure(gateway.SendEmail, send_request(**overrides))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(details).reason == "INVALID_REQUEST"
    assert sorted(v.field for v in details["BadRequest"][0].field_violations) == sorted(fields)
    assert ses.requests == []


def test_missing_sender_without_default_from_is_invalid(settings, ses):
    from dataclasses import replace

    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
    from gateway.rpc.server import create_server

    server, port = create_server(replace(settings, default_from=""))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            code, _, details = rpc_failure(pb_grpc.MailGatewayServiceStub(channel).SendEmail, send_request())
    finally:
        server.stop(None)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    violation = details["BadRequest"][0].field_violations[0]
    assert (violation.field, "MAILGW_DEFAULT_FROM" in violation.description) == ("from_address", True)


def test_ses_throttling_is_resource_exhausted_with_retry_info(gateway, ses):
    ses.fail(429, "TooManyRequestsException", "Maximum sending rate exceeded.", times=3)

    code, _, details = rpc_failure(gateway.SendEmail, send_request())

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(details)
    assert (info.reason, info.metadata["sesErrorCode"]) == ("SES_THROTTLED", "TooManyRequestsException")
    assert details["RetryInfo"][0].retry_delay.seconds >= 1
    assert len(ses.sent) == 3  # botocore's bounded retries, then the caller is told


@pytest.mark.parametrize(
    "status, code, message, reason",
    [
        (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities failed the check",
            "SES_IDENTITY_NOT_VERIFIED",
        ),
        (400, "MessageRejected", "Illegal address", "SES_MESSAGE_REJECTED"),
        (400, "SendingPausedException", "Sending is paused for this account.", "SES_SENDING_PAUSED"),
        (
            404,
            "NotFoundException",
            "Configuration set <my-leads-now-config> does not exist.",
            "SES_CONFIGURATION_SET_NOT_FOUND",
        ),
        (400, "AccountSuspendedException", "Account suspended", "SES_ACCOUNT_SUSPENDED"),
    ],
)
def test_ses_refusals_are_failed_precondition_naming_the_ses_code(gateway, ses, status, code, message, reason):
    ses.fail(status, code, message)

    grpc_code, _, details = rpc_failure(gateway.SendEmail, send_request())

    assert grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(details)
    assert (info.reason, info.metadata["sesErrorCode"]) == (reason, code)


def test_ses_server_errors_after_retries_are_unavailable(gateway, ses):
    ses.fail(500, "InternalFailure", "boom", times=3)

    code, message, details = rpc_failure(gateway.SendEmail, send_request())

    assert code == grpc.StatusCode.UNAVAILABLE
    assert error_info(details).reason == "SES_UNAVAILABLE"
    assert "Traceback" not in message
    assert len(ses.sent) == 3


def test_unreachable_ses_is_unavailable(gateway, ses, monkeypatch):
    ses.stop()  # nothing listens on its port any more

    code, _, details = rpc_failure(gateway.SendEmail, send_request(), timeout=60)

    assert code == grpc.StatusCode.UNAVAILABLE
    assert error_info(details).reason == "SES_UNAVAILABLE"
    ses.start()  # let the fixture stop it cleanly


def test_unknown_contact_is_not_found(gateway):
    for request in (
        pb.GetContactStatusRequest(email="nobody@example.org"),
        pb.GetContactStatusRequest(contact_id="qJIc0f3Xk9aB1cD2eF3gH4"),
    ):
        code, _, details = rpc_failure(gateway.GetContactStatus, request)
        assert code == grpc.StatusCode.NOT_FOUND
        assert error_info(details).reason == "CONTACT_NOT_FOUND"


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


def test_repeated_request_id_returns_the_first_response_without_sending_again(gateway, ses):
    first = gateway.SendEmail(send_request(request_id="req-1"))
    second = gateway.SendEmail(send_request(request_id="req-1"))

    assert second == first
    assert len(ses.sent) == 1


def test_racing_calls_with_one_request_id_send_once_and_share_the_response(gateway, ses):
    ses.delay = 0.5  # the first call is still at SES when the second arrives
    responses = []

    def call():
        responses.append(gateway.SendEmail(send_request(request_id="req-race"), timeout=30))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(ses.sent) == 1
    assert len(responses) == 4 and all(r == responses[0] for r in responses)


def test_request_id_reused_for_another_message_is_refused(gateway, ses):
    gateway.SendEmail(send_request(request_id="req-2"))

    code, _, details = rpc_failure(gateway.SendEmail, send_request(request_id="req-2", subject="Another"))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(details).reason == "REQUEST_ID_REUSED"
    assert len(ses.sent) == 1


def test_failed_send_frees_the_request_id_for_a_retry(gateway, ses):
    ses.fail(400, "MessageRejected", "Illegal address")
    rpc_failure(gateway.SendEmail, send_request(request_id="req-3"))

    response = gateway.SendEmail(send_request(request_id="req-3"))

    assert response.message_id
    assert len(ses.sent) == 2


# --- privacy -------------------------------------------------------------------------------------------


def test_logs_mask_addresses_and_never_carry_bodies(gateway, ses, caplog):
    caplog.set_level("INFO")
    gateway.SendEmail(send_request(text_body="secret reset code 913472"))
    suppress("alice@example.org", ContactStatus.BOUNCED)
    rpc_failure(gateway.SendEmail, send_request(text_body="secret reset code 913472"))

    logged = caplog.text
    assert "a***@example.org" in logged
    assert "alice@example.org" not in logged
    assert "913472" not in logged


def test_logs_name_a_contact_by_a_reference_never_by_its_unsubscribe_secret(gateway, ses, caplog):
    caplog.set_level("INFO")
    sent = gateway.SendEmail(send_request())
    suppress("alice@example.org", ContactStatus.UNSUBSCRIBED)
    rpc_failure(gateway.SendEmail, send_request())

    assert sent.contact_id not in caplog.text  # whoever reads the logs could unsubscribe the recipient
    reference = contact_ref(sent.contact_id)
    assert [r.levelname for r in caplog.records if reference in r.getMessage()] == [
        "INFO"
    ] * 3  # sent, changed, refused


@pytest.mark.parametrize(
    "status, code, reason",
    [(400, "MessageRejected", "SES_MESSAGE_REJECTED"), (500, "InternalFailure", "SES_UNAVAILABLE")],
)
def test_a_failed_send_leaves_a_masked_warning(gateway, ses, caplog, status, code, reason):
    ses.fail(status, code, "no", times=3)
    rpc_failure(gateway.SendEmail, send_request(text_body="secret reset code 913472"))

    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "failed" in r.getMessage()]
    assert "a***@example.org" in line and reason in line and code in line
    assert "alice@example.org" not in caplog.text and "913472" not in caplog.text
