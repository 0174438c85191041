"""The reputation guard through the admin service: GetDispatchStatus reads it and ResumeDispatch resumes a paused
dispatch, against a real gateway that sent through the SES stand-in and paused on feedback the sidecar's own
functions applied; on SQLite and PostgreSQL."""

import grpc
import pytest

from feedback_http.events import parse_ses_event
from feedback_http.feedback import record_event
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.store.models import database
from support import ses_samples
from support.processes import free_port, mailgw, wait_until
from tests.admin_rpc import BILLING_TOKEN, OPS_TOKEN, admin_stub, public_stub, start_admin_gateway
from tests.rpc import error_info, rpc_failure
from tests.test_reputation import GUARD, NOT_SERVING, SERVING, dispatch_health, hard_bounce, send_all


@pytest.fixture
def guarded(make_gateway):
    """An admin gateway whose reputation guard judges from 20 sends and pauses at 30 % bounces."""
    return start_admin_gateway(make_gateway, **GUARD)


def address(gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


def pause_by_hand(gateway) -> None:
    from gateway.store import reputation as store
    from gateway.store.models import ReputationLevel

    with database.connection_context():
        store.ensure()
        store.decide(ReputationLevel.PAUSED, reason="REPUTATION_COMPLAINT_RATE", detail="scripted", generation=0)
    wait_until(lambda: dispatch_health(gateway) == NOT_SERVING)


@pytest.mark.slow
def test_an_admin_reads_the_pause_and_resumes_dispatch(guarded):
    sent = send_all(public_stub(guarded, OPS_TOKEN), range(20))
    with database.connection_context(), database.atomic():  # one commit: the guard sees none or all ten
        for i in range(10):  # 10 hard bounces in 20 sends: 50 %, past the pause threshold
            event = hard_bounce(sent[i], f"reader{i}@example.org")
            record_event(f"bounce-{i}", parse_ses_event(ses_samples.message(event)))
    wait_until(lambda: dispatch_health(guarded) == NOT_SERVING)
    admin = admin_stub(guarded)

    status = admin.GetDispatchStatus(pb.GetDispatchStatusRequest())

    assert (status.level, status.reason) == (pb.DISPATCH_LEVEL_PAUSED, "REPUTATION_BOUNCE_RATE")
    assert status.detail.startswith("bounce rate 50 % (10 of the last 20 sends) is at or above the pause threshold")
    assert (status.sends, status.bounce_rate, status.complaint_rate, status.judged) == (20, 0.5, 0.0, True)
    assert (status.bounces, status.complaints) == (10, 0)
    assert status.HasField("changed_at") and status.window_start.ToDatetime() <= status.changed_at.ToDatetime()
    assert status.thresholds == pb.DispatchThresholds(
        slow_bounce_rate=0.06, slow_complaint_rate=0.05, pause_bounce_rate=0.30, pause_complaint_rate=0.10,
        slow_fraction=0.25, min_sends=20,
    )  # fmt: skip
    assert not status.HasField("resumed_at") and (status.resumed_by, status.resume_reason) == ("", "")

    resumed = admin.ResumeDispatch(pb.ResumeDispatchRequest(reason="removed the list that bounced"))

    assert (resumed.previous_level, resumed.previous_reason) == (pb.DISPATCH_LEVEL_PAUSED, "REPUTATION_BOUNCE_RATE")
    assert resumed.previous_detail == status.detail
    wait_until(lambda: dispatch_health(guarded) == SERVING)
    after = admin.GetDispatchStatus(pb.GetDispatchStatusRequest())
    assert (after.level, after.reason, after.sends, after.judged) == (pb.DISPATCH_LEVEL_FULL_PACE, "", 0, False)
    assert after.window_start.ToDatetime() >= status.changed_at.ToDatetime()  # the old sends are not judged again
    assert (after.resumed_by, after.resume_reason) == ("ops", "removed the list that bounced")  # the admin caller
    assert after.resumed_at.ToDatetime() >= status.changed_at.ToDatetime()
    # Recorded with the admin caller as the one who resumed, as `mailgw dispatch status` shows it.
    shown = mailgw("dispatch", "status", "--addr", address(guarded), MAILGW_CLIENT_TOKEN=OPS_TOKEN).stdout.splitlines()
    assert shown[0] == "dispatch: full pace"
    assert shown[-1].endswith(" by ops: removed the list that bounced") and shown[-1].startswith("last resumed: ")

    code, message, details = rpc_failure(admin.ResumeDispatch, pb.ResumeDispatchRequest(reason="once more"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == "dispatch is neither paused nor slowed by the reputation guard: nothing to resume"
    assert error_info(details).reason == "DISPATCH_NOT_PAUSED"


def test_a_resume_takes_an_admin_and_a_reason_and_a_refused_one_changes_nothing(guarded):
    pause_by_hand(guarded)

    billing = admin_stub(guarded, BILLING_TOKEN)
    for call, request in (
        (billing.ResumeDispatch, pb.ResumeDispatchRequest(reason="why not")),
        (billing.GetDispatchStatus, pb.GetDispatchStatusRequest()),
    ):
        code, _, details = rpc_failure(call, request)
        assert (code, error_info(details).reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_CALLER_REQUIRED")
    for reason in ("", " ", "x" * 1001):
        code, _, details = rpc_failure(admin_stub(guarded).ResumeDispatch, pb.ResumeDispatchRequest(reason=reason))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details["BadRequest"][0].field_violations] == ["reason"]

    status = admin_stub(guarded).GetDispatchStatus(pb.GetDispatchStatusRequest())
    assert (status.level, status.reason, status.detail) == (
        pb.DISPATCH_LEVEL_PAUSED, "REPUTATION_COMPLAINT_RATE", "scripted"
    )  # fmt: skip
    assert dispatch_health(guarded) == NOT_SERVING


@pytest.mark.slow
def test_mailgw_dispatch_prints_a_refusal_as_its_lines_and_a_gateway_that_does_not_answer_in_one(guarded):
    pause_by_hand(guarded)

    for args in (["status"], ["resume", "--reason", "why not"]):
        refused = mailgw("dispatch", *args, "--addr", address(guarded), MAILGW_CLIENT_TOKEN=BILLING_TOKEN)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr.splitlines() == [
            "error: PERMISSION_DENIED: only the callers in MAILGW_ADMIN_CALLERS may use the admin service",
            "  reason=ADMIN_CALLER_REQUIRED caller=billing",
        ]
    shown = mailgw("dispatch", "status", "--addr", address(guarded), MAILGW_CLIENT_TOKEN=OPS_TOKEN)
    assert shown.returncode == 0, shown.stderr
    paused, detail, hint, window, thresholds = shown.stdout.splitlines()
    assert paused.startswith("dispatch: paused since ") and paused.endswith(" UTC: REPUTATION_COMPLAINT_RATE")
    assert (detail, hint) == ("  scripted", '  resume with: mailgw dispatch resume --reason "…"')
    assert window.startswith("window: 0 sends since ")
    assert window.endswith(": 0 bounces (0 %), 0 complaints (0 %); too few to judge (fewer than 20)")
    assert thresholds == (  # the gateway's settings (GUARD), not the command's environment
        "thresholds: slow to 25 % of the pace at 6 % bounces or 5 % complaints; pause at 30 % bounces or 10 % "
        "complaints; judged from 20 sends"
    )
    assert dispatch_health(guarded) == NOT_SERVING  # nothing changed

    silent = mailgw("dispatch", "status", "--addr", f"127.0.0.1:{free_port()}", MAILGW_CLIENT_TOKEN=OPS_TOKEN)
    assert (silent.returncode, silent.stdout) == (1, "")
    [line] = silent.stderr.splitlines()
    assert line.startswith("error: UNAVAILABLE: ")
