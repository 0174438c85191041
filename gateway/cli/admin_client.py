"""Talking to the admin service from the command line: the channel's calls, statuses as users write them, filters."""

import sys

import grpc

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as public_pb
from gateway.cli import describe_error

STATUSES = ("active", "unsubscribed", "bounced", "complained")
CALL_TIMEOUT = 60.0


def call(method, request, metadata):
    """One unary call; a failure prints what describe_error makes of it and exits 1."""
    try:
        return method(request, timeout=CALL_TIMEOUT, metadata=metadata)
    except grpc.RpcError as err:
        fail(err)


def fail(err: grpc.RpcError) -> None:
    print("\n".join(describe_error(err)), file=sys.stderr)
    raise SystemExit(1)


def contact_filter(args) -> pb.ContactFilter:
    """The filter of --status, --since and --until."""
    found = pb.ContactFilter(statuses=[status_value(status) for status in args.status])
    if args.since:
        found.updated_after.FromDatetime(args.since)
    if args.until:
        found.updated_before.FromDatetime(args.until)
    return found


def status_value(status: str) -> int:
    """The API's value of a status as a file or the user writes it; UNSPECIFIED (which the service refuses, naming
    the row) for anything else."""
    if status.strip().lower() not in STATUSES:
        return public_pb.CONTACT_STATUS_UNSPECIFIED
    return public_pb.ContactStatus.Value(f"CONTACT_STATUS_{status.strip().upper()}")


def status_name(value: int) -> str:
    return public_pb.ContactStatus.Name(value).removeprefix("CONTACT_STATUS_").lower()
