"""Prometheus metrics of the gateway: gRPC by method and code, the guard, dispatch outcomes, SES errors, pacing, the
queue read from the database at scrape time, status changes counted once committed; the listener's settings."""

import socket
import time
from dataclasses import replace

import grpc
import pytest
from prometheus_client import REGISTRY

from feedback_http.writer import commit_group
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import ConfigError, Settings
from gateway.core.startup import AddressInUse
from gateway.process.gateway import create_server
from gateway.store.contacts import change_status
from gateway.store.database import database
from gateway.store.models import ContactStatus, open_database
from support.processes import free_port, start, wait_until
from support.scrape import scrape, value
from tests.rpc import rpc_failure, settled

SERVICE = "mailgateway.v1.MailGatewayService"
SUPPRESSED = "gone@example.org"


def send(to: str, text: str = "Hello") -> pb.SendEmailRequest:
    return pb.SendEmailRequest(to=to, subject="Hi", text_body=text)


def suppress(email: str, status: ContactStatus = ContactStatus.BOUNCED) -> None:
    with database.connection_context():
        change_status(status, source="test", email=email)


class Delta:
    """What a /metrics page gained between two scrapes."""

    def __init__(self, port: int):
        self.port = port
        self.before = scrape(port)

    def __call__(self, name: str, **labels: str) -> float:
        return value(scrape(self.port), name, **labels) - value(self.before, name, **labels)


def test_rpcs_are_counted_by_service_method_and_code_and_timed(make_gateway):
    gateway, stub = make_gateway(metrics_addr="127.0.0.1:0", dispatch_workers=0)
    suppress(SUPPRESSED)
    delta = Delta(gateway.metrics.port)

    stub.SendEmail(send("ada@example.org"), timeout=10)
    rpc_failure(stub.SendEmail, send(SUPPRESSED), timeout=10)
    rpc_failure(stub.SendEmail, send("not an address"), timeout=10)
    rpc_failure(stub.GetMessage, pb.GetMessageRequest(message_id="msg_unknown"), timeout=10)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary(f"/{SERVICE}/NoSuchMethod")(b"", timeout=10)
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED

    handled = "grpc_server_handled_total"
    labels = {"grpc_service": SERVICE, "grpc_method": "SendEmail"}
    assert delta(handled, **labels, grpc_code="OK") == 1
    assert delta(handled, **labels, grpc_code="FAILED_PRECONDITION") == 1
    assert delta(handled, **labels, grpc_code="INVALID_ARGUMENT") == 1
    assert delta(handled, grpc_service=SERVICE, grpc_method="GetMessage", grpc_code="NOT_FOUND") == 1
    assert delta(handled, grpc_service="unknown", grpc_method="unknown", grpc_code="UNIMPLEMENTED") == 1
    assert delta("grpc_server_handling_seconds_count", **labels) == 3
    assert delta("grpc_server_handling_seconds_bucket", **labels, le="10.0") == 3
    assert delta("mailgw_guard_refusals_total", status="bounced", stage="accept") == 1


def test_the_queue_is_read_from_the_database_at_scrape_time(make_gateway):
    gateway, stub = make_gateway(metrics_addr="127.0.0.1:0", dispatch_workers=0)  # accepts, never sends
    for n in range(3):
        stub.SendEmail(send(f"reader{n}@example.org"), timeout=10)
    time.sleep(1.1)

    page = scrape(gateway.metrics.port)

    assert value(page, "mailgw_database_up") == 1
    assert value(page, "mailgw_queue_messages", state="queued") == 3
    assert value(page, "mailgw_queue_messages", state="sending") == 0
    assert value(page, "mailgw_queue_messages", state="unknown") == 0
    assert 1.0 <= value(page, "mailgw_queue_oldest_message_age_seconds", state="queued") < 60
    assert ("mailgw_queue_oldest_message_age_seconds", frozenset({("state", "sending")})) in page  # 0, not absent


def test_dispatch_outcomes_ses_errors_and_pacing_are_counted(make_gateway, ses):
    ses.max_24_hour_send, ses.sent_before = 50_000, 1_200
    acceptor, stub = make_gateway(dispatch_workers=0)
    held = stub.SendEmail(send("later@example.org"), timeout=10)  # accepted, then the recipient unsubscribes
    suppress("later@example.org", ContactStatus.UNSUBSCRIBED)
    gateway, stub = make_gateway(metrics_addr="127.0.0.1:0")
    wait_until(lambda: settled(stub, held.message_id).state == pb.MESSAGE_STATE_SUPPRESSED)
    delta = Delta(gateway.metrics.port)

    ses.fail(400, "MessageRejected", "Email content rejected")
    refused = stub.SendEmail(send("ada@example.org"), timeout=10)
    assert settled(stub, refused.message_id).state == pb.MESSAGE_STATE_FAILED
    sent = stub.SendEmail(send("bob@example.org"), timeout=10)
    assert settled(stub, sent.message_id).state == pb.MESSAGE_STATE_SENT

    wait_until(lambda: delta("mailgw_sends_total", outcome="sent") == 1)  # counted right after the commit
    assert delta("mailgw_sends_total", outcome="failed") == 1
    assert delta("mailgw_ses_errors_total", code="MessageRejected", reason="SES_MESSAGE_REJECTED") == 1
    page = scrape(gateway.metrics.port)
    assert value(page, "mailgw_sends_total", outcome="suppressed") >= 1
    assert value(page, "mailgw_guard_refusals_total", status="unsubscribed", stage="dispatch") >= 1
    assert value(page, "mailgw_send_rate_limit_per_second") == ses.max_send_rate
    assert value(page, "mailgw_ses_quota_max_24h_messages") == 50_000
    assert value(page, "mailgw_ses_quota_sent_last_24h_messages") == 1_200
    assert 0 < value(page, "mailgw_ses_quota_remaining_messages") <= 50_000 - 1_200


def changes(source: str) -> float:
    labels = {"from_status": "active", "to_status": "bounced", "source": source}
    return REGISTRY.get_sample_value("mailgw_contact_status_changes_total", labels) or 0.0


def test_a_status_change_is_counted_once_committed_and_never_when_rolled_back(database_url):
    open_database(database_url)
    rolled_back, joined = changes("rolled-back"), changes("joined")
    with database.connection_context():
        with pytest.raises(RuntimeError), database.atomic():
            change_status(ContactStatus.BOUNCED, source="rolled-back", email="a@example.org")
            raise RuntimeError("the caller's transaction fails")
        assert changes("rolled-back") == rolled_back

        with database.atomic():  # a caller's transaction: counted when it commits, not before
            change_status(ContactStatus.BOUNCED, source="joined", email="a@example.org")
            assert changes("joined") == joined
        assert changes("joined") == joined + 1
        change_status(ContactStatus.BOUNCED, source="joined", email="a@example.org")  # no change: not counted
        assert changes("joined") == joined + 1


def test_a_group_commit_that_runs_again_counts_each_change_once(database_url):
    """The sidecar's group commit rolls a group back when one member fails and runs each member again alone."""
    open_database(database_url)
    before = changes("group")

    def fails():
        raise ValueError("a bug in one notification")

    outcomes = commit_group(
        [lambda: change_status(ContactStatus.BOUNCED, source="group", email="b@example.org"), fails]
    )

    assert [ok for ok, _ in outcomes] == [True, False]
    assert changes("group") == before + 1


# --- the listener's settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [("nonsense", "MAILGW_METRICS_ADDR must be host:port"), ("127.0.0.1:50051", "an address of its own")],
)
def test_a_metrics_address_that_cannot_work_is_refused(value, expected):
    with pytest.raises(ConfigError, match=expected):
        Settings.from_env({"MAILGW_METRICS_ADDR": value, "MAILGW_GRPC_ADDR": "127.0.0.1:50051"})


def test_unset_means_no_metrics_listener(make_gateway):
    gateway, _ = make_gateway()
    assert gateway.metrics is None


def test_a_taken_metrics_address_stops_the_gateway(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(AddressInUse, match="MAILGW_METRICS_ADDR"):
            create_server(replace(settings, metrics_addr=address, dispatch_workers=0))


@pytest.mark.slow
def test_gateway_processes_are_served_as_one_metrics_page(tmp_path):
    """MAILGW_GRPC_PROCESSES=2: the copies' counts add up on the parent's page (prometheus multiprocess mode)."""
    database_url = f"sqlite:///{tmp_path}/mailgw.db"
    open_database(database_url)
    suppress(SUPPRESSED)
    address, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_GRPC_PROCESSES": "2",
        "MAILGW_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        "MAILGW_DISPATCH_WORKERS": "0",
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_LOG_LEVEL": "WARNING",
    }
    process = start(["-m", "gateway"], env)
    try:
        wait_until(lambda: value(scrape(metrics_port), "mailgw_database_up") == 1, process)
        refused, deadline = 0, time.monotonic() + 30
        while refused < 12 and time.monotonic() < deadline:
            # A connection each, not grpcio's shared one: the kernel spreads connections over the copies. A copy
            # still starting refuses the connection (UNAVAILABLE): try again.
            with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                code, _, _ = rpc_failure(pb_grpc.MailGatewayServiceStub(channel).SendEmail, send(SUPPRESSED), timeout=5)
            refused += code is grpc.StatusCode.FAILED_PRECONDITION
        assert refused == 12
        page = scrape(metrics_port)
    finally:
        process.terminate()
        assert process.wait(30) == 0, process.stdout.read()

    labels = {"grpc_service": SERVICE, "grpc_method": "SendEmail", "grpc_code": "FAILED_PRECONDITION"}
    assert value(page, "grpc_server_handled_total", **labels) == 12
    assert value(page, "mailgw_guard_refusals_total", status="bounced", stage="accept") == 12
    assert value(page, "mailgw_queue_messages", state="queued") == 0
