"""`mailgw send`, `message`, `cancel` and `status`: send one mail through a running gateway (now or at a time),
follow it, stop it while it is queued, ask a recipient's status."""

import argparse

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.cli.client import call, client_channel


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """`send`, `message`, `cancel` and `status`, on mailgw's subparsers; `client` holds the shared --addr option."""
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
    send.add_argument(
        "--send-at",
        type=_time,
        metavar="TIME",
        help="when to send it, RFC 3339 (2026-12-24T08:00:00Z), at most 30 days ahead (default: now)",
    )
    send.set_defaults(run=send_email)
    cancel = commands.add_parser(
        "cancel",
        parents=[client],
        help="stop a message that is still queued (scheduled, or waiting for its turn)",
        description="Stop a queued message: it is never sent. One a dispatcher holds, or already settled, is refused.",
    )
    cancel.add_argument("message_id", metavar="MESSAGE_ID", help="the message_id that send printed")
    cancel.set_defaults(run=cancel_message)
    message = commands.add_parser(
        "message",
        parents=[client],
        help="show where a message is (queued, sent, bounced, ...)",
        description="Show an accepted message's state, its SES id, its last error and the SES events about it.",
    )
    message.add_argument("message_id", metavar="MESSAGE_ID", help="the message_id that send printed")
    message.set_defaults(run=show_message)
    status = commands.add_parser(
        "status",
        parents=[client],
        help="show a recipient's status",
        description="Show whether a recipient may be mailed, and why not.",
    )
    status.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    status.set_defaults(run=show_status)


def send_email(args: argparse.Namespace) -> int:
    request = pb.SendEmailRequest(
        to=args.to,
        subject=args.subject,
        text_body=args.text,
        html_body=args.html,
        from_address=args.from_address,
        reply_to=args.reply_to,
        request_id=args.request_id,
        tags=dict(args.tag),
        send_at=args.send_at,
    )
    with client_channel(args.addr) as (channel, metadata):
        response = call(pb_grpc.MailGatewayServiceStub(channel).SendEmail, request, metadata)
    print(f"accepted: message_id={response.message_id} contact_id={response.contact_id}")
    print(f"unsubscribe link: {response.unsubscribe_url}")  # the gateway's, as in the mail
    return 0


def show_message(args: argparse.Namespace) -> int:
    request = pb.GetMessageRequest(message_id=args.message_id)
    with client_channel(args.addr) as (channel, metadata):
        response = call(pb_grpc.MailGatewayServiceStub(channel).GetMessage, request, metadata)
    print("\n".join(describe_message(response)))
    return 0


def cancel_message(args: argparse.Namespace) -> int:
    request = pb.CancelMessageRequest(message_id=args.message_id)
    with client_channel(args.addr) as (channel, metadata):
        response = call(pb_grpc.MailGatewayServiceStub(channel).CancelMessage, request, metadata)
    print(f"{response.message_id}: cancelled")
    return 0


def show_status(args: argparse.Namespace) -> int:
    field = "email" if "@" in args.contact else "contact_id"
    request = pb.GetContactStatusRequest(**{field: args.contact})
    with client_channel(args.addr) as (channel, metadata):
        response = call(pb_grpc.MailGatewayServiceStub(channel).GetContactStatus, request, metadata)
    status_name = pb.ContactStatus.Name(response.status).removeprefix("CONTACT_STATUS_").lower()
    print(f"{response.email}: {status_name}" + (f" ({response.reason})" if response.reason else ""))
    print(f"  contact_id={response.contact_id} updated_at={response.updated_at.ToJsonString()}")
    return 0


def describe_message(response: pb.GetMessageResponse) -> list[str]:
    state = pb.MessageState.Name(response.state).removeprefix("MESSAGE_STATE_").lower()
    ses = f", SES id {response.ses_message_id}" if response.ses_message_id else ""
    lines = [f"{response.message_id}: {state}{ses}, {response.attempts} attempt{'s' * (response.attempts != 1)}"]
    error = response.last_error
    if error.reason:
        code = f" ({error.ses_error_code})" if error.ses_error_code else ""
        lines.append(f"  last error: {error.reason}{code}" + (f": {error.description}" if error.description else ""))
    if response.HasField("send_at"):
        lines.append(f"  send at {response.send_at.ToJsonString()}")
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


def _time(text: str) -> Timestamp:
    stamp = Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time such as 2026-12-24T08:00:00Z") from None
    return stamp
