"""`mailgw queue`: the send queue's depth by priority, by caller and its busiest tenants, through the admin service's
GetQueueStatus (callers named in MAILGW_ADMIN_CALLERS; credentials as for `mailgw send`)."""

import argparse

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.cli.client import call, client_channel
from gateway.cli.dispatch import when


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `queue` command, on mailgw's subparsers; `client` holds the shared --addr option."""
    queue = commands.add_parser(
        "queue",
        parents=[client],
        help="queued messages by priority, by caller, and the busiest tenants (admin callers only)",
        description="The send queue of every gateway on the database: queued messages (held ones included) and the "
        "oldest one's acceptance time, by priority, by caller, and for the tenants with the most.",
    )
    queue.add_argument("--tenants", type=int, default=10, metavar="N", help="how many tenants to show (default 10)")
    queue.set_defaults(run=show_queue)


def show_queue(args: argparse.Namespace) -> int:
    request = pb.GetQueueStatusRequest(tenant_count=args.tenants)
    with client_channel(args.addr) as (channel, metadata):
        status = call(pb_grpc.MailGatewayAdminServiceStub(channel).GetQueueStatus, request, metadata)
    print("\n".join(describe(status)))
    return 0


def describe(status: pb.GetQueueStatusResponse) -> list[str]:
    lines = ["by priority:"] + [_line(depth) for depth in status.priorities]
    lines += ["by caller:"] + ([_line(depth) for depth in status.callers] or ["  (nothing queued)"])
    if status.tenants:
        lines += ["busiest tenants:"] + [_line(depth) for depth in status.tenants]
    return lines


def _line(depth: pb.QueueDepth) -> str:
    held = f" ({depth.held:,} held)" if depth.held else ""
    oldest = f", oldest {when(depth, 'oldest')}" if depth.HasField("oldest") else ""
    return f"  {depth.name or '(none)'}: {depth.queued:,} queued{held}{oldest}"
