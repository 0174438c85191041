"""The `mailgw` command: run the servers, send a mail, follow it, ask a recipient's status, administer the gateway.
Each command module adds its commands to the parser, each with the function that runs it."""

import argparse
import sys

from gateway.cli import aws, contacts, dev, dispatch, events, messages, queue, servers, suppression, tenants
from gateway.cli.client import CallFailed, address_option
from gateway.core.startup import exit_code

EXIT_FAILED = 1  # the gateway refused a call, or did not answer

# In the order `mailgw --help` lists them.
COMMAND_MODULES = (servers, aws, dev, messages, events, queue, dispatch, tenants, suppression, contacts)


def main(argv: list[str] | None = None) -> int:
    """Run the command; what stops one before it can work (a bad setting, a taken address, a database that cannot be
    used) is one line and exit_code's code, and a failed call to the gateway is its lines and EXIT_FAILED."""
    args = parser().parse_args(argv)
    try:
        return exit_code(lambda: args.run(args))
    except CallFailed as failed:
        print(failed, file=sys.stderr)
        return EXIT_FAILED


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mailgw",
        description="Mail gateway for Amazon SES. The servers read their settings from MAILGW_* variables (README).",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = address_option()
    for module in COMMAND_MODULES:
        module.add_commands(commands, client)
    return root


if __name__ == "__main__":
    sys.exit(main())
