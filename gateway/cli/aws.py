"""`mailgw aws …` on the command line: the options, their defaults from the MAILGW_* settings, the printed report
and the exit code."""

import argparse
import os
import sys
from email.utils import parseaddr

EXIT_AWS_FAILED = 1  # AWS refused or failed; a bad setting or option is 2, as everywhere (startup.exit_code)
EXIT_DIFFERS = 3  # something is not as bootstrap wants it, and this run did not change it


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `aws` command and its `bootstrap` subcommand, on mailgw's subparsers (no gateway called: no `client`)."""
    aws = commands.add_parser(
        "aws",
        help="set up the AWS side (SES configuration set, SNS topic, SQS queue, SES tenants)",
        description="Set up and check the AWS resources that bring SES feedback to the sidecar.",
    )
    actions = aws.add_subparsers(dest="aws_command", required=True, metavar="ACTION", help="what to do")
    bootstrap = actions.add_parser(
        "bootstrap",
        help="create or check the configuration set, topic, event destination, subscriptions and queues",
        description="Create what is missing, check what exists, and print the settings to use. Runs again safely: "
        "existing resources are only reported (ok, or how they differ) unless --fix is given. Region, credentials "
        "and endpoints come from boto3's conventions (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_SESV2/SNS/SQS). "
        "Exit codes: 0 all as wanted, 1 AWS failed or refused, 2 a bad setting or option, 3 something differs "
        "(or, in a dry run, would change).",
    )
    bootstrap.add_argument("--dry-run", action="store_true", help="describe only: create and change nothing")
    bootstrap.add_argument(
        "--fix", action="store_true", help="change existing resources that differ (otherwise they are only reported)"
    )
    bootstrap.add_argument(
        "--https",
        action=argparse.BooleanOptionalAction,
        help="subscribe the sidecar's $MAILGW_PUBLIC_BASE_URL/sns (default: when that URL is https://)",
    )
    bootstrap.add_argument(
        "--sqs",
        action=argparse.BooleanOptionalAction,
        help="an SQS queue with a dead-letter queue, subscribed to the topic (default: when MAILGW_SQS_QUEUE_URL is "
        "set, --queue is given, or there is no HTTPS subscription)",
    )
    bootstrap.add_argument(
        "--configuration-set",
        metavar="NAME",
        help="the SES configuration set (default: $MAILGW_SES_CONFIGURATION_SET or my-leads-now-config)",
    )
    bootstrap.add_argument("--topic", metavar="NAME", help="the SNS topic (default: CONFIGURATION_SET-feedback)")
    bootstrap.add_argument(
        "--queue",
        metavar="NAME",
        help="the SQS queue (default: the name in $MAILGW_SQS_QUEUE_URL, else CONFIGURATION_SET-feedback); its "
        "dead-letter queue is NAME-dlq",
    )
    bootstrap.add_argument(
        "--event-destination",
        metavar="NAME",
        default="feedback",
        help="the configuration set's event destination, when none publishes to the topic yet (default: %(default)s)",
    )
    bootstrap.add_argument(
        "--tenant",
        metavar="NAME",
        action="append",
        default=[],
        help="an SES tenant (MAILGW_SES_TENANTS), with the identity of MAILGW_DEFAULT_FROM's domain and the "
        "configuration set associated with it; repeat for more",
    )
    bootstrap.set_defaults(run=run_bootstrap)


def run_bootstrap(args: argparse.Namespace) -> int:
    from gateway.aws.bootstrap import Bootstrap
    from gateway.aws.outcome import BootstrapError, Mode
    from gateway.core.config import Settings

    plan = plan_from(args, Settings.from_env())
    bootstrap = Bootstrap(plan, Mode(dry_run=args.dry_run, fix=args.fix))
    outcomes = []
    try:
        for outcome in bootstrap.run():
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    except BootstrapError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return EXIT_AWS_FAILED
    print("\n# Settings (the sidecar, and `mailgw feedback-sqs` for the queue):")
    print("\n".join(bootstrap.settings_lines(os.environ.get("MAILGW_SNS_TOPIC_ARNS", ""))))
    return 0 if all(outcome.settled for outcome in outcomes) else EXIT_DIFFERS


def plan_from(args: argparse.Namespace, settings):
    """The plan the options and settings ask for; ConfigError when they cannot work."""
    from gateway.aws.bootstrap import Plan, feedback_name
    from gateway.core.config import ConfigError

    configuration_set = args.configuration_set or settings.ses_configuration_set
    https = args.https if args.https is not None else settings.public_base_url.startswith("https://")
    if https and not settings.public_base_url.startswith("https://"):
        raise ConfigError(
            "--https needs MAILGW_PUBLIC_BASE_URL to be the sidecar's public https:// URL, "
            f"not {settings.public_base_url!r}"
        )
    queue_url = os.environ.get("MAILGW_SQS_QUEUE_URL", "").strip()
    sqs = args.sqs if args.sqs is not None else bool(queue_url or args.queue or not https)
    queue = args.queue or (queue_url.rstrip("/").rsplit("/", 1)[-1] if queue_url else feedback_name(configuration_set))
    return Plan(
        configuration_set=configuration_set,
        topic=args.topic or feedback_name(configuration_set),
        event_destination=args.event_destination,
        https_endpoint=f"{settings.public_base_url}/sns" if https else None,
        queue=queue if sqs else None,
        tenants=tuple(args.tenant),
        identity=parseaddr(settings.default_from)[1].rpartition("@")[2].lower(),
    )
