"""`mailgw contacts reactivate` and `mailgw suppression sync`: run where the gateway's environment is (the database
and SES credentials of MAILGW_* and AWS_* variables), not through the gateway's API.

Only argparse is imported until one of them runs: `mailgw send` should not pay for boto3 and the database.
"""

import argparse
import getpass
import logging
import os
import sys
from datetime import timedelta

COMMANDS = ("contacts", "suppression")
FLAGS = {"actor": "--by", "reason": "--reason", "email": "CONTACT", "contact_id": "CONTACT"}
EXIT_FAILED, EXIT_CONFIG = 1, 2


def add_parsers(commands) -> None:
    """The two commands, under the `mailgw` parser's subcommands."""
    contacts = commands.add_parser(
        "contacts",
        help="change a contact by hand (reactivate)",
        description="Change a contact in the database named by MAILGW_DATABASE_URL.",
    )
    actions = contacts.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    again = actions.add_parser(
        "reactivate",
        help="let a bounced, complained or unsubscribed contact be mailed again",
        description="Make a contact active again and remove its address from SES's account suppression list; the "
        "history records who did it and why.",
    )
    again.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    again.add_argument("--reason", required=True, metavar="TEXT", help="why it may be mailed again (kept in history)")
    again.add_argument("--by", default=_user(), metavar="NAME", help="who reactivates it (default: %(default)s)")

    suppression = commands.add_parser(
        "suppression",
        help="sync SES's account suppression list now",
        description="SES's account-level suppression list, as the gateway syncs it every "
        "MAILGW_SES_SUPPRESSION_SYNC_SECONDS.",
    )
    steps = suppression.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    sync = steps.add_parser(
        "sync",
        help="import SES's list, then carry out the removals (and, with MAILGW_SES_SUPPRESSION_PUSH, the puts) due",
        description="One pass of the sync, as the gateway runs it: import what SES lists since the last pass, then "
        "carry out what is due on SES's list. Waits for no gateway: when one is syncing, says so and stops.",
    )
    sync.add_argument(
        "--full",
        action="store_true",
        help="list SES's whole list and settle contacts it no longer holds (a reconcile)",
    )


def run(args: argparse.Namespace) -> int:
    from gateway.ops.config import ConfigError, Settings
    from gateway.store.database import UNAVAILABLE
    from gateway.store.models import open_database
    from gateway.suppression.ses import SesSuppressionList

    logging.basicConfig(level=os.environ.get("MAILGW_LOG_LEVEL", "WARNING").upper())
    try:
        settings = Settings.from_env()
        ses = SesSuppressionList() if settings.transport == "ses" else None
        open_database(settings.database_url)
        if args.command == "contacts":
            return _reactivate(args, ses)
        if ses is None:
            raise ConfigError("MAILGW_TRANSPORT=outbox: there is no SES suppression list to sync")
        return _sync(args, settings, ses)
    except ConfigError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UNAVAILABLE as exc:
        print(f"error: the database did not answer: {type(exc).__name__}: {exc}".rstrip(), file=sys.stderr)
        return EXIT_FAILED


def _reactivate(args: argparse.Namespace, ses) -> int:
    from gateway.errors import ContactNotFound, InvalidRequest
    from gateway.suppression.reactivate import SesRemoval, reactivate

    field = "email" if "@" in args.contact else "contact_id"
    try:
        done = reactivate(**{field: args.contact}, actor=args.by, reason=args.reason, ses=ses)
    except InvalidRequest as exc:
        print("error: the request is invalid", file=sys.stderr)
        for name, description in exc.violations.items():
            print(f"  {FLAGS.get(name, name)}: {description}", file=sys.stderr)
        return EXIT_FAILED
    except ContactNotFound as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    change = f"{done.before} -> active" if done.changed else "active already"
    print(f"{done.email}: {change} (by {args.by.strip()}: {' '.join(args.reason.split())})")
    print(f"  SES suppression list: {_removal(done.ses, done.ses_error)}")
    return EXIT_FAILED if done.ses is SesRemoval.REFUSED else 0


def _removal(removal, error: str) -> str:
    from gateway.suppression.reactivate import SesRemoval

    return {
        SesRemoval.REMOVED: "removed",
        SesRemoval.NOT_LISTED: "was not on it",
        SesRemoval.WAITING: f"not removed yet ({error}); the gateway's sync tries again",
        SesRemoval.REFUSED: f"SES refused to remove it ({error})",
        SesRemoval.NOT_ASKED: "not asked (MAILGW_TRANSPORT=outbox); removed once the SES transport runs the sync",
    }[removal]


def _sync(args: argparse.Namespace, settings, ses) -> int:
    from gateway.store.database import unit_of_work
    from gateway.suppression.ses import SuppressionCallFailed
    from gateway.suppression.sync import LeaseHeld, SuppressionSync, describe

    sync = SuppressionSync(
        ses,
        push=settings.ses_suppression_push,
        reconcile_every=timedelta(hours=settings.ses_suppression_reconcile_hours),
    )
    try:
        with unit_of_work():
            report = sync.run(full=True if args.full else None)
    except LeaseHeld as exc:
        holder, until = exc.args
        until = f" until {until:%H:%M:%S} UTC" if until else ""
        print(f"error: {holder or 'another process'} is syncing now (lease{until}): try again later", file=sys.stderr)
        return EXIT_FAILED
    except SuppressionCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(report))
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the operator must say
        return "cli"
