"""MAILGW_LOG_FORMAT=json: real processes write one JSON object a line, with the ids of the work, addresses masked,
bodies never."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.logs import contact_ref
from gateway.store.contacts import change_status, get_or_create_contact
from gateway.store.models import ContactStatus, database, open_database
from support.processes import ROOT, free_port, wait_until
from support.sns_signing import TOPIC_ARN
from tests.rpc import rpc_failure, settled

TOKEN = "a-token-of-the-billing-service"
BODY = "Your one-time code is 913472"
FIELDS = {"time", "level", "logger", "event"}


def start_json(module: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`python -m module` logging JSON; everything it writes, stdout and stderr, in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=os.environ | env | {"MAILGW_LOG_FORMAT": "json"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def log_lines(process: subprocess.Popen, stop: signal.Signals = signal.SIGTERM) -> list[dict]:
    """Every line the stopped process wrote, on stdout or stderr, each parsed as JSON (a line that is not fails the
    test)."""
    process.send_signal(stop)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    lines = []
    for text in output.splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            raise AssertionError(f"not a JSON object: {text!r}\n{output}") from None
    for line in lines:
        assert FIELDS <= line.keys(), line
    return lines


def events(lines: list[dict], starts: str) -> list[str]:
    return [line["event"] for line in lines if line["event"].startswith(starts)]


def the_line(lines: list[dict], starts: str) -> dict:
    [line] = [line for line in lines if line["event"].startswith(starts)]
    return line


@pytest.mark.slow
def test_the_gateway_logs_one_json_object_a_line_with_the_ids_of_the_work(database_url, ses):
    open_database(database_url)
    with database.connection_context():
        refused = change_status(ContactStatus.BOUNCED, source="test", email="gone@example.org").contact
    address, metrics_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    process = start_json(
        "gateway",
        {
            "MAILGW_DATABASE_URL": database_url,
            "MAILGW_GRPC_ADDR": address,
            "MAILGW_METRICS_ADDR": metrics_address,
            "MAILGW_DEFAULT_FROM": "noreply@example.com",
            "MAILGW_AUTH_TOKENS": f"billing={TOKEN}",
        },
    )
    channel = grpc.insecure_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        stub, auth = pb_grpc.MailGatewayServiceStub(channel), {"metadata": [("authorization", f"Bearer {TOKEN}")]}
        request = pb.SendEmailRequest(to="Alice Example <alice@example.org>", subject="Your code", text_body=BODY)
        accepted = stub.SendEmail(request, **auth, timeout=10)
        delivered = settled(stub, accepted.message_id, **auth)
        assert delivered.state == pb.MESSAGE_STATE_SENT
        request.to = "gone@example.org"
        code, _, _ = rpc_failure(stub.SendEmail, request, **auth, timeout=10)
        assert code is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        channel.close()
        lines = log_lines(process)

    assert events(lines, "gateway listening: ") == [
        f"gateway listening: gRPC on {address} (transport ses, 4 dispatch workers)",
        f"gateway listening: metrics on http://{metrics_address}/metrics",
    ]
    alice = contact_ref(accepted.contact_id)
    accepted_line = the_line(lines, "accepted")
    assert (accepted_line["message_id"], accepted_line["contact"], accepted_line["caller"]) == (
        accepted.message_id,
        alice,
        "billing",
    )
    assert accepted_line["level"] == "INFO" and accepted_line["logger"] == "gateway.sending.accept"
    sent_line = the_line(lines, "sent")
    assert (sent_line["message_id"], sent_line["contact"]) == (accepted.message_id, alice)
    assert sent_line["ses_message_id"] == delivered.ses_message_id
    refused_line = the_line(lines, "refused a send")
    assert (refused_line["contact"], refused_line["caller"]) == (contact_ref(refused.contact_id), "billing")
    assert "a***@example.org" in accepted_line["event"] and "g***@example.org" in refused_line["event"]
    logged = json.dumps(lines)
    for secret in ("alice@example.org", "gone@example.org", "913472", accepted.contact_id, refused.contact_id, TOKEN):
        assert secret not in logged


@pytest.mark.slow
def test_the_sidecar_logs_json_with_the_sns_message_id_and_the_contact(database_url):
    open_database(database_url)
    with database.connection_context():
        reader = get_or_create_contact("reader@example.org")
    port, metrics_address = free_port(), f"127.0.0.1:{free_port()}"
    process = start_json(
        "feedback_http",
        {
            "MAILGW_DATABASE_URL": database_url,
            "MAILGW_HTTP_ADDR": f"127.0.0.1:{port}",
            "MAILGW_FEEDBACK_METRICS_ADDR": metrics_address,
            "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base}/healthz", timeout=1), process)
        foreign = {
            "Type": "Notification",
            "MessageId": "0f6a7c2e-foreign-1",
            "TopicArn": "arn:aws:sns:us-east-1:999999999999:not-ours",
            "Message": "{}",
            "Timestamp": "2026-12-02T06:00:00.000Z",
            "SignatureVersion": "2",
            "Signature": "AAAA",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        }
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/sns", data=json.dumps(foreign).encode(), timeout=10)
        assert refused.value.code == 403
        link, one_click = f"{base}/unsubscribe/{reader.contact_id}", b"List-Unsubscribe=One-Click"
        assert urllib.request.urlopen(link, data=one_click, timeout=10).status == 200
    finally:
        lines = log_lines(process)

    assert events(lines, "sidecar listening: ") == [  # aiohttp's "======== Running on" banner is not printed
        f"sidecar listening: metrics on http://{metrics_address}/metrics",
        f"sidecar listening: HTTP on http://127.0.0.1:{port}",
    ]
    assert the_line(lines, "SNS message rejected")["sns_message_id"] == "0f6a7c2e-foreign-1"
    change = the_line(lines, "contact ")
    assert change["contact"] == contact_ref(reader.contact_id) and "-> unsubscribed by one-click" in change["event"]
    logged = json.dumps(lines)
    assert "reader@example.org" not in logged and reader.contact_id not in logged


@pytest.mark.slow
def test_an_unknown_log_format_stops_the_process_with_one_line():
    process = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env=os.environ | {"MAILGW_LOG_FORMAT": "xml"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2
    assert process.stderr.strip() == "mailgw: MAILGW_LOG_FORMAT must be text or json, not 'xml'"


@pytest.mark.slow
def test_mailgw_run_writes_only_json_lines_and_names_every_listener(tmp_path):
    grpc_address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {
        "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/mailgw.db",
        "MAILGW_GRPC_ADDR": grpc_address,
        "MAILGW_HTTP_ADDR": http_address,
        "MAILGW_TRANSPORT": "outbox",
        "MAILGW_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    process = start_json("gateway.cli", env, "run")
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(grpc_address))
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        wait_until(lambda: urllib.request.urlopen(f"http://{http_address}/healthz", timeout=1), process)
    finally:
        lines = log_lines(process, stop=signal.SIGINT)  # Ctrl-C: both stop, and the exit code is 0

    assert sorted(events(lines, "gateway listening: ") + events(lines, "sidecar listening: ")) == [
        f"gateway listening: gRPC on {grpc_address} (transport outbox, 4 dispatch workers)",
        f"sidecar listening: HTTP on http://{http_address}",
    ]


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
HTML_403 = "<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1><p>Request blocked.</p></body></html>"
MARKUP = re.compile(r"<[!?/]?[A-Za-z]")


@pytest.mark.slow
def test_an_html_error_page_from_ses_is_logged_as_its_status_and_code_never_its_markup(database_url, ses):
    """A proxy or load balancer in front of SES answers with a page: the log names the status and the code."""
    ses.account_error = (403, "AccessDeniedException", HTML_403)  # GetAccount (boto3), at start
    ses.fail(502, "", body=HTML_502)  # the first send: a page without any error code
    address = f"127.0.0.1:{free_port()}"
    process = start_json(
        "gateway",
        {"MAILGW_DATABASE_URL": database_url, "MAILGW_GRPC_ADDR": address, "MAILGW_DEFAULT_FROM": "noreply@a.example"},
    )
    channel = grpc.insecure_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        stub = pb_grpc.MailGatewayServiceStub(channel)
        accepted = stub.SendEmail(pb.SendEmailRequest(to="ada@example.org", subject="Hi", text_body=BODY), timeout=10)
        failed = lambda: stub.GetMessage(pb.GetMessageRequest(message_id=accepted.message_id), timeout=5)  # noqa: E731
        wait_until(lambda: failed().last_error.reason == "SES_UNAVAILABLE", process)
        assert failed().last_error.description == "HTTP 502 (a markup body, not shown)"  # GetMessage's too
    finally:
        channel.close()
        lines = log_lines(process)

    assert not [line for line in lines if MARKUP.search(json.dumps(line))]
    quota = the_line(lines, "cannot read the SES send quota")["event"]
    assert "SES_ACCESS_DENIED (AccessDeniedException): HTTP 403 (a markup body, not shown)" in quota
    send = the_line(lines, f"send of {accepted.message_id}")["event"]
    assert send.endswith("failed: SES_UNAVAILABLE (502): HTTP 502 (a markup body, not shown); not sent, retry")


@pytest.mark.slow
def test_botocore_says_nothing_at_info(database_url, ses):
    """boto3 and botocore log where they found credentials and endpoints at INFO, for every client made."""
    address = f"127.0.0.1:{free_port()}"
    process = start_json(
        "gateway",
        {"MAILGW_DATABASE_URL": database_url, "MAILGW_GRPC_ADDR": address, "MAILGW_LOG_LEVEL": "INFO"},
    )
    try:  # the SES transport, its GetAccount and the suppression sync's client, with credentials in the environment
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        wait_until(lambda: any(r.path.endswith("/account") for r in ses.requests), process)
    finally:
        lines = log_lines(process)

    assert events(lines, "gateway listening: ")
    assert [line for line in lines if line["logger"].startswith(("botocore", "boto3"))] == []


@pytest.mark.slow
def test_text_logs_mask_an_address_in_ses_error_text_too(database_url, ses):
    """SES's own error text may name an address (an identity, a recipient): the default text format masks it, as
    the JSON format does."""
    ses.fail(403, "AccessDeniedException", "User is not authorized to send to carol@example.org", times=1)
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        env=os.environ
        | {
            "MAILGW_DATABASE_URL": database_url,
            "MAILGW_GRPC_ADDR": address,
            "MAILGW_DEFAULT_FROM": "noreply@example.com",
        },
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    channel = grpc.insecure_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        stub = pb_grpc.MailGatewayServiceStub(channel)
        stub.SendEmail(pb.SendEmailRequest(to="carol@example.org", subject="Hi", text_body=BODY))
        wait_until(lambda: dispatch_paused(health), process)  # SES refused: dispatch paused, and logged why
    finally:
        channel.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)

    assert "dispatch paused: SES_ACCESS_DENIED" in stderr  # the failure is logged, in text, with SES's words
    assert "carol@example.org" not in stderr and "c***@example.org" in stderr


def dispatch_paused(health) -> bool:
    request = health_pb2.HealthCheckRequest(service="mailgateway.v1.Dispatch")
    return health.Check(request, timeout=1).status == health_pb2.HealthCheckResponse.NOT_SERVING
