"""The send queue and its dispatchers against the SES stand-in: SendEmail does not wait for SES; every failure is
classified once (retry, refused, pause, maybe sent); the guard is asked again right before the call; the shared
rate holds; nothing is lost or sent twice except where documented (a resend after an unknown outcome)."""

import asyncio
import datetime
import time
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.ses.transport import SesTransport
from gateway.store.database import database, utcnow
from gateway.store.models import Message
from support.processes import free_port, start, wait_until
from support.timings import FAST
from tests.rpc import IN_FLIGHT, error_info, message, quiet_for, rpc_failure, settled

REQUEST = pb.SendEmailRequest(to="alice@example.org", subject="Hi", text_body="Hello")
PROBE = 0.1  # MAILGW_PAUSE_PROBE_SECONDS of the pause tests (production: 60)


def send(stub, count: int = 1, **fields) -> list[str]:
    """Accept `count` messages to distinct recipients; their message ids."""
    base = {"subject": "Hi", "text_body": "Hello"} | fields
    return [
        stub.SendEmail(pb.SendEmailRequest(to=f"user{i}@example.org", **base), timeout=5).message_id
        for i in range(count)
    ]


def dispatch_health(gateway) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        request = health_pb2.HealthCheckRequest(service="mailgateway.v1.Dispatch")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def payload_of(message_id: str) -> str | None:
    with database.connection_context():
        return Message.get(message_id=message_id).payload


def hanging_transport(read_timeout: float = 0.3) -> SesTransport:
    """The SES transport with a short read timeout, so a stand-in that does not answer is seen as SES gone silent."""
    return SesTransport("my-leads-now-config", max_connections=4, read_timeout=read_timeout)


# --- accepting does not wait for SES ------------------------------------------------------------------------


def test_send_email_returns_while_ses_hangs_and_the_silence_is_an_unknown_outcome(make_gateway, ses):
    ses.delay = 30  # SES takes the message and never answers
    gateway, stub = make_gateway(with_transport=hanging_transport(), unknown_resend_seconds=0)

    started = time.monotonic()
    accepted = stub.SendEmail(REQUEST, timeout=2)
    assert time.monotonic() - started < 2
    assert message(stub, accepted.message_id).state in (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING)

    unknown = settled(stub, accepted.message_id)
    assert unknown.state == pb.MESSAGE_STATE_UNKNOWN  # maybe sent: never retried behind the caller's back
    assert (unknown.attempts, unknown.last_error.reason) == (1, "SES_NO_ANSWER")
    quiet_for(gateway, "dispatch-claim", "dispatch-housekeeping")
    assert len(ses.sent) == 1  # MAILGW_UNKNOWN_RESEND_SECONDS=0: left to an operator
    assert payload_of(accepted.message_id) is not None  # kept: it may yet be sent once more


def test_an_unknown_outcome_is_sent_once_more_when_no_event_settles_it(make_gateway, ses):
    ses.delay = 30
    gateway, stub = make_gateway(with_transport=hanging_transport(), unknown_resend_seconds=0.2)
    accepted = stub.SendEmail(REQUEST, timeout=2)
    assert settled(stub, accepted.message_id).state == pb.MESSAGE_STATE_UNKNOWN

    ses.delay = 0
    resent = settled(stub, accepted.message_id, waiting=(*IN_FLIGHT, pb.MESSAGE_STATE_UNKNOWN))

    assert (resent.state, resent.attempts) == (pb.MESSAGE_STATE_SENT, 2)
    # At least once: SES took the first request too (its answer was lost). Documented, and only once more.
    assert ses.accepted_ids() == [accepted.message_id] * 2
    quiet_for(gateway, "dispatch-claim", "dispatch-housekeeping")
    assert len(ses.sent) == 2


# --- not sent, retry -----------------------------------------------------------------------------------------


def test_a_throttle_storm_then_recovery_delivers_every_message_exactly_once(make_gateway, ses):
    ses.fail(429, "TooManyRequestsException", "Maximum sending rate exceeded.", times=25)
    _, stub = make_gateway()

    ids = send(stub, 10)
    results = [settled(stub, message_id, timeout=60) for message_id in ids]

    assert [r.state for r in results] == [pb.MESSAGE_STATE_SENT] * 10
    assert Counter(ses.accepted_ids()) == Counter(ids)  # each exactly once
    assert sum(r.attempts for r in results) == len(ses.sent) == 35
    throttled = [r for r in results if r.attempts > 1]
    assert throttled and all(r.last_error.reason == "SES_THROTTLED" for r in throttled)
    assert {r.last_error.ses_error_code for r in throttled} == {"TooManyRequestsException"}


def test_ses_server_errors_are_retried_with_backoff_until_sent(make_gateway, ses):
    ses.fail(500, "InternalFailure", "boom", times=2)
    _, stub = make_gateway()

    [message_id] = send(stub)
    sent = settled(stub, message_id, timeout=30)

    assert (sent.state, sent.attempts, sent.last_error.reason) == (pb.MESSAGE_STATE_SENT, 3, "SES_UNAVAILABLE")
    gaps = [later.at - earlier.at for earlier, later in zip(ses.sent, ses.sent[1:], strict=False)]
    base = FAST.retry_base_seconds  # production: 1 s
    assert base / 2 <= gaps[0] and base <= gaps[1]  # base, then twice that, each drawn between half and all of it


def test_an_unreachable_ses_is_retried_and_never_taken_for_maybe_sent(make_gateway, ses, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    _, stub = make_gateway()

    [message_id] = send(stub)
    waiting = wait_until(lambda: (m := message(stub, message_id)).attempts >= 2 and m)

    assert waiting.state in (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING)
    assert waiting.last_error.reason == "SES_UNREACHABLE"


def test_missing_credentials_are_retried_not_sent(make_gateway, ses, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    _, stub = make_gateway()

    [message_id] = send(stub)
    waiting = wait_until(lambda: (m := message(stub, message_id)).attempts >= 1 and m)

    assert waiting.state in (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING)
    assert waiting.last_error.reason == "SES_NO_CREDENTIALS"
    assert ses.sent == []


def test_a_message_that_cannot_be_sent_in_time_expires(make_gateway, ses):
    ses.fail(500, "InternalFailure", "boom", times=100)
    _, stub = make_gateway(max_message_age_seconds=1)

    [message_id] = send(stub)
    expired = settled(stub, message_id, timeout=30)

    assert expired.state == pb.MESSAGE_STATE_EXPIRED
    assert expired.last_error.reason == "SES_UNAVAILABLE"  # the last failure, not just "too old"
    assert payload_of(message_id) is None  # settled: the body is gone


# --- refused for good ----------------------------------------------------------------------------------------


@pytest.mark.one_database  # the failure table decides; recording a failure is proven on both elsewhere
@pytest.mark.parametrize(
    "status, code, text, reason",
    [
        (400, "MessageRejected", "Email address is not verified. The identities failed", "SES_IDENTITY_NOT_VERIFIED"),
        (400, "MessageRejected", "Illegal address", "SES_MESSAGE_REJECTED"),
        (400, "MailFromDomainNotVerifiedException", "MAIL FROM not verified", "SES_MAIL_FROM_DOMAIN_NOT_VERIFIED"),
        (400, "BadRequestException", "Missing final '@domain'", "SES_BAD_REQUEST"),
    ],
)  # fmt: skip
def test_a_refusal_for_good_fails_the_message_with_the_ses_code(make_gateway, ses, status, code, text, reason):
    ses.fail(status, code, text)
    gateway, stub = make_gateway()

    [message_id] = send(stub)
    failed = settled(stub, message_id)

    assert failed.state == pb.MESSAGE_STATE_FAILED
    assert (failed.last_error.reason, failed.last_error.ses_error_code, failed.attempts) == (reason, code, 1)
    assert text in failed.last_error.description
    assert payload_of(message_id) is None
    quiet_for(gateway, "dispatch-claim", "dispatch-housekeeping")
    assert len(ses.sent) == 1  # never retried


# --- nobody can send: dispatch pauses --------------------------------------------------------------------------


@pytest.mark.one_database  # the pause is this process's gate; the queue's rows are the same on both databases
@pytest.mark.parametrize(
    "status, code, reason",
    [
        (400, "SendingPausedException", "SES_SENDING_PAUSED"),
        (400, "AccountSuspendedException", "SES_ACCOUNT_SUSPENDED"),
        (404, "NotFoundException", "SES_CONFIGURATION_SET_NOT_FOUND"),
    ],
)
def test_an_account_refusal_pauses_dispatch_and_a_probe_resumes_it(make_gateway, ses, caplog, status, code, reason):
    caplog.set_level("INFO")
    ses.fail(status, code, "no", times=1000)
    gateway, stub = make_gateway(pause_probe_seconds=PROBE)

    ids = send(stub, 12)
    wait_until(lambda: dispatch_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING)
    during_pause = len(ses.sent)  # the attempts already in flight when the first refusal came
    time.sleep(3 * PROBE)  # three probe periods: what the pause is about is the rate of probes

    # The queue waits instead of failing one message after another: a single probe a period, nothing failed.
    assert 1 <= len(ses.sent) - during_pause <= 4
    assert {message(stub, m).state for m in ids} <= {pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING}
    assert any(message(stub, m).last_error.reason == reason for m in ids)
    assert f"dispatch paused: {reason}" in caplog.text
    assert stub.SendEmail(REQUEST, timeout=5).message_id  # accepting goes on

    ses.clear_failures()
    assert [settled(stub, m, timeout=10).state for m in ids] == [pb.MESSAGE_STATE_SENT] * 12
    assert dispatch_health(gateway) == health_pb2.HealthCheckResponse.SERVING
    assert "dispatch resumed" in caplog.text


def test_a_spent_daily_quota_holds_messages_until_ses_frees_some(make_gateway, ses):
    ses.max_24_hour_send, ses.sent_before = 3, 3  # GetAccount: the 24-hour quota is used up
    gateway, stub = make_gateway(pause_probe_seconds=PROBE)

    ids = send(stub, 3)
    wait_until(lambda: dispatch_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING)
    quiet_for(gateway, "dispatch-claim")
    assert ses.sent == []
    assert {message(stub, m).state for m in ids} == {pb.MESSAGE_STATE_QUEUED}  # waiting, not failed

    ses.max_24_hour_send = 100  # the rolling window frees some
    assert [settled(stub, m, timeout=10).state for m in ids] == [pb.MESSAGE_STATE_SENT] * 3
    assert dispatch_health(gateway) == health_pb2.HealthCheckResponse.SERVING


def test_a_quota_pause_without_permission_to_read_the_quota_is_probed_with_a_message(make_gateway, ses):
    """Without ses:GetAccount (the README's MAILGW_SEND_RATE setup), SES's own quota refusal pauses dispatch, and
    a message probes whether the window has freed some."""
    ses.account_error = (400, "AccessDeniedException")
    ses.fail(429, "TooManyRequestsException", "Daily message quota exceeded.", times=3)
    gateway, stub = make_gateway(pause_probe_seconds=PROBE, send_rate=50)

    ids = send(stub, 3)
    wait_until(lambda: dispatch_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING)

    assert [settled(stub, m, timeout=30).state for m in ids] == [pb.MESSAGE_STATE_SENT] * 3
    assert dispatch_health(gateway) == health_pb2.HealthCheckResponse.SERVING


def test_the_daily_quota_read_from_ses_is_not_overrun(make_gateway, ses):
    ses.max_24_hour_send, ses.sent_before = 5, 3  # two more today
    gateway, stub = make_gateway(pause_probe_seconds=60)

    ids = send(stub, 4)
    wait_until(lambda: len(ses.sent) == 2)
    quiet_for(gateway, "dispatch-claim", "dispatch-housekeeping")

    assert len(ses.sent) == 2
    assert sorted(message(stub, m).state for m in ids) == [pb.MESSAGE_STATE_QUEUED] * 2 + [pb.MESSAGE_STATE_SENT] * 2


def test_the_ses_daily_quota_error_pauses_instead_of_failing(make_gateway, ses):
    ses.fail(429, "TooManyRequestsException", "Daily message quota exceeded.", times=2)
    gateway, stub = make_gateway(pause_probe_seconds=PROBE)

    [message_id] = send(stub)
    wait_until(lambda: dispatch_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING)

    assert settled(stub, message_id, timeout=10).state == pb.MESSAGE_STATE_SENT
    assert message(stub, message_id).last_error.reason == "SES_DAILY_QUOTA_EXCEEDED"


# --- the guard at the last moment ---------------------------------------------------------------------------


async def test_an_unsubscribe_between_acceptance_and_dispatch_stops_the_send(make_gateway, ses, make_sidecar):
    _, accepting = make_gateway(dispatch_workers=0)  # a replica that only accepts
    accepted = await asyncio.to_thread(accepting.SendEmail, REQUEST, timeout=5)
    assert (await asyncio.to_thread(message, accepting, accepted.message_id)).state == pb.MESSAGE_STATE_QUEUED

    sidecar = await make_sidecar()  # the recipient presses one-click unsubscribe while the message waits
    response = await sidecar.post(f"/unsubscribe/{accepted.contact_id}", data="List-Unsubscribe=One-Click")
    assert response.status == 200
    _, dispatching = await asyncio.to_thread(make_gateway)

    suppressed = await asyncio.to_thread(settled, dispatching, accepted.message_id)
    assert suppressed.state == pb.MESSAGE_STATE_SUPPRESSED
    assert (suppressed.last_error.reason, suppressed.attempts) == ("RECIPIENT_SUPPRESSED", 0)
    assert "unsubscribed" in suppressed.last_error.description
    assert ses.sent == []
    assert payload_of(accepted.message_id) is None


def test_an_accept_only_replica_dispatches_nothing_and_reports_no_dispatch_health(make_gateway, ses):
    gateway, stub = make_gateway(dispatch_workers=0)

    [message_id] = send(stub)
    time.sleep(10 * FAST.poll_seconds)  # no loop to wait for: this replica has none (it would have claimed by now)

    assert message(stub, message_id).state == pb.MESSAGE_STATE_QUEUED and ses.sent == []
    with pytest.raises(grpc.RpcError) as unknown:
        dispatch_health(gateway)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


# --- local mode -------------------------------------------------------------------------------------------------


def test_the_outbox_transport_goes_through_the_same_queue(make_gateway, ses, tmp_path):
    _, stub = make_gateway(transport="outbox")

    [message_id] = send(stub)
    written = settled(stub, message_id)

    assert written.state == pb.MESSAGE_STATE_SENT and written.ses_message_id.startswith("outbox-")
    [eml] = (tmp_path / "outbox").glob(f"*{written.ses_message_id}.eml")
    assert f"/unsubscribe/{written.contact_id}" in eml.read_text()
    assert ses.sent == []


# --- pacing ---------------------------------------------------------------------------------------------------------


def rate_over(requests) -> float:
    """Requests per second between the first and the last: a burst allowance cannot make this exceed the rate by
    more than one bucket over the window."""
    times = sorted(r.at for r in requests)
    return (len(times) - 1) / (times[-1] - times[0])


def test_dispatch_paces_to_ses_max_send_rate(make_gateway, ses):
    ses.max_send_rate = 10
    _, stub = make_gateway()

    ids = send(stub, 20)
    assert [settled(stub, m, timeout=30).state for m in ids] == [pb.MESSAGE_STATE_SENT] * 20

    assert rate_over(ses.sent) <= 10 * 1.15


@pytest.mark.slow
def test_two_gateway_processes_on_one_database_share_one_rate(database_url, ses, tmp_path):
    """Each would send at 10/s on its own; together they stay within 10/s, and no message goes out twice."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_SEND_RATE": "10",
    }
    gateways = [start(["-m", "gateway"], env | {"MAILGW_GRPC_ADDR": address}) for address in addresses]
    try:
        stubs = []
        for process, address in zip(gateways, addresses, strict=True):
            channel = grpc.insecure_channel(address)
            health = health_pb2_grpc.HealthStub(channel)
            wait_until(lambda health=health: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
            stubs.append(pb_grpc.MailGatewayServiceStub(channel))
        ids = []
        for n in range(60):  # accepted by both, as a load balancer would spread them
            request = pb.SendEmailRequest(to=f"user{n}@example.org", subject="Hi", text_body="x")
            ids.append(stubs[n % 2].SendEmail(request, timeout=5).message_id)
        states = [settled(stubs[0], m, timeout=60).state for m in ids]
    finally:
        for process in gateways:
            process.terminate()
        codes = [process.wait(30) for process in gateways]

    assert codes == [0, 0]
    assert states == [pb.MESSAGE_STATE_SENT] * 60
    assert Counter(ses.accepted_ids()) == Counter(ids)  # each exactly once, whichever gateway sent it
    measured = rate_over(ses.sent)
    print(f"shared rate: {measured:.2f} messages/s against a limit of 10 ({database_url.split(':')[0]})")
    assert measured <= 10 * 1.15


# --- privacy and size ---------------------------------------------------------------------------------------------


def test_bodies_go_once_settled_and_messages_go_after_their_retention(make_gateway, ses):
    _, stub = make_gateway()
    old, recent = send(stub, 2)
    assert {settled(stub, m).state for m in (old, recent)} == {pb.MESSAGE_STATE_SENT}
    assert payload_of(old) is None and payload_of(recent) is None  # the body is deleted as soon as SES has it
    with database.connection_context():
        long_ago = utcnow() - datetime.timedelta(days=31)
        Message.update(settled_at=long_ago).where(Message.message_id == old).execute()

    _, restarted = make_gateway()  # purges at start, then hourly

    def purged():
        with database.connection_context():
            return not Message.select().where(Message.message_id == old).exists()

    wait_until(purged)
    code, _, details = rpc_failure(restarted.GetMessage, pb.GetMessageRequest(message_id=old))
    assert (code, error_info(details).reason) == (grpc.StatusCode.NOT_FOUND, "MESSAGE_NOT_FOUND")
    assert message(restarted, recent).state == pb.MESSAGE_STATE_SENT


def test_get_message_of_an_id_nobody_sent_is_not_found(gateway):
    code, _, details = rpc_failure(gateway.GetMessage, pb.GetMessageRequest(message_id="msg_" + "A" * 22))

    assert code == grpc.StatusCode.NOT_FOUND
    assert error_info(details).reason == "MESSAGE_NOT_FOUND"
