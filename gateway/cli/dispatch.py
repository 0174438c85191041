"""`mailgw dispatch status|resume`: the reputation guard through the admin service's GetDispatchStatus and
ResumeDispatch (callers named in MAILGW_ADMIN_CALLERS; credentials as for `mailgw send`)."""

import argparse

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.cli.client import call, client_channel

# The guard's wording (percent, the follow period) is imported when a dispatch command runs, not when mailgw builds its
# parser: it brings boto3 (through pacing), which `mailgw send` does not need.


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `dispatch` command and its subcommands, on mailgw's subparsers; `client` holds the shared --addr option."""
    dispatch = commands.add_parser(
        "dispatch",
        help="the reputation guard: show the bounce and complaint rates, resume a paused dispatch (admin callers only)",
        description="The reputation guard of every gateway on the gateway's database, through its admin service: its "
        "rates, and resuming dispatch after it paused. The caller must be named in the gateway's MAILGW_ADMIN_CALLERS; "
        "credentials as for `mailgw send` (MAILGW_CLIENT_*).",
    )
    actions = dispatch.add_subparsers(dest="action", required=True, metavar="ACTION", help="status or resume")
    status = actions.add_parser(
        "status",
        parents=[client],
        help="show the rates over the window and what the guard does",
        description="Show the bounce and complaint rates over the window of recent sends, the thresholds, and "
        "whether dispatch runs at full pace, slowed or paused (and why).",
    )
    status.set_defaults(run=show_status)
    resume = actions.add_parser(
        "resume",
        parents=[client],
        help="resume dispatch that the reputation guard paused or slowed",
        description="Resume dispatch on every gateway (within a second). The sends before now are not judged again: "
        "the window restarts, and nothing is judged until MAILGW_REPUTATION_MIN_SENDS new sends. Your caller name is "
        "recorded as who resumed it.",
    )
    resume.add_argument("--reason", required=True, metavar="TEXT", help="why it may resume (recorded)")
    resume.set_defaults(run=resume_dispatch)


def show_status(args: argparse.Namespace) -> int:
    request = pb.GetDispatchStatusRequest()
    with client_channel(args.addr) as (channel, metadata):
        status = call(pb_grpc.MailGatewayAdminServiceStub(channel).GetDispatchStatus, request, metadata)
    print("\n".join(describe(status)))
    return 0


def resume_dispatch(args: argparse.Namespace) -> int:
    from gateway.core.loops import PRODUCTION

    request = pb.ResumeDispatchRequest(reason=args.reason)
    with client_channel(args.addr) as (channel, metadata):
        ended = call(pb_grpc.MailGatewayAdminServiceStub(channel).ResumeDispatch, request, metadata)
    level = level_name(ended.previous_level)
    print(f"dispatch resumed; it was {level}: {ended.previous_reason} ({ended.previous_detail})")
    follows = f"{PRODUCTION.follow_seconds:g} s"
    print(f"  every dispatching gateway follows within {follows}; the sends before now are not judged again")
    return 0


def describe(status: pb.GetDispatchStatusResponse) -> list[str]:
    """What `mailgw dispatch status` prints of the guard's reading."""
    if status.level in (pb.DISPATCH_LEVEL_SLOWED, pb.DISPATCH_LEVEL_PAUSED):
        lines = [f"dispatch: {level_name(status.level)} since {when(status, 'changed_at')}: {status.reason}"]
        lines.append(f"  {status.detail}")
        if status.level == pb.DISPATCH_LEVEL_PAUSED:
            lines.append('  resume with: mailgw dispatch resume --reason "…"')
    else:
        lines = ["dispatch: full pace"]
    limits = status.thresholds
    lines.append(
        f"window: {status.sends:,} sends since {when(status, 'window_start')}: {status.bounces:,} bounces "
        f"({percent(status.bounce_rate)}), {status.complaints:,} complaints ({percent(status.complaint_rate)})"
        + ("" if status.judged else f"; too few to judge (fewer than {limits.min_sends:,})")
    )
    lines.append(
        f"thresholds: slow to {percent(limits.slow_fraction)} of the pace at {percent(limits.slow_bounce_rate)} "
        f"bounces or {percent(limits.slow_complaint_rate)} complaints; pause at {percent(limits.pause_bounce_rate)} "
        f"bounces or {percent(limits.pause_complaint_rate)} complaints; judged from {limits.min_sends:,} sends"
    )
    if status.HasField("resumed_at"):
        lines.append(f"last resumed: {when(status, 'resumed_at')} by {status.resumed_by}: {status.resume_reason}")
    return lines


def percent(fraction: float) -> str:
    from gateway.sending.reputation import percent as formatted

    return formatted(fraction)


def level_name(level: int) -> str:
    return pb.DispatchLevel.Name(level).removeprefix("DISPATCH_LEVEL_").lower().replace("_", " ")


def when(status, field: str) -> str:
    return f"{getattr(status, field).ToDatetime():%Y-%m-%d %H:%M:%S} UTC" if status.HasField(field) else "?"
