"""Each tenant's own reputation: one client company's bounces pause only its mail, held and queued across a restart
until an operator resumes it, while the other tenants and the account go on; in the store (both databases) and
through a running gateway with bounces delivered as signed SNS notifications through the sidecar."""

import asyncio
import collections
import itertools

import grpc
import pytest

from gateway.api.mailgateway.v1 import admin_pb2, admin_pb2_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.errors import InvalidRequest, TenantNotFound, TenantNotHeld
from gateway.sending import reputation
from gateway.sending.order import Order
from gateway.sending.tenant_guard import TenantGuard, TenantLimits, judge_tenant, resume_tenant
from gateway.store import queue, settling
from gateway.store.contacts import ensure_recipient
from gateway.store.database import database
from gateway.store.models import Message, MessageState, ReputationLevel
from support.processes import mailgw, wait_until
from tests.rpc import error_info, message, quiet_for, rpc_failure, settled
from tests.test_reputation import NOT_SERVING, SERVING, feedback, hard_bounce, health, limits, post_feedback, sample

PAUSED, SLOWED, NORMAL = ReputationLevel.PAUSED, ReputationLevel.SLOWED, ReputationLevel.NORMAL
TENANT_LIMITS = TenantLimits.of(limits(min_sends=1000), 10)  # the account is never judged here; a tenant from 10
BULK = 2


def queued(count: int, *, tenant: str, caller: str = "crm") -> None:
    contact = ensure_recipient("reader@example.org")
    with database.atomic():
        for _ in range(count):
            queue.enqueue(
                contact_pk=contact.pk,
                caller=caller,
                request_id=None,
                request_hash=None,
                payload="{}",
                priority=BULK,
                tenant=tenant,
            )


def claim(count: int) -> list[queue.Claimed]:
    with database.atomic():
        return Order(lambda caller: 1.0).claim(count, lease_seconds=60, worker="test")


def sent(count: int, *, tenant: str) -> list[queue.Claimed]:
    """`count` messages of `tenant`, accepted, claimed and recorded SENT."""
    queued(count, tenant=tenant)
    taken = claim(count)
    sent = [settling.AttemptOutcome(m.pk, MessageState.SENT, ses_message_id=f"ses-{m.pk}") for m in taken]
    settling.record_outcomes(sent)
    return taken


def bounce(messages: list[queue.Claimed]) -> None:
    for claimed in messages:
        event = hard_bounce(pb.GetMessageResponse(message_id=claimed.message_id, contact_id="c"), "reader@example.org")
        feedback(claimed, event)


def tenants_of(claimed: list[queue.Claimed]) -> list[str]:
    return [Message.get_by_id(m.pk).tenant for m in claimed]


# --- in the store -------------------------------------------------------------------------------------------------


def test_a_tenant_past_the_pause_level_is_paused_and_its_mail_held_while_the_others_are_claimed(db):
    stale = sent(20, tenant="stale")
    sent(20, tenant="fresh")
    bounce(stale[:7])  # 35 % of its sends; the account's 17.5 % is not judged here

    reading, level = judge_tenant("stale", TENANT_LIMITS)
    queued(3, tenant="stale")  # accepted while it is paused: held as they enter
    queued(3, tenant="fresh")

    assert level is PAUSED and (reading.sends, reading.bounces) == (20, 7)
    assert judge_tenant("fresh", TENANT_LIMITS)[1] is NORMAL
    assert tenants_of(claim(10)) == ["fresh"] * 3  # the claim passes the held mail over
    held = Message.select().where((Message.tenant == "stale") & (Message.state == MessageState.QUEUED))
    assert [m.held for m in held] == [True] * 3


def test_a_resume_releases_the_held_mail_into_the_current_rotation_and_restarts_the_window(db):
    stale = sent(20, tenant="stale")
    bounce(stale[:7])
    judge_tenant("stale", TENANT_LIMITS)
    queued(4, tenant="stale")
    queued(40, tenant="fresh")
    claim(20)  # the lane moves on while stale waits

    ended = resume_tenant("stale", "alice", "the stale list is removed")
    order = [tenant for _ in range(8) for tenant in tenants_of(claim(1))]  # one at a time: in the claim's order

    assert (ended.level, ended.reason) == (PAUSED, "REPUTATION_BOUNCE_RATE")
    assert collections.Counter(order) == {"stale": 4, "fresh": 4}  # turns taken with fresh, not all at once first
    longest_run = max(len(list(run)) for _, run in itertools.groupby(order))
    assert longest_run <= 2  # interleaved
    reading, level = judge_tenant("stale", TENANT_LIMITS)
    assert level is NORMAL and reading.sends == 0  # the bounces before the resume are not judged again
    assert (reading.resumed_by, reading.resume_reason) == ("alice", "the stale list is removed")


def test_a_slowed_tenant_takes_two_turns_a_message_against_its_callers_other_mail(db):
    stale = sent(20, tenant="stale")
    bounce(stale[:2])  # 10 %: past the slow level (5 %), below the pause one (30 %)
    assert judge_tenant("stale", TENANT_LIMITS)[1] is SLOWED

    queued(20, tenant="stale")
    queued(20, tenant="fresh")

    # The slow fraction is 0.25: each of its messages takes four turns, one send in five is its.
    assert collections.Counter(tenants_of(claim(15))) == {"fresh": 12, "stale": 3}


def test_a_resume_names_the_tenant_needs_a_reason_and_something_to_resume(db):
    sent(1, tenant="fresh")
    with pytest.raises(TenantNotFound):
        resume_tenant("nobody", "alice", "why not")
    with pytest.raises(TenantNotHeld):
        resume_tenant("fresh", "alice", "why not")
    with pytest.raises(InvalidRequest) as refused:
        resume_tenant("fresh", "alice", " ")
    assert set(refused.value.violations) == {"reason"}


def test_the_guard_judges_the_tenants_whose_mail_changed_and_reports_the_paused_ones(db):
    stale = sent(20, tenant="stale")
    sent(20, tenant="fresh")
    bounce(stale[:7])
    heard = []
    guard = TenantGuard(TENANT_LIMITS, 0.01, on_paused=heard.append)

    guard.check()

    assert heard == [["stale"]] and guard.paused == ["stale"]
    assert sample("mailgw_tenants_held", level="paused") == 1
    guard.check()  # nothing changed: nothing heard again
    assert heard == [["stale"]]
    resume_tenant("stale", "alice", "fixed")
    guard.follow()
    assert heard == [["stale"], []]


# --- through a running gateway ----------------------------------------------------------------------------------

GUARD = {
    "send_rate": 50,
    "reputation_window_sends": 1000,
    "reputation_min_sends": 1000,  # the account is never judged: this is the tenants' guard alone
    "tenant_reputation_min_sends": 10,
    "reputation_slow_bounce_percent": 6,
    "reputation_pause_bounce_percent": 30,
    "reputation_check_seconds": 0.2,
}


def send(stub, tenant: str, count: int, start: int = 0) -> list[str]:
    return [
        stub.SendEmail(
            pb.SendEmailRequest(to=f"{tenant}{i}@example.org", subject="Hi", text_body="x", tenant=tenant)
        ).message_id
        for i in range(start, start + count)
    ]


def tenants_health(gateway) -> int:
    return health(gateway, "mailgateway.v1.TenantReputation")


@pytest.mark.slow
async def test_a_tenants_bounces_pause_only_its_mail_across_a_restart_until_an_operator_resumes_it(
    make_gateway, ses, make_sidecar, signer
):
    gateway, stub = await asyncio.to_thread(make_gateway, **GUARD)
    sidecar = await make_sidecar()
    stale = [await asyncio.to_thread(settled, stub, m) for m in await asyncio.to_thread(send, stub, "stale", 20)]
    fresh_before = await asyncio.to_thread(send, stub, "fresh", 20)
    assert {m.state for m in stale} == {pb.MESSAGE_STATE_SENT}

    for i in range(6):  # 30 % of stale's sends, the pause threshold: signed SNS through the sidecar
        await post_feedback(sidecar, signer, hard_bounce(stale[i], f"stale{i}@example.org"))
    await asyncio.to_thread(wait_until, lambda: tenants_health(gateway) == NOT_SERVING)
    assert await asyncio.to_thread(health, gateway, "mailgateway.v1.Dispatch") == SERVING  # the account goes on

    waiting = await asyncio.to_thread(send, stub, "stale", 5, 20)
    fresh_after = await asyncio.to_thread(send, stub, "fresh", 5, 20)
    for message_id in fresh_before + fresh_after:
        assert (await asyncio.to_thread(settled, stub, message_id)).state == pb.MESSAGE_STATE_SENT
    await asyncio.to_thread(quiet_for, gateway, "dispatch-claim")
    assert {(await asyncio.to_thread(message, stub, m)).state for m in waiting} == {pb.MESSAGE_STATE_QUEUED}

    # A restart does not end it. (Admins: anyone on loopback, as on `make run`.)
    await asyncio.to_thread(gateway.stop, None)
    restarted, restarted_stub = await asyncio.to_thread(make_gateway, **GUARD, admin_allow_unauthenticated=True)
    await asyncio.to_thread(wait_until, lambda: tenants_health(restarted) == NOT_SERVING)
    address = f"127.0.0.1:{restarted.port}"
    listed = await asyncio.to_thread(mailgw, "tenants", "list", "--addr", address)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "fresh: full pace; 25 sends, 0 % bounces, 0 % complaints; 0 queued"
    assert lines[1] == "stale: paused; 20 sends, 30 % bounces, 0 % complaints; 5 queued (5 held)"
    assert lines[2].endswith(": REPUTATION_BOUNCE_RATE (bounce rate 30 % (6 of the last 20 sends) is at or above "
                             "the pause threshold 30 %)")  # fmt: skip
    assert not any(r.tags["message_id"] in waiting for r in ses.sent)

    done = await asyncio.to_thread(mailgw, "tenants", "resume", "stale", "--addr", address, "--reason", "list cleaned")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tenant stale resumed; it was paused: REPUTATION_BOUNCE_RATE")
    after = [await asyncio.to_thread(settled, restarted_stub, m) for m in waiting]
    assert {m.state for m in after} == {pb.MESSAGE_STATE_SENT}
    assert collections.Counter(ses.accepted_ids()).most_common(1)[0][1] == 1  # each sent once
    await asyncio.to_thread(wait_until, lambda: tenants_health(restarted) == SERVING)


def test_the_admin_service_lists_tenants_a_page_at_a_time_and_refuses_a_bad_resume(make_gateway):
    gateway, stub = make_gateway(dispatch_workers=0, admin_allow_unauthenticated=True)
    for name in ("acme", "globex", "initech"):
        send(stub, name, 1)
    admin = admin_pb2_grpc.MailGatewayAdminServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))

    first = admin.ListTenants(admin_pb2.ListTenantsRequest(page_size=2))
    second = admin.ListTenants(admin_pb2.ListTenantsRequest(page_size=2, page_token=first.next_page_token))

    assert [t.name for t in first.tenants] == ["acme", "globex"]
    assert [(t.name, t.queued, t.level) for t in second.tenants] == [("initech", 1, admin_pb2.DISPATCH_LEVEL_FULL_PACE)]
    assert second.next_page_token == ""
    for request, code, reason in (
        (admin_pb2.ResumeTenantRequest(tenant="nobody", reason="r"), grpc.StatusCode.NOT_FOUND, "TENANT_NOT_FOUND"),
        (admin_pb2.ResumeTenantRequest(tenant="acme", reason="r"), grpc.StatusCode.FAILED_PRECONDITION,
         "TENANT_NOT_PAUSED"),
        (admin_pb2.ResumeTenantRequest(tenant="no spaces", reason="r"), grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_REQUEST"),
    ):  # fmt: skip
        failed_code, _, details = rpc_failure(admin.ResumeTenant, request)
        assert (failed_code, error_info(details).reason) == (code, reason)
    failed_code, _, details = rpc_failure(admin.ListTenants, admin_pb2.ListTenantsRequest(page_token="%%%"))
    assert failed_code == grpc.StatusCode.INVALID_ARGUMENT
    queue_status = admin.GetQueueStatus(admin_pb2.GetQueueStatusRequest(tenant_count=2))
    assert [(depth.name, depth.queued) for depth in queue_status.tenants] == [("acme", 1), ("globex", 1)]
    failed_code, _, _ = rpc_failure(admin.GetQueueStatus, admin_pb2.GetQueueStatusRequest(tenant_count=101))
    assert failed_code == grpc.StatusCode.INVALID_ARGUMENT


def test_reputation_reads_the_account_and_a_tenant_apart(db):
    stale = sent(20, tenant="stale")
    sent(20, tenant="fresh")
    bounce(stale[:4])

    account, _, _ = reputation.read(limits())
    tenant, _, _ = reputation.read(limits(), tenant="stale")

    assert (account.sends, account.bounces) == (40, 4)
    assert (tenant.sends, tenant.bounces) == (20, 4)


@pytest.mark.slow
def test_mailgw_queue_shows_the_depth_by_priority_by_caller_and_the_busiest_tenants(make_gateway):
    gateway, stub = make_gateway(dispatch_workers=0, admin_allow_unauthenticated=True)
    for tenant, count in (("acme", 3), ("globex", 1)):
        send(stub, tenant, count)
    stub.SendEmail(pb.SendEmailRequest(to="ada@example.org", subject="Reset", text_body="x", priority=1))

    shown = mailgw("queue", "--addr", f"127.0.0.1:{gateway.port}", "--tenants", "1")

    assert shown.returncode == 0, shown.stderr
    lines = [line.split(", oldest ")[0] for line in shown.stdout.splitlines()]
    assert lines == [
        "by priority:",
        "  critical: 1 queued",
        "  transactional: 4 queued",
        "  bulk: 0 queued",
        "by caller:",
        "  (none): 5 queued",
        "busiest tenants:",
        "  acme: 3 queued",
    ]
