"""`mailgw tenants list|resume`: each tenant's own reputation guard through the admin service's ListTenants and
ResumeTenant (callers named in MAILGW_ADMIN_CALLERS; credentials as for `mailgw send`)."""

import argparse

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.cli.client import call, client_channel
from gateway.cli.dispatch import level_name, percent, when


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `tenants` command and its subcommands, on mailgw's subparsers; `client` holds the shared --addr option."""
    tenants = commands.add_parser(
        "tenants",
        help="tenants' own reputation: list them with their rates and queued mail, resume a paused one (admin callers)",
        description="Each tenant (SendEmail's tenant field) is judged on its own sends by the reputation guard's "
        "thresholds; a tenant past the pause level has its mail held until resumed. Through the gateway's admin "
        "service: the caller must be named in MAILGW_ADMIN_CALLERS; credentials as for `mailgw send`.",
    )
    actions = tenants.add_subparsers(dest="action", required=True, metavar="ACTION", help="list or resume")
    listing = actions.add_parser(
        "list",
        parents=[client],
        help="every tenant: level, rates over its window, queued and held messages",
        description="Every tenant in name order with its level (full pace, slowed, paused), its bounce and complaint "
        "rates over its own window of sends, and its queued messages (held ones while it is paused).",
    )
    listing.set_defaults(run=list_tenants)
    resume = actions.add_parser(
        "resume",
        parents=[client],
        help="resume a tenant its own rates paused or slowed",
        description="Resume one tenant on every gateway (within a second): its held messages are claimable again, "
        "taking turns with the rest of its callers' mail, and its window restarts. Your caller name is recorded.",
    )
    resume.add_argument("tenant", metavar="TENANT", help="the tenant's name")
    resume.add_argument("--reason", required=True, metavar="TEXT", help="why its mail may go again (recorded)")
    resume.set_defaults(run=resume_tenant)


def list_tenants(args: argparse.Namespace) -> int:
    token, shown = "", 0
    with client_channel(args.addr) as (channel, metadata):
        stub = pb_grpc.MailGatewayAdminServiceStub(channel)
        while True:
            page = call(stub.ListTenants, pb.ListTenantsRequest(page_size=1000, page_token=token), metadata)
            for tenant in page.tenants:
                print(describe(tenant))
                shown += 1
            token = page.next_page_token
            if not token:
                break
    if not shown:
        print("no tenants: no message was sent with a tenant yet")
    return 0


def describe(tenant: pb.Tenant) -> str:
    """One line (two when slowed or paused) of `mailgw tenants list`."""
    rates = (
        f"{tenant.sends:,} sends, {percent(tenant.bounce_rate)} bounces, {percent(tenant.complaint_rate)} complaints"
        + ("" if tenant.judged else " (too few to judge)")
    )
    queued = f"{tenant.queued:,} queued" + (f" ({tenant.held:,} held)" if tenant.held else "")
    line = f"{tenant.name}: {level_name(tenant.level)}; {rates}; {queued}"
    if tenant.level in (pb.DISPATCH_LEVEL_SLOWED, pb.DISPATCH_LEVEL_PAUSED):
        line += f"\n  since {when(tenant, 'changed_at')}: {tenant.reason} ({tenant.detail})"
    if tenant.ses_sending_status:
        cause = f" ({tenant.ses_status_cause})" if tenant.ses_status_cause else ""
        line += f"\n  in SES: {tenant.ses_sending_status}{cause}, read {when(tenant, 'ses_read_at')}"
    return line


def resume_tenant(args: argparse.Namespace) -> int:
    request = pb.ResumeTenantRequest(tenant=args.tenant, reason=args.reason)
    with client_channel(args.addr) as (channel, metadata):
        ended = call(pb_grpc.MailGatewayAdminServiceStub(channel).ResumeTenant, request, metadata)
    level = level_name(ended.previous_level)
    print(f"tenant {args.tenant} resumed; it was {level}: {ended.previous_reason} ({ended.previous_detail})")
    return 0
