"""`mailgw events`: the caller's event stream (WatchEvents) on the command line, one line per event, each ending with
the cursor to resume from; credentials as for `mailgw send` (MAILGW_CLIENT_TOKEN names the caller)."""

import argparse
import sys

import grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.cli.client import CallFailed, client_channel

TYPES = [name.removeprefix("EVENT_TYPE_").lower() for name in pb.EventType.keys() if name != "EVENT_TYPE_UNSPECIFIED"]


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    events = commands.add_parser(
        "events",
        parents=[client],
        help="what happened to your mail: the event stream, from a cursor",
        description="Your messages' state changes, the SES events received for them and status changes of the "
        "recipients you mailed, in the gateway's log order; each line ends with the cursor to resume from. Without "
        "--follow it prints what is there and exits; with it, it waits for more until Ctrl-C.",
    )
    events.add_argument("--cursor", default="", help="resume right after this cursor (default: from now)")
    events.add_argument("--follow", action="store_true", help="keep waiting for new events")
    events.add_argument("--type", action="append", default=[], choices=TYPES, metavar="TYPE",
                        help=f"only this type (repeat for more): {', '.join(TYPES)}")  # fmt: skip
    events.add_argument("--tenant", default="", help="only events of this tenant's messages")
    events.set_defaults(run=print_events)


def print_events(args: argparse.Namespace) -> int:
    types = [pb.EventType.Value(f"EVENT_TYPE_{name.upper()}") for name in args.type]
    request = pb.WatchEventsRequest(cursor=args.cursor, types=types, tenant=args.tenant)
    with client_channel(args.addr) as (channel, metadata):
        stream = pb_grpc.MailGatewayServiceStub(channel).WatchEvents(request, metadata=metadata)
        try:
            for event in stream:
                if event.type == pb.EVENT_TYPE_UNSPECIFIED:  # a keep-alive: the first says it has caught up
                    if not args.follow:
                        print(f"# caught up; resume with --cursor {event.cursor}")
                        stream.cancel()
                        return 0
                    continue
                print(describe(event), flush=True)
        except KeyboardInterrupt:
            stream.cancel()
            return 0
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                return 0
            raise CallFailed(err) from None
    print("# the gateway ended the stream", file=sys.stderr)
    return 1


def describe(event: pb.WatchEventsResponse) -> str:
    """One line: time, type, message (or contact), what changed, and the cursor."""
    kind = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_").lower()
    parts = [f"{event.time.ToDatetime():%Y-%m-%d %H:%M:%S}", kind]
    parts.append(f"message {event.message_id}" if event.message_id else f"contact {event.contact_id}")
    if event.previous_state:
        before = pb.MessageState.Name(event.previous_state).removeprefix("MESSAGE_STATE_").lower()
        after = pb.MessageState.Name(event.state).removeprefix("MESSAGE_STATE_").lower()
        parts.append(f"{before} -> {after}")
    if event.tenant:
        parts.append(f"tenant {event.tenant}")
    if event.bounce_type:
        parts.append(f"{event.bounce_type}/{event.bounce_subtype}")
    if event.diagnostic:
        parts.append(repr(event.diagnostic[:200]))
    return "  ".join(parts) + f"  cursor {event.cursor}"
