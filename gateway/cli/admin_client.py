"""Talking to the admin service from the command line: the channel's calls."""

import sys

import grpc

from gateway.cli.client import describe_error

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
