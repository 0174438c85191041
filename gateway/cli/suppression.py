"""`mailgw suppression sync`: run where the gateway's environment is (the database and SES credentials of MAILGW_* and
AWS_* variables), not through the gateway's API. (Reactivating a contact is the admin service's: `mailgw contacts
reactivate`, gateway/cli/contacts.py.)

Only argparse is imported until it runs: `mailgw send` should not pay for boto3 and the database.
"""

import argparse
import sys

EXIT_FAILED = 1


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `suppression` command and its `sync` subcommand, on mailgw's subparsers (no gateway called: no `client`)."""
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
    sync.set_defaults(run=sync_now)


def sync_now(args: argparse.Namespace) -> int:
    from gateway.core.config import ConfigError, Settings
    from gateway.core.logs import setup_logging
    from gateway.ses.suppression_list import SesSuppressionList
    from gateway.store.database import UNAVAILABLE, CannotUseDatabase, database_problem
    from gateway.store.models import open_database

    setup_logging("WARNING")  # masked, MAILGW_LOG_LEVEL and MAILGW_LOG_FORMAT; a command by hand: warnings only
    settings = Settings.from_env()
    if settings.transport != "ses":
        raise ConfigError("MAILGW_TRANSPORT=outbox: there is no SES suppression list to sync")
    ses = SesSuppressionList()
    open_database(settings.database_url, existing=True)  # the gateway's contacts: never an empty database made here
    try:
        return _sync(args, settings, ses)
    except UNAVAILABLE as exc:
        raise CannotUseDatabase(settings.database_url, f"did not answer: {database_problem(exc)}") from None


def _sync(args: argparse.Namespace, settings, ses) -> int:
    from gateway.ses.suppression_list import SuppressionCallFailed
    from gateway.store.database import unit_of_work
    from gateway.suppression.sync import LeaseHeld, LeaseLost, SuppressionSync, describe

    sync = SuppressionSync.from_settings(settings, ses)
    try:
        with unit_of_work():
            report = sync.run(full=True if args.full else None)
    except LeaseHeld as exc:
        holder, until = exc.args
        until = f" until {until:%H:%M:%S} UTC" if until else ""
        print(f"error: {holder or 'another process'} is syncing now (lease{until}): try again later", file=sys.stderr)
        return EXIT_FAILED
    except LeaseLost as exc:
        print(f"error: the pass stopped: {exc}; run it again", file=sys.stderr)
        return EXIT_FAILED
    except SuppressionCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(report))
    return 0
