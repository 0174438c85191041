"""`mailgw dispatch status|resume`: the reputation guard for an operator on a gateway host, straight against the
database that MAILGW_DATABASE_URL names (no gateway needs to answer)."""

import argparse
import getpass
import sys

# The guard and its store are imported when a dispatch command runs, not when mailgw builds its parser: they bring
# boto3 (through pacing), which `mailgw send` does not need.

FLAGS = {"reason": "--reason", "operator": "--operator"}


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `dispatch` command and its subcommands, on mailgw's subparsers."""
    dispatch = commands.add_parser(
        "dispatch",
        help="the reputation guard: show the bounce and complaint rates, resume a paused dispatch",
        description="The reputation guard of every gateway on MAILGW_DATABASE_URL: its rates, and resuming dispatch "
        "after it paused.",
    )
    dispatch.set_defaults(run=run)
    actions = dispatch.add_subparsers(dest="action", required=True, metavar="ACTION", help="status or resume")
    actions.add_parser(
        "status",
        help="show the rates over the window and what the guard does",
        description="Show the bounce and complaint rates over the window of recent sends, the thresholds, and "
        "whether dispatch runs at full pace, slowed or paused (and why).",
    )
    resume = actions.add_parser(
        "resume",
        help="resume dispatch that the reputation guard paused or slowed",
        description="Resume dispatch on every gateway (within a second). The sends before now are not judged again: "
        "the window restarts, and nothing is judged until MAILGW_REPUTATION_MIN_SENDS new sends.",
    )
    resume.add_argument("--reason", required=True, metavar="TEXT", help="why it may resume (recorded)")
    resume.add_argument(
        "--operator",
        default=_login(),
        metavar="NAME",
        help="who resumes it (recorded; default: your login name, %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from gateway.core.startup import exit_code

    return exit_code(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from gateway.core.config import Settings
    from gateway.sending import reputation
    from gateway.store.database import UNAVAILABLE, CannotUseDatabase, database, database_problem
    from gateway.store.models import open_database

    settings = Settings.from_env()
    open_database(settings.database_url, existing=True)  # never an empty one made here, read as "full pace"
    try:
        with database.connection_context():
            if args.action == "resume":
                return _resume(args.operator, args.reason)
            limits = reputation.Limits.from_settings(settings)
            reading, _, _ = reputation.read(limits)
            print("\n".join(describe(reading, limits)))
            return 0
    except UNAVAILABLE as exc:
        problem = f"did not answer: {database_problem(exc)}; nothing changed"
        raise CannotUseDatabase(settings.database_url, problem) from None


def _resume(operator: str, reason: str) -> int:
    from gateway.core.errors import InvalidRequest, NothingToResume
    from gateway.sending import reputation

    try:
        ended = reputation.resume(operator, reason)
    except InvalidRequest as exc:
        lines = ["error: nothing changed"] + [f"  {FLAGS[f]}: {d}" for f, d in exc.violations.items()]
        print("\n".join(lines), file=sys.stderr)
        return 2
    except NothingToResume as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"dispatch resumed; it was {ended.level.value}: {ended.reason} ({ended.detail})")
    print(
        f"  every dispatching gateway follows within {reputation.FOLLOW_SECONDS:g} s; the sends before now are not "
        "judged again"
    )
    return 0


def describe(reading, limits) -> list[str]:
    """What `mailgw dispatch status` prints, of a reputation.Reading and reputation.Limits."""
    from gateway.sending import reputation
    from gateway.store.models import ReputationLevel

    if reading.level is ReputationLevel.NORMAL:
        lines = ["dispatch: full pace"]
    else:
        lines = [f"dispatch: {reading.level.value} since {_time(reading.changed_at)}: {reading.reason}"]
        lines.append(f"  {reading.detail}")
        if reading.level is ReputationLevel.PAUSED:
            lines.append('  resume with: mailgw dispatch resume --reason "…"')
    rates = reputation.percent(reading.bounce_rate), reputation.percent(reading.complaint_rate)
    lines.append(
        f"window: {reading.sends:,} sends since {_time(reading.window_start)}: {reading.bounces:,} bounces "
        f"({rates[0]}), {reading.complaints:,} complaints ({rates[1]})"
        + ("" if reading.judged else f"; too few to judge (fewer than {limits.min_sends:,})")
    )
    percent = reputation.percent
    lines.append(
        f"thresholds: slow to {percent(limits.slow_fraction)} of the pace at {percent(limits.slow_bounce)} bounces "
        f"or {percent(limits.slow_complaint)} complaints; pause at {percent(limits.pause_bounce)} bounces or "
        f"{percent(limits.pause_complaint)} complaints; judged from {limits.min_sends:,} sends"
    )
    if reading.resumed_at is not None:
        lines.append(f"last resumed: {_time(reading.resumed_at)} by {reading.resumed_by}: {reading.resume_reason}")
    return lines


def _time(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "?"


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment: --operator is then needed
        return ""
