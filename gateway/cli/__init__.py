"""The `mailgw` command: run the servers, send a mail, follow it, ask a recipient's status, administer the gateway.
Each command module adds its commands to the parser, each with the function that runs it."""

import argparse
import os
import sys

from gateway.cli import aws, contacts, dev, dispatch, messages, servers, suppression
from gateway.core.config import Settings

# In the order `mailgw --help` lists them.
COMMAND_MODULES = (servers, aws, dev, messages, dispatch, suppression, contacts)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mailgw",
        description="Mail gateway for Amazon SES. The servers read their settings from MAILGW_* variables (README).",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--addr",
        default=os.environ.get("MAILGW_GRPC_ADDR", Settings.grpc_addr),
        metavar="HOST:PORT",
        help="the gateway to call (default: $MAILGW_GRPC_ADDR or %(default)s)",
    )
    for module in COMMAND_MODULES:
        module.add_commands(commands, client)
    return root


if __name__ == "__main__":
    sys.exit(main())
