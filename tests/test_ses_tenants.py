"""SES tenants (MAILGW_SES_TENANTS): bootstrap creates a tenant and associates the identity and configuration set
(idempotent, through boto3 against the stand-in's real REST shapes); a running gateway names each message's tenant in
SendEmail, holds the mail of a tenant SES disabled or does not have until a read finds it enabled, follows a pause
of its own into SES's customer-managed status and back, and classifies SES's errors by the one failure table."""

import asyncio
import collections

import grpc
import pytest

from gateway.api.mailgateway.v1 import admin_pb2, admin_pb2_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.aws.bootstrap import Bootstrap, Plan
from gateway.aws.outcome import CREATED, DIFFERS, OK, Mode
from gateway.core.config import ConfigError, Settings
from gateway.core.failures import PAUSE, TENANT_HELD, classify_ses_answer
from support.processes import mailgw, wait_until
from tests.rpc import message, quiet_for, settled
from tests.test_aws_bootstrap import CONFIGURATION_SET, aws  # noqa: F401 (a fixture)
from tests.test_reputation import NOT_SERVING, SERVING, hard_bounce, health, post_feedback
from tests.test_tenants import GUARD, send, tenants_health

ACCOUNT_ARN = "arn:aws:ses:us-east-1:123456789012"
IDENTITY = "example.com"  # the settings fixture's MAILGW_DEFAULT_FROM is noreply@example.com
# Admins: anyone on loopback, as on `make run` (ListTenants shows what SES said).
SES_TENANTS = {
    "ses_tenants": True,
    "ses_tenant_status_seconds": 0.3,
    "send_rate": 50,
    "admin_allow_unauthenticated": True,
}


def tenant_lines(outcomes) -> list[str]:
    return [outcome.line() for outcome in outcomes if outcome.kind in ("SES tenant", "tenant resource")]


def bootstrap(*tenants: str, dry_run: bool = False) -> list:
    plan = Plan(CONFIGURATION_SET, "feedback", queue="feedback", tenants=tenants, identity=IDENTITY)
    return list(Bootstrap(plan, Mode(dry_run=dry_run)).run())


def ready_in_ses(ses, name: str, configuration_set: str = "my-leads-now-config") -> None:
    """A tenant as `mailgw aws bootstrap --tenant` leaves it: created, identity and configuration set associated."""
    arn = ses.tenants.create(name)
    prefix = arn.partition(":tenant/")[0]
    for resource in (f"identity/{IDENTITY}", f"configuration-set/{configuration_set}"):
        ses.tenants.resources[name][f"{prefix}:{resource}"] = 0.0


def admin_of(gateway):
    return admin_pb2_grpc.MailGatewayAdminServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))


def listed(gateway) -> dict[str, admin_pb2.Tenant]:
    answer = admin_of(gateway).ListTenants(admin_pb2.ListTenantsRequest(page_size=100), timeout=10)
    return {tenant.name: tenant for tenant in answer.tenants}


def tenant_of_sends(ses) -> collections.Counter:
    return collections.Counter((r.tags.get("tenant"), r.body.get("TenantName")) for r in ses.accepted)


# --- bootstrap --------------------------------------------------------------------------------------------------


def test_bootstrap_creates_a_tenant_with_its_associations_once_and_reports_what_ses_disabled(aws, ses):  # noqa: F811
    assert tenant_lines(bootstrap("acme", dry_run=True)) == [
        "SES tenant:          acme: would create",
        f"tenant resource:     acme -> identity {IDENTITY}: would create",
        f"tenant resource:     acme -> configuration-set {CONFIGURATION_SET}: would create",
    ]
    assert ses.tenants.tenants == {}

    first = bootstrap("acme")

    assert [(o.kind, o.state) for o in first if "tenant" in o.kind] == [
        ("SES tenant", CREATED),
        ("tenant resource", CREATED),
        ("tenant resource", CREATED),
    ]
    tenant = aws["sesv2"].get_tenant(TenantName="acme")["Tenant"]  # read back through boto3, as SES answers it
    assert tenant["TenantArn"].startswith(f"{ACCOUNT_ARN}:tenant/acme/")
    resources = aws["sesv2"].list_tenant_resources(TenantName="acme")["TenantResources"]
    assert sorted((r["ResourceType"], r["ResourceArn"]) for r in resources) == [
        ("CONFIGURATION_SET", f"{ACCOUNT_ARN}:configuration-set/{CONFIGURATION_SET}"),
        ("EMAIL_IDENTITY", f"{ACCOUNT_ARN}:identity/{IDENTITY}"),
    ]

    again = bootstrap("acme")

    assert [o.state for o in again if "tenant" in o.kind] == [OK, OK, OK]
    assert len(ses.tenants.called("CreateTenant")) == 1
    assert len(ses.tenants.called("CreateTenantResourceAssociation")) == 2

    ses.tenants.set_ses_status("acme", "DISABLED", "reputation findings")
    [disabled] = [o for o in bootstrap("acme") if o.kind == "SES tenant"]
    assert disabled.state == DIFFERS
    assert disabled.line() == (
        "SES tenant:          acme: differs: its sending is disabled in SES (the gateway holds its mail until it is "
        "enabled) (bootstrap does not change this)"
    )


@pytest.mark.slow
def test_the_command_takes_tenants_prints_the_setting_and_refuses_a_bad_name(aws, ses):  # noqa: F811
    env = {"MAILGW_SES_CONFIGURATION_SET": CONFIGURATION_SET, "MAILGW_DEFAULT_FROM": "App <noreply@Example.com>"}

    done = mailgw("aws", "bootstrap", "--tenant", "acme", "--tenant", "globex", timeout=60, **env)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "SES tenant:          globex: created" in lines
    assert f"tenant resource:     acme -> identity {IDENTITY}: created" in lines
    assert "MAILGW_SES_TENANTS=true" in lines
    assert sorted(ses.tenants.tenants) == ["acme", "globex"]

    bad = mailgw("aws", "bootstrap", "--tenant", "no spaces", timeout=60, **env)
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "--tenant must be 1-64 letters, digits, '-' or '_', not 'no spaces'" in bad.stderr
    no_sender = mailgw("aws", "bootstrap", "--tenant", "acme", timeout=60, MAILGW_DEFAULT_FROM="")
    assert no_sender.returncode == 2
    assert "--tenant needs MAILGW_DEFAULT_FROM" in no_sender.stderr


# --- the failure table and the settings --------------------------------------------------------------------------


def test_a_refusal_of_a_tenants_send_is_the_tenants_and_the_same_code_without_one_the_accounts():
    paused = classify_ses_answer(400, "SendingPausedException", "Sending is disabled for tenant acme.", tenant=True)
    missing = classify_ses_answer(404, "NotFoundException", "Tenant acme does not exist.", tenant=True)
    account = classify_ses_answer(400, "SendingPausedException", "Sending is paused for this account.")

    assert (paused.outcome, paused.reason) == (TENANT_HELD, "SES_TENANT_SENDING_PAUSED")
    assert (missing.outcome, missing.reason) == (TENANT_HELD, "SES_TENANT_NOT_FOUND")
    assert (account.outcome, account.reason) == (PAUSE, "SES_SENDING_PAUSED")


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"ses_tenants": True, "transport": "outbox"}, "MAILGW_SES_TENANTS needs MAILGW_TRANSPORT=ses, not 'outbox'"),
        ({"ses_tenants": True, "ses_tenant_status_seconds": 0}, "MAILGW_SES_TENANT_STATUS_SECONDS must be above 0"),
        ({"ses_tenant_pause_in_ses": True}, "MAILGW_SES_TENANT_PAUSE_IN_SES needs MAILGW_SES_TENANTS=true"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(changes, error):
    with pytest.raises(ConfigError) as refused:
        Settings(**changes)
    assert str(refused.value) == error


# --- a running gateway -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_send_names_its_tenant_and_a_disabled_or_missing_tenant_waits_until_ses_lets_it_send(make_gateway, ses):
    ready_in_ses(ses, "acme")
    ready_in_ses(ses, "globex")
    ses.tenants.set_ses_status("globex", "DISABLED", "high bounce rate")  # "ghost" SES does not have at all
    gateway, stub = make_gateway(**SES_TENANTS)

    acme = send(stub, "acme", 2)
    held = send(stub, "globex", 2) + send(stub, "ghost", 1)
    untenanted = stub.SendEmail(pb.SendEmailRequest(to="plain@example.org", subject="Hi", text_body="x")).message_id

    assert {settled(stub, m).state for m in acme + [untenanted]} == {pb.MESSAGE_STATE_SENT}
    quiet_for(gateway, "ses-tenants", "dispatch-claim")
    assert {message(stub, m).state for m in held} == {pb.MESSAGE_STATE_QUEUED}
    assert tenant_of_sends(ses) == {("acme", "acme"): 2, (None, None): 1}
    assert {r.body.get("TenantName") for r in ses.sent} == {"acme", None}  # the held ones were never tried
    tenants = listed(gateway)
    assert (tenants["acme"].ses_sending_status, tenants["acme"].HasField("ses_read_at")) == ("ENABLED", True)
    assert (tenants["globex"].ses_sending_status, tenants["globex"].ses_status_cause) == (
        "DISABLED",
        "SES: high bounce rate",
    )
    assert (tenants["globex"].queued, tenants["globex"].held) == (2, 2)
    assert (tenants["ghost"].ses_sending_status, tenants["ghost"].held) == ("MISSING", 1)

    ses.tenants.set_ses_status("globex", "ENABLED")
    ready_in_ses(ses, "ghost")  # what `mailgw aws bootstrap --tenant ghost` does

    assert {settled(stub, m).state for m in held} == {pb.MESSAGE_STATE_SENT}
    assert tenant_of_sends(ses) == {
        ("acme", "acme"): 2,
        ("globex", "globex"): 2,
        ("ghost", "ghost"): 1,
        (None, None): 1,
    }
    assert collections.Counter(ses.accepted_ids()).most_common(1)[0][1] == 1  # each sent once


@pytest.mark.slow
def test_a_read_ses_refuses_is_tried_again_and_the_first_send_waits_for_it(make_gateway, ses):
    ready_in_ses(ses, "acme")
    ses.tenants.fail("GetReputationEntity", 429, "TooManyRequestsException", "Too many requests", times=3)
    gateway, stub = make_gateway(**SES_TENANTS)

    [first] = send(stub, "acme", 1)

    assert settled(stub, first).state == pb.MESSAGE_STATE_SENT
    reads = ses.tenants.times_of("GetReputationEntity")
    assert len(reads) >= 4
    assert ses.accepted[0].at > reads[3]  # three refused, then the one that let it go


@pytest.mark.slow
def test_a_send_ses_refuses_for_its_tenant_holds_only_that_tenants_mail(make_gateway, ses):
    ready_in_ses(ses, "acme")
    gateway, stub = make_gateway(**SES_TENANTS | {"ses_tenant_status_seconds": 3600})
    [before] = send(stub, "acme", 1)
    assert settled(stub, before).state == pb.MESSAGE_STATE_SENT
    ses.tenants.set_ses_status("acme", "DISABLED", "reputation findings")  # between two reads an hour apart

    [refused] = send(stub, "acme", 1)
    wait_until(lambda: listed(gateway)["acme"].ses_sending_status == "DISABLED")  # read again at once
    untenanted = stub.SendEmail(pb.SendEmailRequest(to="plain@example.org", subject="Hi", text_body="x")).message_id

    assert settled(stub, untenanted).state == pb.MESSAGE_STATE_SENT  # the account's dispatch did not pause
    assert health(gateway, "mailgateway.v1.Dispatch") == SERVING
    waiting = message(stub, refused)
    assert (waiting.state, waiting.last_error.reason) == (pb.MESSAGE_STATE_QUEUED, "SES_TENANT_SENDING_PAUSED")
    assert listed(gateway)["acme"].held == 1


@pytest.mark.slow
async def test_a_pause_here_disables_the_tenant_in_ses_and_the_resume_enables_it(
    make_gateway, ses, make_sidecar, signer
):
    ready_in_ses(ses, "stale")
    options = GUARD | SES_TENANTS | {"ses_tenant_pause_in_ses": True}
    gateway, stub = await asyncio.to_thread(make_gateway, **options)
    sidecar = await make_sidecar()
    sent = [await asyncio.to_thread(settled, stub, m) for m in await asyncio.to_thread(send, stub, "stale", 20)]

    for i in range(6):  # 30 % of its sends, the pause threshold: signed SNS through the sidecar
        await post_feedback(sidecar, signer, hard_bounce(sent[i], f"stale{i}@example.org"))
    await asyncio.to_thread(wait_until, lambda: tenants_health(gateway) == NOT_SERVING)
    await asyncio.to_thread(wait_until, lambda: ses.tenants.customer_status("stale") == "DISABLED")
    waiting = await asyncio.to_thread(send, stub, "stale", 2, 20)
    await asyncio.to_thread(wait_until, lambda: listed(gateway)["stale"].ses_sending_status == "DISABLED")

    admin = admin_of(gateway)
    request = admin_pb2.ResumeTenantRequest(tenant="stale", reason="list cleaned")
    await asyncio.to_thread(admin.ResumeTenant, request, timeout=10)

    await asyncio.to_thread(wait_until, lambda: ses.tenants.customer_status("stale") == "ENABLED")
    assert {(await asyncio.to_thread(settled, stub, m)).state for m in waiting} == {pb.MESSAGE_STATE_SENT}
    updates = [call["SendingStatus"] for call in ses.tenants.called("UpdateReputationEntityCustomerManagedStatus")]
    assert updates == ["DISABLED", "ENABLED"]


@pytest.mark.slow
def test_a_refusal_that_is_the_accounts_pauses_dispatch_even_when_only_tenant_mail_meets_it(make_gateway, ses):
    ready_in_ses(ses, "acme")
    gateway, stub = make_gateway(**SES_TENANTS | {"pause_probe_seconds": 0.5})
    [first] = send(stub, "acme", 1)
    assert settled(stub, first).state == pb.MESSAGE_STATE_SENT
    ses.fail(400, "SendingPausedException", "Sending is paused for this account.", times=1000)

    [refused] = send(stub, "acme", 1)

    # SES still says acme may send: the refusal was the account's, and dispatch pauses as for any other message.
    wait_until(lambda: health(gateway, "mailgateway.v1.Dispatch") == NOT_SERVING)
    assert message(stub, refused).state == pb.MESSAGE_STATE_QUEUED
    ses.clear_failures()
    assert settled(stub, refused).state == pb.MESSAGE_STATE_SENT  # the probe found SES sending again
    wait_until(lambda: health(gateway, "mailgateway.v1.Dispatch") == SERVING)


@pytest.mark.slow
def test_without_ses_tenants_what_ses_said_holds_no_mail(make_gateway, ses):
    ready_in_ses(ses, "globex")
    ses.tenants.set_ses_status("globex", "DISABLED", "high bounce rate")
    gateway, stub = make_gateway(**SES_TENANTS)
    [held] = send(stub, "globex", 1)
    wait_until(lambda: listed(gateway)["globex"].held == 1)
    gateway.stop(None)

    _, again = make_gateway(send_rate=50)  # the same database, MAILGW_SES_TENANTS off

    assert settled(again, held).state == pb.MESSAGE_STATE_SENT
    [sent] = [r for r in ses.accepted if r.tags.get("message_id") == held]
    assert "TenantName" not in sent.body
