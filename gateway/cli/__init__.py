"""The `mailgw` command: run the servers, send a mail, follow it, ask a recipient's status."""

import argparse
import os
import sys

from gateway.cli import aws as aws_command
from gateway.cli import dev as dev_command
from gateway.cli import dispatch as dispatch_cli
from gateway.cli import messages, servers
from gateway.cli import suppression as suppression_commands
from gateway.cli.contacts import add_contacts_commands
from gateway.core.config import Settings


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

        run(servers.run_both)
    elif args.command == "aws":
        return aws_command.run(args)
    elif args.command == "dev":
        return dev_command.run(args)
    elif args.command in suppression_commands.COMMANDS:
        return suppression_commands.run(args)
    elif args.command == "send":
        return messages.send_email(args)
    elif args.command == "message":
        return messages.show_message(args)
    elif args.command == "status":
        return messages.show_status(args)
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
    servers.add_commands(commands)

    aws_command.add_commands(commands)
    dev_command.add_commands(commands)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--addr",
        default=os.environ.get("MAILGW_GRPC_ADDR", Settings.grpc_addr),
        metavar="HOST:PORT",
        help="the gateway to call (default: $MAILGW_GRPC_ADDR or %(default)s)",
    )
    messages.add_commands(commands, client)
    dispatch_cli.add_commands(commands)
    suppression_commands.add_parsers(commands)
    add_contacts_commands(commands, client)
    return root


if __name__ == "__main__":
    sys.exit(main())
