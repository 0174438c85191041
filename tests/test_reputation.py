"""The reputation guard: our own bounce and complaint rates over the recent sends slow dispatch, then pause it on every
gateway of the database until an operator resumes it. Real sends through the SES stand-in, real signed SNS feedback
through the sidecar; the window's arithmetic on rows written by the store's and the sidecar's own functions."""

import asyncio
import datetime
import json
import time
from collections import Counter

import grpc
import prometheus_client
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedback_http.events import parse_ses_event
from feedback_http.feedback import record_event
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.config import ConfigError, Settings
from gateway.core.errors import InvalidRequest, NothingToResume
from gateway.sending import reputation
from gateway.sending.order import Order
from gateway.sending.pause import Pause, PauseGate, Reached
from gateway.store import queue, settling
from gateway.store import reputation as store
from gateway.store.contacts import ensure_recipient
from gateway.store.database import database, utcnow
from gateway.store.models import Message, MessageState, ReputationLevel, open_database
from support import ses_samples
from support.processes import mailgw, wait_until
from support.sns_signing import signed_envelope
from tests.rpc import message, settled

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
PAUSED, SLOWED, NORMAL = ReputationLevel.PAUSED, ReputationLevel.SLOWED, ReputationLevel.NORMAL


def limits(**changes) -> reputation.Limits:
    base = dict(
        slow_bounce=0.05,
        slow_complaint=0.01,
        pause_bounce=0.30,
        pause_complaint=0.10,
        slow_fraction=0.25,
        window_sends=100,
        window_days=7,
        min_sends=20,
    )
    return reputation.Limits(**(base | changes))


def window(sends: int, bounces: int = 0, complaints: int = 0) -> store.Window:
    return store.Window(utcnow(), sends, bounces, complaints, None)


# --- what the rates call for ------------------------------------------------------------------------------------------


def sample(name: str, **labels) -> float | None:
    """A value on this process's /metrics page (the gateways of these tests run in it)."""
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def test_too_few_sends_are_not_judged_however_bad():
    assert reputation.judge(window(19, bounces=19), limits()).level is NORMAL
    assert reputation.judge(window(20, bounces=19), limits()).level is PAUSED


def test_the_first_threshold_slows_the_second_pauses_and_the_verdict_says_why():
    assert reputation.judge(window(100, bounces=4), limits()) == reputation.Verdict(NORMAL)
    slowed = reputation.judge(window(100, bounces=5), limits())
    paused = reputation.judge(window(40, bounces=12), limits())

    assert (slowed.level, slowed.reason) == (SLOWED, "REPUTATION_BOUNCE_RATE")
    assert slowed.detail == "bounce rate 5 % (5 of the last 100 sends) is at or above the slow threshold 5 %"
    assert (paused.level, paused.reason) == (PAUSED, "REPUTATION_BOUNCE_RATE")
    assert paused.detail == "bounce rate 30 % (12 of the last 40 sends) is at or above the pause threshold 30 %"


def test_a_complaint_rate_is_named_before_a_bounce_rate_and_a_pause_before_a_slowdown():
    both = reputation.judge(window(100, bounces=40, complaints=20), limits())
    pause_by_bounces = reputation.judge(window(100, bounces=40, complaints=2), limits())

    assert (both.level, both.reason) == (PAUSED, "REPUTATION_COMPLAINT_RATE")
    assert (pause_by_bounces.level, pause_by_bounces.reason) == (PAUSED, "REPUTATION_BOUNCE_RATE")


# --- the window, on the store's own rows ------------------------------------------------------------------------------


def sent_messages(count: int) -> list[queue.Claimed]:
    """`count` messages to distinct recipients, accepted, claimed and recorded SENT as dispatch records them; the
    first is the newest send (one minute apart)."""
    for i in range(count):
        contact = ensure_recipient(f"reader{i}@example.org")
        queue.enqueue(contact_pk=contact.pk, caller="", request_id=None, request_hash=None, payload="{}")
    claimed = sorted(
        Order(lambda caller: 1.0).claim(count, lease_seconds=60, worker="test"), key=lambda m: m.pk
    )  # reader0 first
    outcomes = [settling.AttemptOutcome(m.pk, MessageState.SENT, ses_message_id=f"ses-{m.pk}") for m in claimed]
    settling.record_outcomes(outcomes)
    now = utcnow()
    for age, sent in enumerate(claimed):
        settled_minutes_ago(sent, age, now)
    return claimed


def settled_minutes_ago(sent: queue.Claimed, minutes: float, now: datetime.datetime) -> None:
    Message.update(settled_at=now - datetime.timedelta(minutes=minutes)).where(Message.id == sent.pk).execute()


def feedback(sent: queue.Claimed, event: dict) -> None:
    """An SES event about `sent`, applied as the sidecar applies it (the signed path: test_end_to_end)."""
    event["mail"]["messageId"] = f"ses-{sent.pk}"
    event["mail"]["tags"]["message_id"] = [sent.message_id]
    record_event(f"n-{sent.pk}-{event.get('eventType')}", parse_ses_event(ses_samples.message(event)))


def bounced(i: int, status: str = "5.1.1") -> list[dict]:
    return [ses_samples.bounced_recipient(f"reader{i}@example.org", status=status)]


def test_the_window_counts_hard_bounces_and_complaints_among_the_newest_sends_within_its_days(database_url):
    open_database(database_url)
    with database.connection_context():
        sent = sent_messages(8)
        feedback(sent[0], ses_samples.bounce_event("Permanent", "General", bounced(0)))
        feedback(sent[1], ses_samples.bounce_event("Transient", "General", bounced(1, "4.4.7")))  # soft: not counted
        # A permanent DSN that SES filed as transient: the event parser makes it a hard bounce, and so do we.
        feedback(sent[2], ses_samples.bounce_event("Transient", "General", bounced(2, "5.4.4")))
        feedback(sent[3], ses_samples.complaint_event(["reader3@example.org"], "abuse"))
        feedback(sent[4], ses_samples.complaint_event(["reader4@example.org"], "not-spam"))  # not a complaint
        feedback(sent[5], ses_samples.delivery_event(destination=["reader5@example.org"]))
        refused = ensure_recipient("refused@example.org")  # refused for good by SES: not a send
        queue.enqueue(contact_pk=refused.pk, caller="", request_id=None, request_hash=None, payload="{}")
        [claimed] = Order(lambda caller: 1.0).claim(1, lease_seconds=60, worker="test")
        settling.record_outcome(claimed.pk, MessageState.FAILED, reason="SES_MESSAGE_REJECTED")

        def counts(**changes):
            reading, _, _ = reputation.read(limits(**changes))
            return reading.sends, reading.bounces, reading.complaints

        assert counts() == (8, 2, 1)
        assert counts(window_sends=3) == (3, 2, 0)  # the newest three: sent[0..2]
        settled_minutes_ago(sent[0], 8 * 24 * 60, utcnow())  # sent eight days ago
        assert counts() == (7, 1, 1)
        assert counts(window_days=3.5 / 24 / 60) == (3, 1, 1)  # the last three and a half minutes: sent[1..3]


def test_a_resume_starts_a_new_window_and_a_check_of_the_old_one_cannot_pause_again(database_url):
    open_database(database_url)
    with database.connection_context():
        store.ensure()
        sent_messages(20)
        assert store.decide(PAUSED, reason="REPUTATION_BOUNCE_RATE", detail="bad", generation=0)
        before = utcnow()

        ended = reputation.resume("alice", "the bad import is removed")
        late = store.decide(PAUSED, reason="REPUTATION_BOUNCE_RATE", detail="bad", generation=ended.generation)
        reading, _, hold = reputation.read(limits())

    assert (ended.level, ended.reason) == (PAUSED, "REPUTATION_BOUNCE_RATE")
    assert late is False  # a gateway that judged the window before the resume does not undo it
    assert (reading.level, reading.sends, reading.judged) == (NORMAL, 0, False)
    assert reading.window_start >= before - datetime.timedelta(seconds=5)
    assert (reading.resumed_by, reading.resume_reason, hold.generation) == ("alice", "the bad import is removed", 1)


def test_a_resume_needs_an_operator_and_a_reason_and_something_to_resume(database_url):
    open_database(database_url)
    with database.connection_context():
        store.ensure()
        with pytest.raises(NothingToResume):
            reputation.resume("alice", "why not")
        store.decide(SLOWED, reason="REPUTATION_COMPLAINT_RATE", detail="d", generation=0)
        with pytest.raises(InvalidRequest) as refused:
            reputation.resume(" ", "\t")
        assert set(refused.value.violations) == {"operator", "reason"}
        with pytest.raises(InvalidRequest) as refused:  # a reason is shown on one line (logs, `mailgw dispatch status`)
            reputation.resume("alice", "fixed\n2026-12-02 INFO dispatch resumed by root")
        assert set(refused.value.violations) == {"reason"}
        assert store.load().level is SLOWED  # nothing changed

        assert reputation.resume("alice", "fixed").level is SLOWED
        assert store.load().level is NORMAL


# --- the pause gate holds ---------------------------------------------------------------------------------------------


def test_a_hold_claims_nothing_probes_nothing_and_its_release_leaves_an_ses_pause_probing():
    heard: list = []
    gate = PauseGate(0.01, heard.append)
    guard_pause = Pause("REPUTATION_BOUNCE_RATE", "bounce rate 9 %")
    ses_pause = Pause("SES_SENDING_PAUSED", "paused")

    gate.hold(guard_pause)
    gate.shut(ses_pause)  # an SES refusal of a message in flight when the hold began
    time.sleep(0.05)
    assert gate.claim_limit(16, lambda: True) == 0  # a probe would be due: a hold does not probe
    assert gate.current == guard_pause

    gate.release()
    assert gate.current == ses_pause and gate.claim_limit(16, lambda: True) == 1
    gate.probing_with(5)
    gate.after_attempt(5, None, Reached.ANSWERED)
    assert heard == [guard_pause, ses_pause, None]


# --- settings ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"MAILGW_REPUTATION_SLOW_BOUNCE_PERCENT": "9"}, "MAILGW_REPUTATION_SLOW_BOUNCE_PERCENT must not be above"),
        ({"MAILGW_REPUTATION_PAUSE_COMPLAINT_PERCENT": "0"}, "MAILGW_REPUTATION_PAUSE_COMPLAINT_PERCENT"),
        ({"MAILGW_REPUTATION_SLOW_FRACTION": "0"}, "MAILGW_REPUTATION_SLOW_FRACTION"),
        ({"MAILGW_REPUTATION_SLOW_FRACTION": "1.5"}, "MAILGW_REPUTATION_SLOW_FRACTION"),
        ({"MAILGW_REPUTATION_MIN_SENDS": "20000"}, "MAILGW_REPUTATION_MIN_SENDS must not exceed"),
        ({"MAILGW_REPUTATION_WINDOW_DAYS": "0"}, "MAILGW_REPUTATION_WINDOW_DAYS"),
        ({"MAILGW_REPUTATION_CHECK_SECONDS": "nan"}, "MAILGW_REPUTATION_CHECK_SECONDS"),
        ({"MAILGW_REPUTATION_GUARD": "maybe"}, "MAILGW_REPUTATION_GUARD"),
    ],
)
def test_a_bad_reputation_setting_names_its_variable(environ, named):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(environ)
    assert named in str(refused.value)


def test_defaults_sit_below_ses_review_and_pause_levels_and_a_short_retention_is_warned_about():
    settings = Settings()
    guard = reputation.Limits.from_settings(settings)

    assert (guard.slow_bounce, guard.slow_complaint) == (0.04, 0.0008)  # SES reviews at 5 % / 0.1 %
    assert (guard.pause_bounce, guard.pause_complaint) == (0.08, 0.004)  # SES may pause at 10 % / 0.5 %
    assert (guard.window_sends, guard.window_days, guard.min_sends) == (10000, 7, 1000)
    assert Settings().warnings() == []
    assert any("MAILGW_REPUTATION_WINDOW_DAYS" in w for w in Settings(message_retention_days=3).warnings())


# --- the whole path: sends, signed feedback, slower, paused, resumed --------------------------------------------------

GUARD = {
    "send_rate": 20,
    "reputation_window_sends": 100,
    "reputation_min_sends": 20,
    "reputation_slow_bounce_percent": 6,
    "reputation_pause_bounce_percent": 30,
    "reputation_slow_complaint_percent": 5,
    "reputation_pause_complaint_percent": 10,
    "reputation_slow_fraction": 0.25,
    "reputation_check_seconds": 0.2,
}


def health(gateway, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def dispatch_health(gateway) -> int:
    return health(gateway, "mailgateway.v1.Dispatch")


def guard_health(gateway) -> int:
    return health(gateway, "mailgateway.v1.ReputationGuard")


def send_all(stub, recipients: range) -> list[pb.GetMessageResponse]:
    """Accept one message to each reader<i>; once all left the queue, their GetMessage answers."""
    ids = [
        stub.SendEmail(pb.SendEmailRequest(to=f"reader{i}@example.org", subject="Hi", text_body="x")).message_id
        for i in recipients
    ]
    return [settled(stub, message_id, timeout=30) for message_id in ids]


async def post_feedback(sidecar, signer, event: dict) -> None:
    response = await sidecar.post("/sns", data=json.dumps(signed_envelope(signer, message=ses_samples.message(event))))
    assert response.status == 200, await response.text()


def hard_bounce(sent: pb.GetMessageResponse, address: str) -> dict:
    tags = {"contact_id": sent.contact_id, "message_id": sent.message_id}
    recipients = [ses_samples.bounced_recipient(address)]
    return ses_samples.bounce_event("Permanent", "General", recipients, message_id=sent.ses_message_id, tags=tags)


def rate_over(requests) -> float:
    times = sorted(r.at for r in requests)
    return (len(times) - 1) / (times[-1] - times[0])


@pytest.mark.slow
async def test_bounces_slow_dispatch_then_pause_it_across_a_restart_until_an_operator_resumes(
    make_gateway, ses, make_sidecar, signer, database_url, caplog
):
    caplog.set_level("INFO")
    gateway, stub = await asyncio.to_thread(make_gateway, **GUARD)
    sidecar = await make_sidecar()
    first = await asyncio.to_thread(send_all, stub, range(20))
    assert {m.state for m in first} == {pb.MESSAGE_STATE_SENT}

    # 2 hard bounces in 20 sends (10 %): past the slow threshold (6 %), below the pause one (30 %).
    for i in range(2):
        await post_feedback(sidecar, signer, hard_bounce(first[i], f"reader{i}@example.org"))
    await asyncio.to_thread(wait_until, lambda: "dispatch slowed to 25 % of its pace" in caplog.text)
    assert "REPUTATION_BOUNCE_RATE (bounce rate 10 % (2 of the last 20 sends)" in caplog.text
    before = len(ses.sent)
    slower = await asyncio.to_thread(send_all, stub, range(20, 32))  # 2 in 32 is still past 6 %

    assert {m.state for m in slower} == {pb.MESSAGE_STATE_SENT}
    measured = rate_over(ses.sent[before:])
    print(f"slowed dispatch: {measured:.2f} messages/s against 20 x 0.25 = 5 ({database_url.split(':')[0]})")
    assert measured <= 5 * 1.3  # loosely (full pace would be 20): a busy machine may send slower, never faster
    assert await asyncio.to_thread(dispatch_health, gateway) == SERVING  # slower is not paused

    # 8 more: 10 in 32 (31 %), past the pause threshold.
    for i in range(2, 10):
        await post_feedback(sidecar, signer, hard_bounce(first[i], f"reader{i}@example.org"))
    await asyncio.to_thread(wait_until, lambda: dispatch_health(gateway) == NOT_SERVING)
    assert await asyncio.to_thread(guard_health, gateway) == NOT_SERVING  # we stopped ourselves; SES did not
    why = "dispatch paused: REPUTATION_BOUNCE_RATE (bounce rate 31.2 % (10 of the last 32 sends) is at or above"
    assert why in caplog.text
    reading = gateway.dispatcher.reputation.reading
    assert (reading.sends, reading.bounces, reading.bounce_rate) == (32, 10, 10 / 32)
    assert sample("mailgw_reputation_rate_ratio", rate="bounce") == 10 / 32  # what /metrics shows
    assert sample("mailgw_reputation_level") == 2
    assert sample("mailgw_reputation_threshold_ratio", rate="bounce", action="pause") == 0.30

    def accepted_while_paused() -> list[str]:
        ids = [stub.SendEmail(pb.SendEmailRequest(to=f"late{i}@example.org", subject="Hi", text_body="x")).message_id
               for i in range(5)]  # fmt: skip
        time.sleep(1.5)
        return ids

    sent_before_pause = len(ses.sent)
    waiting = await asyncio.to_thread(accepted_while_paused)
    assert len(ses.sent) == sent_before_pause
    assert {message(stub, m).state for m in waiting} == {pb.MESSAGE_STATE_QUEUED}

    # A restart does not end it: the pause is the database's, not the process's. (Admins: anyone on loopback, as on
    # `make run`.)
    await asyncio.to_thread(gateway.stop, None)
    restarted, restarted_stub = await asyncio.to_thread(make_gateway, **GUARD, admin_allow_unauthenticated=True)
    assert await asyncio.to_thread(dispatch_health, restarted) == NOT_SERVING
    await asyncio.sleep(1)
    assert len(ses.sent) == sent_before_pause

    address = f"127.0.0.1:{restarted.port}"
    status = await asyncio.to_thread(mailgw, "dispatch", "status", "--addr", address)
    assert status.returncode == 0, status.stderr
    shown = status.stdout.splitlines()
    assert shown[0].startswith("dispatch: paused since ") and shown[0].endswith(": REPUTATION_BOUNCE_RATE")
    assert shown[1].startswith("  bounce rate 31.2 % (10 of the last 32 sends)")
    assert "window: 32 sends since " in status.stdout and ": 10 bounces (31.2 %), 0 complaints (0 %)" in status.stdout

    resume = ("dispatch", "resume", "--addr", address, "--reason", "the bad list is removed")
    done = await asyncio.to_thread(mailgw, *resume)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dispatch resumed; it was paused: REPUTATION_BOUNCE_RATE (bounce rate 31.2 %")

    after = [await asyncio.to_thread(settled, restarted_stub, m, timeout=30) for m in waiting]
    assert {m.state for m in after} == {pb.MESSAGE_STATE_SENT}
    assert Counter(ses.accepted_ids()) == Counter([m.message_id for m in first + slower] + waiting)  # once each
    await asyncio.sleep(1)  # five checks of a window that now starts at the resume: no pause again
    assert await asyncio.to_thread(dispatch_health, restarted) == SERVING
    assert await asyncio.to_thread(guard_health, restarted) == SERVING
    assert "dispatch at full pace: unauthenticated resumed it (the bad list is removed)" in caplog.text


async def test_complaints_pause_every_gateway_on_the_database_and_one_resume_resumes_them(
    make_gateway, ses, make_sidecar, signer, caplog
):
    caplog.set_level("INFO")
    guard = GUARD | {"reputation_min_sends": 10, "send_rate": 0}
    checking, stub = await asyncio.to_thread(make_gateway, **guard)
    following, _ = await asyncio.to_thread(make_gateway, **guard | {"reputation_check_seconds": 3600})
    sidecar = await make_sidecar()
    sent = await asyncio.to_thread(send_all, stub, range(10))

    # "not-spam": the recipient rescued the mail from a spam folder; no complaint.
    not_spam = ses_samples.complaint_event(["reader0@example.org"], "not-spam", message_id=sent[0].ses_message_id)
    await post_feedback(sidecar, signer, not_spam)
    await asyncio.sleep(1)
    assert "dispatch slowed" not in caplog.text and "dispatch paused" not in caplog.text

    # An identity notification (no tags): the message is found by SES's id. 1 in 10 is the pause threshold.
    abuse = ses_samples.complaint_event(
        ["reader1@example.org"], "abuse", message_id=sent[1].ses_message_id, identity=True
    )
    await post_feedback(sidecar, signer, abuse)
    for gateway in (checking, following):  # the second follows the decision stored by the first
        await asyncio.to_thread(wait_until, lambda gateway=gateway: dispatch_health(gateway) == NOT_SERVING)
        assert await asyncio.to_thread(guard_health, gateway) == NOT_SERVING
    assert "dispatch paused: REPUTATION_COMPLAINT_RATE (complaint rate 10 % (1 of the last 10 sends)" in caplog.text

    with database.connection_context():
        reputation.resume("bob", "the complainer was a test account")
    for gateway in (checking, following):
        await asyncio.to_thread(wait_until, lambda gateway=gateway: dispatch_health(gateway) == SERVING)


@pytest.mark.slow
def test_resume_from_the_command_line_refuses_what_would_change_nothing(make_gateway):
    gateway, _ = make_gateway(admin_allow_unauthenticated=True)
    address = f"127.0.0.1:{gateway.port}"
    nothing = mailgw("dispatch", "resume", "--addr", address, "--reason", "just in case")

    assert nothing.returncode == 1
    assert nothing.stderr.splitlines() == [
        "error: FAILED_PRECONDITION: dispatch is neither paused nor slowed by the reputation guard: nothing to resume",
        "  reason=DISPATCH_NOT_PAUSED",
    ]

    with database.connection_context():
        store.ensure()
        store.decide(PAUSED, reason="REPUTATION_BOUNCE_RATE", detail="d", generation=0)
    blank = mailgw("dispatch", "resume", "--addr", address, "--reason", " ")

    assert blank.returncode == 1
    assert blank.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: the request is invalid",
        "  --reason: required: why dispatch may resume, 1-1000 characters",
        "  reason=INVALID_REQUEST",
    ]
    with database.connection_context():
        assert store.load().level is PAUSED
