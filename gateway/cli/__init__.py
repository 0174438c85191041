"""The `mailgw` command: run the servers, send a mail, follow it, ask a recipient's status."""

import argparse
import contextlib
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
from gateway.cli import aws as aws_command
from gateway.cli import dev as dev_command
from gateway.cli import dispatch as dispatch_cli
from gateway.cli import suppression as suppression_commands
from gateway.core.config import Settings

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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from gateway.process.gateway import main as serve

        serve()
    elif args.command == "feedback":
        from feedback_http.app import main as feedback

        feedback()
    elif args.command == "feedback-sqs":
        from feedback_http.sqs_process import main as feedback_sqs

        feedback_sqs()
    elif args.command == "run":
        from gateway.core.startup import run

        run(run_both)
    elif args.command == "aws":
        return aws_command.run(args)
    elif args.command == "dev":
        return dev_command.run(args)
    elif args.command in suppression_commands.COMMANDS:
        return suppression_commands.run(args)
    elif args.command == "send":
        request = pb.SendEmailRequest(
            to=args.to,
            subject=args.subject,
            text_body=args.text,
            html_body=args.html,
            from_address=args.from_address,
            reply_to=args.reply_to,
            request_id=args.request_id,
            tags=dict(args.tag),
        )
        response = call(args.addr, "SendEmail", request)
        print(f"accepted: message_id={response.message_id} contact_id={response.contact_id}")
        print(f"unsubscribe link: {response.unsubscribe_url}")  # the gateway's, as in the mail
    elif args.command == "message":
        response = call(args.addr, "GetMessage", pb.GetMessageRequest(message_id=args.message_id))
        print("\n".join(describe_message(response)))
    elif args.command == "status":
        field = "email" if "@" in args.contact else "contact_id"
        response = call(args.addr, "GetContactStatus", pb.GetContactStatusRequest(**{field: args.contact}))
        status_name = pb.ContactStatus.Name(response.status).removeprefix("CONTACT_STATUS_").lower()
        print(f"{response.email}: {status_name}" + (f" ({response.reason})" if response.reason else ""))
        print(f"  contact_id={response.contact_id} updated_at={response.updated_at.ToJsonString()}")
    elif args.command == "dispatch":
        from gateway.cli import dispatch as dispatch_cli

        return dispatch_cli.run(args)
    elif args.command == "contacts":
        return args.run(args)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mailgw",
        description="Mail gateway for Amazon SES. The servers read their settings from MAILGW_* variables (README).",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the gRPC gateway", description="Run the gRPC gateway.")
    commands.add_parser(
        "feedback",
        help="run the feedback sidecar (SNS webhook, unsubscribe pages)",
        description="Run the feedback sidecar: the SNS webhook for SES events and the unsubscribe pages.",
    )
    commands.add_parser(
        "feedback-sqs",
        help="take SES events from the SQS queue in MAILGW_SQS_QUEUE_URL (no HTTP server)",
        description="Long-poll the SQS queue subscribed to the SES feedback topic (MAILGW_SQS_QUEUE_URL, raw message "
        "delivery off): verify each SNS envelope as POST /sns does, apply it, delete it after the commit. SIGTERM or "
        "Ctrl-C finishes the batch under way and exits 0.",
    )
    commands.add_parser(
        "run",
        help="run the gateway and the sidecar together until Ctrl-C",
        description="Run the gateway and the feedback sidecar together; Ctrl-C or SIGTERM stops both.",
    )

    aws_command.add_commands(commands)
    dev_command.add_commands(commands)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--addr",
        default=os.environ.get("MAILGW_GRPC_ADDR", Settings.grpc_addr),
        metavar="HOST:PORT",
        help="the gateway to call (default: $MAILGW_GRPC_ADDR or %(default)s)",
    )
    send = commands.add_parser(
        "send",
        parents=[client],
        help="send one email through a running gateway",
        description="Send one email through a running gateway. Against a protected gateway, set "
        "MAILGW_CLIENT_TOKEN, MAILGW_CLIENT_CA, MAILGW_CLIENT_CERT and MAILGW_CLIENT_KEY.",
    )
    send.add_argument("--to", required=True, metavar="ADDRESS", help='the recipient, e.g. "Ada <ada@example.org>"')
    send.add_argument("--subject", required=True, metavar="TEXT", help="the subject line")
    send.add_argument("--text", default="", metavar="TEXT", help="the plain-text body")
    send.add_argument("--html", default="", metavar="HTML", help="the HTML body")
    send.add_argument(
        "--from",
        dest="from_address",
        default="",
        metavar="ADDRESS",
        help="the sender (default: the gateway's MAILGW_DEFAULT_FROM)",
    )
    send.add_argument("--reply-to", default="", metavar="ADDRESS", help="where replies go")
    send.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a repeat with the same key returns the first answer and sends nothing",
    )
    send.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_tag,
        metavar="NAME=VALUE",
        help="an SES message tag; repeat for more",
    )
    message = commands.add_parser(
        "message",
        parents=[client],
        help="show where a message is (queued, sent, bounced, ...)",
        description="Show an accepted message's state, its SES id, its last error and the SES events about it.",
    )
    message.add_argument("message_id", metavar="MESSAGE_ID", help="the message_id that send printed")
    status = commands.add_parser(
        "status",
        parents=[client],
        help="show a recipient's status",
        description="Show whether a recipient may be mailed, and why not.",
    )
    status.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    dispatch_cli.add_commands(commands)
    suppression_commands.add_parsers(commands)
    from gateway.cli.contacts import add_contacts_commands  # here: it imports this module's client helpers

    add_contacts_commands(commands, client)
    return root


def describe_message(response: pb.GetMessageResponse) -> list[str]:
    state = pb.MessageState.Name(response.state).removeprefix("MESSAGE_STATE_").lower()
    ses = f", SES id {response.ses_message_id}" if response.ses_message_id else ""
    lines = [f"{response.message_id}: {state}{ses}, {response.attempts} attempt{'s' * (response.attempts != 1)}"]
    error = response.last_error
    if error.reason:
        code = f" ({error.ses_error_code})" if error.ses_error_code else ""
        lines.append(f"  last error: {error.reason}{code}" + (f": {error.description}" if error.description else ""))
    lines += [f"  event: {event.type} at {event.time.ToJsonString()}" for event in response.events]
    lines.append(
        f"  contact_id={response.contact_id} created_at={response.created_at.ToJsonString()} "
        f"updated_at={response.updated_at.ToJsonString()}"
    )
    return [line.rstrip() for line in lines]


def _tag(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def call(address: str, method: str, request):
    """One RPC; a failure prints its code, its reason and what was wrong with which flag, and exits 1.

    Against a protected gateway: MAILGW_CLIENT_TOKEN (bearer token), MAILGW_CLIENT_CA (CA of the server's TLS
    certificate), MAILGW_CLIENT_CERT and MAILGW_CLIENT_KEY (client certificate for mutual TLS).
    """
    with client_channel(address) as (channel, metadata):
        stub = pb_grpc.MailGatewayServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=30, metadata=metadata)
        except grpc.RpcError as err:
            print("\n".join(describe_error(err)), file=sys.stderr)
            raise SystemExit(1) from None


@contextlib.contextmanager
def client_channel(address: str):
    """A channel to the gateway with the MAILGW_CLIENT_* credentials, and the metadata every call carries."""
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


def run_both() -> int:
    """The gateway and the sidecar as two processes; Ctrl-C (or SIGTERM, SIGHUP) stops both, and exits 0.

    Both settings, both addresses and the database are checked first, so neither starts when the other could not.
    """
    from feedback_http.config import FeedbackSettings
    from gateway.core.startup import claim_address
    from gateway.store.database import database
    from gateway.store.models import open_database

    gateway_settings, sidecar_settings = Settings.from_env(), FeedbackSettings.from_env()
    claim_address(gateway_settings.grpc_addr, "MAILGW_GRPC_ADDR")
    claim_address(sidecar_settings.http_addr, "MAILGW_HTTP_ADDR")
    if gateway_settings.metrics_addr:
        claim_address(gateway_settings.metrics_addr, "MAILGW_METRICS_ADDR")
    if sidecar_settings.feedback_metrics_addr:
        claim_address(sidecar_settings.feedback_metrics_addr, "MAILGW_FEEDBACK_METRICS_ADDR")
    open_database(gateway_settings.database_url)  # the tables, once; a database that cannot be used: one line
    database.close_all()
    # Each child in a process group of its own: the terminal's Ctrl-C reaches this process only, which asks each
    # child once to stop (SIGTERM), instead of each child hearing two signals (or one before its handlers are set).
    children = [
        subprocess.Popen([sys.executable, "-m", module], process_group=0) for module in ("gateway", "feedback_http")
    ]
    asked: set[int] = set()

    def forward(signum, _frame):
        for child in children:  # once each: a second SIGTERM would end a child still exiting by the default action
            if child.pid not in asked and child.poll() is None:
                asked.add(child.pid)
                child.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    forward(signal.SIGTERM, None)  # one exited: stop the other too
    return max(_exit_status(child.wait()) for child in children)


def _exit_status(returncode: int) -> int:
    """A child's exit status as `mailgw run`'s: a child ended by SIGTERM or SIGINT before its own handlers were set
    (still starting) was asked to stop, and did; another signal is 128 + its number, as shells report it."""
    if returncode >= 0:
        return returncode
    if -returncode in (signal.SIGTERM, signal.SIGINT):
        return 0
    return 128 - returncode


if __name__ == "__main__":
    sys.exit(main())
