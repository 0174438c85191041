"""The `mailgw` command: run the servers, send a mail, ask a recipient's status."""

import argparse
import os
import signal
import subprocess
import sys
import time

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailgw", description="Mail gateway for Amazon SES.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gRPC gateway")
    commands.add_parser("feedback", help="run the feedback sidecar (SNS webhook, unsubscribe pages)")
    commands.add_parser("run", help="run the gateway and the sidecar together until Ctrl-C")
    send = commands.add_parser("send", help="send one email through the running gateway")
    send.add_argument("--to", required=True)
    send.add_argument("--subject", required=True)
    send.add_argument("--text", default="", help="plain-text body")
    send.add_argument("--html", default="", help="HTML body")
    send.add_argument("--from", dest="from_address", default="")
    send.add_argument("--reply-to", default="")
    send.add_argument("--request-id", default="")
    send.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE")
    status = commands.add_parser("status", help="show a recipient's status")
    status.add_argument("contact", help="an email address or a contact id")
    args = parser.parse_args(argv)

    if args.command == "serve":
        from gateway.server import main as serve

        serve()
    elif args.command == "feedback":
        from feedback_http.app import main as feedback

        feedback()
    elif args.command == "run":
        return run_both()
    elif args.command == "send":
        tags = dict(tag.partition("=")[::2] for tag in args.tag)
        request = pb.SendEmailRequest(
            to=args.to,
            subject=args.subject,
            text_body=args.text,
            html_body=args.html,
            from_address=args.from_address,
            reply_to=args.reply_to,
            request_id=args.request_id,
            tags=tags,
        )
        response = call("SendEmail", request)
        print(f"sent: message_id={response.message_id} contact_id={response.contact_id}")
    elif args.command == "status":
        field = "email" if "@" in args.contact else "contact_id"
        response = call("GetContactStatus", pb.GetContactStatusRequest(**{field: args.contact}))
        status_name = pb.ContactStatus.Name(response.status).removeprefix("CONTACT_STATUS_").lower()
        print(f"{response.email}: {status_name}" + (f" ({response.reason})" if response.reason else ""))
        print(f"  contact_id={response.contact_id} updated_at={response.updated_at.ToJsonString()}")
    return 0


def call(method: str, request):
    """One RPC to MAILGW_GRPC_ADDR; a failure prints its code, reason and details and exits 1.

    Against a protected gateway: MAILGW_CLIENT_TOKEN (bearer token), MAILGW_CLIENT_CA (CA of the server's TLS
    certificate), MAILGW_CLIENT_CERT and MAILGW_CLIENT_KEY (client certificate for mutual TLS).
    """
    env = os.environ
    address = Settings.from_env().grpc_addr
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
        stub = pb_grpc.MailGatewayServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=30, metadata=metadata)
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            status = rpc_status.from_call(err)
            for detail in status.details if status else []:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    print(
                        f"  reason={info.reason} " + " ".join(f"{k}={v}" for k, v in sorted(info.metadata.items())),
                        file=sys.stderr,
                    )
            raise SystemExit(1) from None


def _read_optional(path: str | None) -> bytes | None:
    return open(path, "rb").read() if path else None


def run_both() -> int:
    """The gateway and the sidecar as two processes; Ctrl-C (or SIGTERM) stops both."""
    children = [subprocess.Popen([sys.executable, "-m", module]) for module in ("gateway", "feedback_http")]

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    forward(signal.SIGTERM, None)  # one exited: stop the other too
    codes = [child.wait() for child in children]
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main())
