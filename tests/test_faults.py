"""Faults, nothing lost: the database going away (also right after SES took a message), a gateway killed mid-send,
SIGTERM mid-work."""

import asyncio
import json
import signal
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedback_http.app import create_app
from feedback_http.config import FeedbackSettings
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import Settings
from gateway.process.gateway import create_server
from gateway.store.models import Contact, ContactStatus, FeedbackEvent, database, open_database
from support import ses_samples
from support.processes import free_port, start, wait_until
from support.sns_signing import TOPIC_ARN, signed_envelope
from support.tcp_proxy import TcpProxy
from tests.conftest import fresh_postgres
from tests.rpc import IN_FLIGHT, error_info, rpc_failure, settled

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
    gateway = create_server(Settings(database_url=url, grpc_addr="127.0.0.1:0", default_from="noreply@example.com"))
    gateway.start()
    stub = pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))
    try:
        first = stub.SendEmail(REQUEST, timeout=10)
        assert settled(stub, first.message_id).state == pb.MESSAGE_STATE_SENT

        proxy.cut()
        for _ in range(3):
            code, message, details = rpc_failure(stub.SendEmail, REQUEST, timeout=10)
            assert code == grpc.StatusCode.UNAVAILABLE  # never a hang, never UNKNOWN: retry later (AIP-194)
            assert error_info(details).reason == "DATABASE_UNAVAILABLE"
            assert details["RetryInfo"][0].retry_delay.seconds == 1

        proxy.restore()
        second = stub.SendEmail(REQUEST, timeout=10)  # no restart needed, for accepting or for dispatching
        assert settled(stub, second.message_id).state == pb.MESSAGE_STATE_SENT
    finally:
        gateway.stop(None)
    assert len(ses.sent) == 2  # nothing was accepted, so nothing reached SES, while the database was away


def test_after_the_database_returns_no_call_fails_on_a_connection_opened_before_it_left(postgres_proxy, ses):
    """Every worker thread keeps its connection between calls; a database that went away killed them all. After it
    is back, no caller gets UNAVAILABLE for a connection that died while it was away."""
    proxy, url = postgres_proxy
    gateway = create_server(Settings(database_url=url, grpc_addr="127.0.0.1:0", default_from="noreply@example.com"))
    gateway.start()
    stub = pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))
    lookup = pb.GetContactStatusRequest(email="someone@example.org")

    def codes(calls: int) -> Counter:
        def one(_):
            try:
                stub.GetContactStatus(lookup, timeout=10)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

        with ThreadPoolExecutor(16) as pool:
            return Counter(pool.map(one, range(calls)))

    try:
        assert codes(200) == Counter({grpc.StatusCode.NOT_FOUND: 200})  # many worker threads hold a connection now
        proxy.cut()
        assert codes(1) == Counter({grpc.StatusCode.UNAVAILABLE: 1})
        proxy.restore()
        assert codes(200) == Counter({grpc.StatusCode.NOT_FOUND: 200})
    finally:
        gateway.stop(None)


def test_ses_took_the_message_while_the_database_was_away_it_is_recorded_later_and_never_resent(
    postgres_proxy, ses, caplog
):
    """The database goes away between the SES call and the record of its answer: the send is not repeated, the
    bookkeeping is, until the database is back."""
    proxy, url = postgres_proxy
    settings = Settings(database_url=url, grpc_addr="127.0.0.1:0", default_from="noreply@example.com")
    gateway = create_server(settings)
    gateway.start()
    stub = pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))
    ses.on_send = lambda _request: proxy.cut()  # SES has the message; the database is gone before its answer lands
    try:
        accepted = stub.SendEmail(REQUEST, timeout=10)
        wait_until(lambda: ses.accepted)
        ses.on_send = None
        wait_until(lambda: "cannot record the outcome of 1 message yet" in caplog.text)  # the recorder tries again
    finally:
        proxy.restore()  # the database is back
    try:
        sent = settled(stub, accepted.message_id, timeout=30)
    finally:
        gateway.stop(None)

    assert (sent.state, sent.attempts) == (pb.MESSAGE_STATE_SENT, 1)
    assert sent.ses_message_id == ses.accepted[0].message_id
    assert ses.accepted_ids() == [accepted.message_id] and len(ses.sent) == 1
    assert "cannot record the outcome of 1 message yet" in caplog.text


async def test_sidecar_answers_503_while_the_database_is_down_so_sns_retries(
    postgres_proxy, aiohttp_client, signer, sns_host
):
    proxy, url = postgres_proxy
    settings = FeedbackSettings(database_url=url, sns_topic_arns=frozenset({TOPIC_ARN}))
    client = await aiohttp_client(create_app(settings, sns_endpoint_url=sns_host.url))
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


# --- a gateway killed mid-send: its leases end, the outcome is unknown, an event or one resend settles it -------


@pytest.fixture
def gateway_env(database_url):
    return {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_DISPATCH_LEASE_SECONDS": "2",
        "MAILGW_UNKNOWN_RESEND_SECONDS": "4",
    }


def start_gateway(env):
    address = f"127.0.0.1:{free_port()}"
    process = start(["-m", "gateway"], env | {"MAILGW_GRPC_ADDR": address})
    channel = grpc.insecure_channel(address)
    wait_until(lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1), process)
    return process, pb_grpc.MailGatewayServiceStub(channel)


@pytest.mark.slow
async def test_sigkill_mid_dispatch_loses_nothing(gateway_env, ses, make_sidecar, signer):
    """12 messages; the gateway dies (SIGKILL) while SES holds 4 of them, answers lost. Another gateway sends the 8
    it never attempted; the 4 turn UNKNOWN when their leases end; a Send event settles 2; the other 2 are sent once
    more (at least once: SES took them the first time too)."""
    ses.delay = 60  # SES takes each message at once and never answers
    first, stub = await asyncio.to_thread(start_gateway, gateway_env | {"MAILGW_DISPATCH_WORKERS": "4"})
    requests = [pb.SendEmailRequest(to=f"user{n}@example.org", subject="Hi", text_body="x") for n in range(12)]
    ids = [(await asyncio.to_thread(stub.SendEmail, request, timeout=5)).message_id for request in requests]
    await asyncio.to_thread(wait_until, lambda: len(ses.accepted) == 4)
    first.kill()  # no cleanup of any kind
    await asyncio.to_thread(first.wait)
    in_flight = ses.accepted_ids()
    ses.delay = 0

    second, stub = await asyncio.to_thread(start_gateway, gateway_env)
    try:
        unknown = set(in_flight)

        def interrupted() -> bool:
            return {m for m in ids if settled(stub, m, timeout=0).state == pb.MESSAGE_STATE_UNKNOWN} == unknown

        await asyncio.to_thread(wait_until, interrupted)
        sidecar = await make_sidecar()
        for message_id in in_flight[:2]:  # SES's Send events, through SNS, name the message by its tag
            event = ses_samples.send_event(tags={"message_id": message_id})
            response = await sidecar.post(
                "/sns", data=json.dumps(signed_envelope(signer, message=ses_samples.message(event)))
            )
            assert response.status == 200
        final = {
            m: await asyncio.to_thread(settled, stub, m, timeout=30, waiting=(*IN_FLIGHT, pb.MESSAGE_STATE_UNKNOWN))
            for m in ids
        }
    finally:
        second.terminate()
        assert await asyncio.to_thread(second.wait, 20) == 0

    assert {m: f.state for m, f in final.items()} == {m: pb.MESSAGE_STATE_SENT for m in ids}
    sends = Counter(ses.accepted_ids())
    duplicated = sorted(m for m, count in sends.items() if count > 1)
    assert set(sends) == set(ids)  # nothing lost
    assert duplicated == sorted(in_flight[2:])  # only the unknown ones no event settled, and only once more
    assert max(sends.values()) == 2
    print(
        f"SIGKILL mid-dispatch: {len(ids)} accepted, {len(ids) - len(in_flight)} sent after the restart, "
        f"{len(in_flight)} unknown ({len(in_flight) - len(duplicated)} settled by a Send event, "
        f"{len(duplicated)} sent once more), {len(duplicated)} duplicated, 0 lost"
    )


# --- SIGTERM under load: the sidecar finishes what it took, acknowledges only what it committed ------------


@pytest.mark.slow
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
