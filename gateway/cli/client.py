"""Talking to the gateway from the command line, for every command that does: the --addr option, the channel with the
MAILGW_CLIENT_* credentials, one way to make a call, and what a user reads of a refused one."""

import argparse
import contextlib
import os

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.core.config import Settings

CALL_TIMEOUT = 60.0  # seconds; an import's batch of 1,000 rows is the longest unary call

# Request fields as the user typed them on this command line, so an error names the flag, not the proto field.
FLAGS = {
    "to": "--to",
    "subject": "--subject",
    "text_body": "--text",
    "html_body": "--html",
    "from_address": "--from",
    "reply_to": "--reply-to",
    "request_id": "--request-id",
    "tags": "--tag",
    "email": "CONTACT",
    "contact_id": "CONTACT",
    "contact": "CONTACT",
    "message_id": "MESSAGE_ID",
    "reason": "--reason",
    "status": "--status",
    "filter.statuses": "--status",
    "filter.updated_after": "--since",
    "filter.updated_before": "--until",
    "page_token": "--page-token",
}


def address_option() -> argparse.ArgumentParser:
    """The --addr option of every command that calls the gateway, as a parent parser."""
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument(
        "--addr",
        default=os.environ.get("MAILGW_GRPC_ADDR", Settings.grpc_addr),
        metavar="HOST:PORT",
        help="the gateway to call (default: $MAILGW_GRPC_ADDR or %(default)s)",
    )
    return option


class CallFailed(Exception):
    """The gateway refused a call, or did not answer; the text is what the user reads of it (describe_error)."""

    def __init__(self, err: grpc.RpcError):
        super().__init__("\n".join(describe_error(err)))


def call(method, request, metadata, *, timeout: float = CALL_TIMEOUT):
    """One unary RPC: `method` of a stub on client_channel's channel, with its metadata; CallFailed when it fails."""
    try:
        return method(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as err:
        raise CallFailed(err) from None


@contextlib.contextmanager
def client_channel(address: str):
    """A channel to the gateway with the MAILGW_CLIENT_* credentials, and the metadata every call carries.

    Against a protected gateway: MAILGW_CLIENT_TOKEN (bearer token), MAILGW_CLIENT_CA (CA of the server's TLS
    certificate), MAILGW_CLIENT_CERT and MAILGW_CLIENT_KEY (client certificate for mutual TLS).
    """
    env = os.environ
    if env.get("MAILGW_CLIENT_CA"):
        ca, key, cert = (
            _read_optional(env.get(name)) for name in ("MAILGW_CLIENT_CA", "MAILGW_CLIENT_KEY", "MAILGW_CLIENT_CERT")
        )
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert))
    else:
        channel = grpc.insecure_channel(address)
    token = env.get("MAILGW_CLIENT_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with channel:
        yield channel, metadata


def describe_error(err: grpc.RpcError) -> list[str]:
    """The lines a user reads: the code and message, each bad flag with what is wrong, the ErrorInfo reason."""
    status = rpc_status.from_call(err)
    details = list(status.details) if status else []
    violations = []
    reason_line = ""
    for detail in details:
        info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason_line = " ".join([f"reason={info.reason}", *(f"{k}={v}" for k, v in sorted(info.metadata.items()))])
        elif detail.Unpack(bad_request):
            violations = [(_flag(v.field), v.description) for v in bad_request.field_violations]
    message = "the request is invalid" if violations else err.details()
    lines = [f"error: {err.code().name}: {message}"]
    lines += [f"  {flag}: {description}" for flag, description in violations]
    if reason_line:
        lines.append(f"  {reason_line}")
    return [line.rstrip() for line in lines]


def _flag(field: str) -> str:
    name, bracket, key = field.partition("[")
    if name == "tags" and bracket:
        return f"--tag {key.removesuffix(']')}=…"
    return FLAGS.get(field, field)


def _read_optional(path: str | None) -> bytes | None:
    return open(path, "rb").read() if path else None
