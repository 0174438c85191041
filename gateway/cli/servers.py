"""`mailgw serve`, `feedback`, `feedback-sqs` and `run`: the servers, each in its own process."""

import argparse
import signal
import subprocess
import sys
import time

from gateway.core.config import Settings


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """`serve`, `feedback`, `feedback-sqs` and `run`, on mailgw's subparsers (they call no gateway: no `client`)."""
    commands.add_parser("serve", help="run the gRPC gateway", description="Run the gRPC gateway.").set_defaults(
        run=serve
    )
    commands.add_parser(
        "feedback",
        help="run the feedback sidecar (SNS webhook, unsubscribe pages)",
        description="Run the feedback sidecar: the SNS webhook for SES events and the unsubscribe pages.",
    ).set_defaults(run=feedback)
    commands.add_parser(
        "feedback-sqs",
        help="take SES events from the SQS queue in MAILGW_SQS_QUEUE_URL (no HTTP server)",
        description="Long-poll the SQS queue subscribed to the SES feedback topic (MAILGW_SQS_QUEUE_URL, raw message "
        "delivery off): verify each SNS envelope as POST /sns does, apply it, delete it after the commit. SIGTERM or "
        "Ctrl-C finishes the batch under way and exits 0.",
    ).set_defaults(run=feedback_sqs)
    commands.add_parser(
        "run",
        help="run the gateway and the sidecar together until Ctrl-C",
        description="Run the gateway and the feedback sidecar together; Ctrl-C or SIGTERM stops both.",
    ).set_defaults(run=run_both)


# Each server is imported when it runs, not when mailgw builds its parser: `mailgw send` needs none of them.


def serve(args: argparse.Namespace) -> int:
    from gateway.process.gateway import main

    main()  # exits with the gateway's code
    return 0


def feedback(args: argparse.Namespace) -> int:
    from feedback_http.app import main

    main()  # exits with the sidecar's code
    return 0


def feedback_sqs(args: argparse.Namespace) -> int:
    from feedback_http.sqs_process import main

    main()  # exits with the intake's code
    return 0


def run_both(args: argparse.Namespace) -> int:
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
