"""Attachments: files and inline images reach SES as valid MIME (parsed back with the email package: names, types
and bytes equal), within MAILGW_MAX_MESSAGE_BYTES; programs and scripts are refused by name, declared type or first
bytes, each problem a field violation, nothing queued; a settled message keeps no file. Real gateways on both
databases, the SES stand-in."""

import threading

import grpc
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.config import ConfigError, Settings
from gateway.sending.attachments import LargeMessages
from gateway.store.database import unit_of_work
from gateway.store.models import MessageAttachment
from tests.rpc import error_info, rpc_failure, settled
from tests.test_scheduling import at

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40  # every byte value, so a lossy encoding would show
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x01\x02\xff" * 50
LONG_NAME = "发票" * 120 + ".pdf"  # 244 characters, 2,200 once percent-encoded
EMOJI_NAME = "🧾" * 60 + ".pdf"  # four bytes each: 12 characters a section
ASCII_NAME = "quarterly-report-" * 14 + ".pdf"  # 242 printable ASCII characters, too long to quote on one line


def request(**fields) -> pb.SendEmailRequest:
    defaults = {"html_body": '<p>Attached.</p><img src="cid:logo@acme">'}
    return pb.SendEmailRequest(to="ada@example.org", subject="Your invoice", text_body="Attached.", **defaults | fields)


def violations(details) -> dict[str, str]:
    return {v.field: v.description for v in details["BadRequest"][0].field_violations}


def files_kept() -> int:
    with unit_of_work():
        return MessageAttachment.select().count()


def test_files_and_an_inline_image_reach_ses_as_mime_the_email_package_reads_back(gateway, ses):
    attachments = [
        pb.Attachment(filename="Rechnung März 2026.pdf", content_type="application/pdf", content=PDF),
        pb.Attachment(filename=LONG_NAME, content_type="application/pdf", content=b"second"),
        pb.Attachment(filename=EMOJI_NAME, content_type="application/pdf", content=b"third"),
        pb.Attachment(filename=ASCII_NAME, content_type="application/pdf", content=b"fourth"),
        pb.Attachment(filename="logo.png", content_type="image/png", content=PNG, content_id="logo@acme"),
    ]
    accepted = gateway.SendEmail(request(attachments=attachments), timeout=10)
    assert settled(gateway, accepted.message_id).state == pb.MESSAGE_STATE_SENT

    mime = ses.sent[0].mime
    assert mime.get_content_type() == "multipart/mixed"
    related = mime.get_payload()[0]
    assert related.get_content_type() == "multipart/related"
    alternative, image = related.get_payload()
    assert [part.get_content_type() for part in alternative.get_payload()] == ["text/plain", "text/html"]
    assert all("unsubscribe" in part.get_content() for part in alternative.get_payload())  # the footer, always
    assert (image["Content-ID"], image.get_content_disposition(), image.get_payload(decode=True)) == (
        "<logo@acme>",
        "inline",
        PNG,
    )
    files = mime.get_payload()[1:]
    assert [(f.get_filename(), f.get_content_type(), f.get_payload(decode=True)) for f in files] == [
        ("Rechnung März 2026.pdf", "application/pdf", PDF),
        (LONG_NAME, "application/pdf", b"second"),
        (EMOJI_NAME, "application/pdf", b"third"),
        (ASCII_NAME, "application/pdf", b"fourth"),
    ]
    assert max(len(line) for line in ses.sent[0].raw.split(b"\r\n")) <= 78  # RFC 5322's advice, names included
    assert files_kept() == 0  # sent: the files went with the body


@pytest.mark.one_database
def test_programs_and_scripts_are_refused_by_name_type_or_first_bytes_and_nothing_is_queued(gateway, ses):
    attachments = [
        pb.Attachment(filename="setup.exe", content_type="application/octet-stream", content=b"data"),
        pb.Attachment(filename="invoice.pdf", content_type="application/x-msdownload", content=b"data"),
        pb.Attachment(filename="invoice.pdf", content_type="application/pdf", content=b"MZ\x90\x00 a program"),
        pb.Attachment(filename="run.PS1", content_type="text/plain", content=b"Get-Item"),
        pb.Attachment(filename="../etc/passwd", content_type="text/plain", content=b"x"),
        pb.Attachment(filename="logo.png", content_type="image/png", content=PNG, content_id="not-in-the-html"),
        pb.Attachment(filename="notes.txt", content_type="text/plain", content=b"x", content_id="logo@acme"),
        pb.Attachment(filename="invoice.exe ", content_type="application/pdf", content=b"data"),
        pb.Attachment(filename="=?utf-8?b?aW52b2ljZS5leGU=?=", content_type="application/pdf", content=b"data"),
        pb.Attachment(filename="run.txt", content_type="text/plain", content=b"\xef\xbb\xbf  #!/bin/sh\nrm -rf /"),
        pb.Attachment(filename="run", content_type="text/x-shellscript", content=b"echo"),
    ]

    code, _, details = rpc_failure(gateway.SendEmail, request(attachments=attachments), timeout=10)

    assert (code, error_info(details).reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    found = violations(details)
    assert set(found) == {
        "attachments[0].filename",
        "attachments[1].content_type",
        "attachments[2].content",
        "attachments[3].filename",
        "attachments[4].filename",
        "attachments[5].content_id",
        "attachments[6].content_id",
        "attachments[7].filename",  # "invoice.exe " is stored as invoice.exe
        "attachments[8].filename",  # an encoded word a mail program would read as invoice.exe
        "attachments[9].content",  # a script behind a byte-order mark and spaces
        "attachments[10].content_type",
    }
    assert ".exe is a program or script type" in found["attachments[0].filename"]
    assert 'no "cid:not-in-the-html"' in found["attachments[5].content_id"]
    assert ses.sent == [] and files_kept() == 0


@pytest.mark.one_database
def test_a_message_over_the_size_limit_is_refused_by_field_and_far_over_it_by_grpc(make_gateway, ses):
    gateway, stub = make_gateway(max_message_bytes=64 * 1024)
    big = pb.Attachment(filename="big.pdf", content_type="application/pdf", content=b"x" * 100_000)

    code, _, details = rpc_failure(stub.SendEmail, request(attachments=[big]), timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 65,536 (MAILGW_MAX_MESSAGE_BYTES)" in violations(details)["attachments"]

    huge = pb.Attachment(filename="huge.pdf", content_type="application/pdf", content=b"x" * 1_200_000)
    code, message, details = rpc_failure(stub.SendEmail, request(attachments=[huge]), timeout=10)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in message  # the limit plus a MiB
    assert ses.sent == [] and files_kept() == 0


def test_a_cancelled_messages_files_are_deleted_with_its_body(gateway, ses):
    attachment = pb.Attachment(filename="a.pdf", content_type="application/pdf", content=PDF)
    accepted = gateway.SendEmail(request(html_body="<p>x</p>", attachments=[attachment], send_at=at(3600)), timeout=10)
    assert files_kept() == 1

    gateway.CancelMessage(pb.CancelMessageRequest(message_id=accepted.message_id), timeout=10)

    assert files_kept() == 0


@pytest.mark.one_database
def test_a_repeated_request_id_with_other_files_is_a_different_message(gateway):
    first = pb.Attachment(filename="a.pdf", content_type="application/pdf", content=PDF)
    again = gateway.SendEmail(request(html_body="", request_id="inv-1", attachments=[first]), timeout=10)
    same = gateway.SendEmail(request(html_body="", request_id="inv-1", attachments=[first]), timeout=10)
    assert same.message_id == again.message_id

    other = pb.Attachment(filename="a.pdf", content_type="application/pdf", content=PDF + b"!")
    code, _, details = rpc_failure(
        gateway.SendEmail, request(html_body="", request_id="inv-1", attachments=[other]), timeout=10
    )
    assert (code, error_info(details).reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")


def test_the_size_limit_is_a_setting_with_bounds():
    with pytest.raises(ConfigError, match="MAILGW_MAX_MESSAGE_BYTES must be from 65536 to 28311552"):
        Settings(max_message_bytes=40 * 1024 * 1024)


def test_large_messages_take_turns_within_the_budget_and_small_ones_never_wait():
    large = LargeMessages(budget=8 * 1024 * 1024)
    order: list[str] = []
    first = large.hold(6 * 1024 * 1024)
    first.__enter__()

    def second() -> None:
        with large.hold(6 * 1024 * 1024):
            order.append("second")

    waiting = threading.Thread(target=second)
    waiting.start()
    with large.hold(100 * 1024):  # under 256 KiB: passes the budget by
        order.append("small")
    waiting.join(0.2)
    assert order == ["small"] and waiting.is_alive()  # the second large one waits for the first
    first.__exit__(None, None, None)
    waiting.join(5)
    assert order == ["small", "second"]
    with large.hold(50 * 1024 * 1024):  # larger than the whole budget: goes alone, never waits forever
        order.append("huge")
    assert order[-1] == "huge"
