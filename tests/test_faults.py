"""Faults, nothing lost: the database going away, SES throttling and errors, crashes and SIGTERM mid-work."""

import asyncio
import json
import signal
import threading
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedback_http.app import create_app
from feedback_http.config import FeedbackSettings
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.ops.config import Settings
from gateway.rpc.server import create_server
from gateway.store.models import Contact, ContactStatus, FeedbackEvent, SentMessage, database, open_database
from tests import ses_samples
from tests.conftest import fresh_postgres
from tests.processes import free_port, start, wait_until
from tests.rpc import error_info, rpc_failure
from tests.sns_signing import TOPIC_ARN, signed_envelope
from tests.tcp_proxy import TcpProxy

REQUEST = pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="Hello")


def bounce_envelope(signer, address: str) -> dict:
    event = ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient(address)])
    return signed_envelope(signer, message=ses_samples.message(event))


# --- the database goes away and comes back (PostgreSQL behind a proxy we can cut) -------------------------


@pytest.fixture
def postgres_proxy(postgres_url):
    fresh_postgres(postgres_url)
    server = urlsplit(postgres_url)
    proxy = TcpProxy((server.hostname, server.port or 5432))
    proxy.start()
    credentials = server.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    yield proxy, urlunsplit(server._replace(netloc=netloc))
    proxy.cut()
    if database.obj is not None:
        database.close_all()


def test_gateway_answers_unavailable_while_the_database_is_down_and_recovers(postgres_proxy, ses):
    proxy, url = postgres_proxy
    server, port = create_server(
        Settings(database_url=url, grpc_addr="127.0.0.1:0", default_from="noreply@example.com")
    )
    server.start()
    stub = pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    try:
        stub.SendEmail(REQUEST, timeout=10)

        proxy.cut()
        for _ in range(3):
            code, message, details = rpc_failure(stub.SendEmail, REQUEST, timeout=10)
            assert code == grpc.StatusCode.UNAVAILABLE  # never a hang, never UNKNOWN: retry later (AIP-194)
            assert error_info(details).reason == "DATABASE_UNAVAILABLE"

        proxy.restore()
        stub.SendEmail(REQUEST, timeout=10)  # no restart needed
    finally:
        server.stop(None)
    assert len(ses.sent) == 2  # nothing reached SES while the guard could not look


async def test_sidecar_answers_503_while_the_database_is_down_so_sns_retries(
    postgres_proxy, aiohttp_client, signer, sns_host
):
    proxy, url = postgres_proxy
    settings = FeedbackSettings(database_url=url, sns_topic_arns=frozenset({TOPIC_ARN}), sns_endpoint_url=sns_host.url)
    client = await aiohttp_client(create_app(settings))
    envelope = bounce_envelope(signer, "down@example.org")

    proxy.cut()
    response = await client.post("/sns", data=json.dumps(envelope))
    assert response.status == 503
    assert (await client.get("/healthz")).status == 503

    proxy.restore()
    response = await client.post("/sns", data=json.dumps(envelope))  # SNS's retry of the same message
    assert response.status == 200
    assert (await client.get("/healthz")).status == 200
    with database.connection_context():
        assert Contact.get(email="down@example.org").status is ContactStatus.BOUNCED


# --- SES throttling and errors: bounded retries within the caller's deadline ------------------------------


def test_ses_5xx_is_retried_with_backoff_and_then_succeeds(gateway, ses):
    ses.fail(500, "InternalFailure", times=2)

    response = gateway.SendEmail(REQUEST, timeout=10)

    assert response.message_id
    assert len(ses.sent) == 3


def test_throttling_stops_retrying_at_the_callers_deadline(gateway, ses):
    ses.fail(429, "TooManyRequestsException", times=10)
    ses.delay = 0.3

    code, _, details = rpc_failure(gateway.SendEmail, REQUEST, timeout=0.9)

    # The caller hears RESOURCE_EXHAUSTED with RetryInfo before its deadline, not DEADLINE_EXCEEDED.
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "RetryInfo" in details
    assert len(ses.sent) < 3


# --- a crash between the SES call and recording its result ------------------------------------------------


@pytest.fixture
def gateway_env(database_url):
    return {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
    }


def start_gateway(env):
    process = start(["-m", "gateway"], env)
    channel = grpc.insecure_channel(env["MAILGW_GRPC_ADDR"])
    wait_until(lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1), process)
    return process, pb_grpc.MailGatewayServiceStub(channel)


def test_a_crash_while_ses_has_the_message_never_sends_it_twice(gateway_env, ses):
    request = pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="Hello", request_id="order-42")
    ses.delay = 5  # SES is still answering when the gateway dies
    first, stub = start_gateway(gateway_env)
    threading.Thread(target=lambda: rpc_failure(stub.SendEmail, request, timeout=20), daemon=True).start()
    wait_until(lambda: len(ses.sent) == 1, first)
    first.kill()  # SIGKILL: no cleanup of any kind
    first.wait()

    second, stub = start_gateway(gateway_env)
    try:
        ses.delay = 0
        code, _, details = rpc_failure(stub.SendEmail, request, timeout=2)
        assert code == grpc.StatusCode.ABORTED  # the claim is fresh: it might still be sending
        assert error_info(details).reason == "REQUEST_IN_PROGRESS"

        open_database(gateway_env["MAILGW_DATABASE_URL"])
        with database.connection_context():  # two minutes pass: nobody can still be sending it
            stale = SentMessage.get(SentMessage.request_id == "order-42")
            SentMessage.update(created_at=stale.created_at.replace(year=stale.created_at.year - 1)).execute()
        database.close_all()
        code, message, details = rpc_failure(stub.SendEmail, request, timeout=5)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(details).reason == "SEND_OUTCOME_UNKNOWN"
        assert "may have been sent" in message
    finally:
        second.terminate()
        assert second.wait(20) == 0
    assert len(ses.sent) == 1  # never a second send for order-42


# --- SIGTERM under load: the sidecar finishes what it took, acknowledges only what it committed ------------


async def test_sidecar_sigterm_under_load_loses_nothing_it_acknowledged(database_url, signer, sns_host):
    port = free_port()
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{port}",
        "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
        "AWS_ENDPOINT_URL_SNS": sns_host.url,
    }
    sidecar = start(["-m", "feedback_http"], env)
    base = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_until, lambda: urllib.request.urlopen(f"{base}/healthz", timeout=1), sidecar)
    envelopes = [bounce_envelope(signer, f"load{i}@example.org") for i in range(120)]

    async def post(session, envelope):
        try:
            async with session.post(f"{base}/sns", data=json.dumps(envelope)) as response:
                return envelope, response.status
        except aiohttp.ClientError:
            return envelope, None  # refused or reset after the signal: SNS would retry it

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        tasks = [asyncio.create_task(post(session, envelope)) for envelope in envelopes]
        await asyncio.sleep(0.3)
        sidecar.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks)
    assert await asyncio.to_thread(sidecar.wait, 30) == 0

    acknowledged = {
        json.loads(e["Message"])["bounce"]["bouncedRecipients"][0]["emailAddress"] for e, s in results if s == 200
    }
    assert all(status in (200, 503, None) for _, status in results)  # never a 4xx or 500 for a good message
    assert acknowledged, "the burst should have been partly processed before the signal"
    open_database(database_url)
    with database.connection_context():
        bounced = {c.email for c in Contact.select().where(Contact.status == ContactStatus.BOUNCED)}
        recorded = FeedbackEvent.select().count()
    database.close_all()
    assert acknowledged <= bounced  # every 200 was committed before it was sent
    assert recorded == len(bounced)  # no event without its status change, none half-written
