"""`mailgw dev …` on the command line: a local AWS to develop against (`aws`) and a bounce to feed it (`bounce`)."""

import argparse
import sys

from gateway.core.addresses import parse_address

DEFAULT_PORT = 5000  # moto's own default


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """The `dev` command and its subcommands, on mailgw's subparsers (no gateway called: no `client`)."""
    dev = commands.add_parser(
        "dev",
        help="development aids: a local AWS (SES, SNS, SQS) and bounces to feed it",
        description="Development aids; they need the dev extra (pip install -e '.[dev]').",
    )
    actions = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION", help="what to do")
    aws = actions.add_parser(
        "aws",
        help="serve a local AWS endpoint (SES v2, SNS, SQS) until Ctrl-C",
        description="Serve one local AWS endpoint on 127.0.0.1: the SES v2 stand-in for sending, the account, "
        "configuration sets with their event destinations and the suppression list; moto's server for SNS, SQS and "
        "the rest. Prints the AWS_* settings to export, then serves until Ctrl-C or SIGTERM (exit 0). Everything is "
        "kept in memory and lost when it stops. Exit codes: 1 the port is taken, 2 moto is not installed.",
    )
    aws.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, metavar="N", help="the port to serve (default: %(default)s)"
    )
    aws.set_defaults(run=serve_local_aws)
    bounce = actions.add_parser(
        "bounce",
        help="publish a permanent bounce of ADDRESS to the feedback topic of the local AWS",
        description="Publish an SES Bounce event (Permanent, General) for ADDRESS to the SNS topic that "
        "`mailgw aws bootstrap` created, on the local AWS that `mailgw dev aws` serves (boto3's SNS endpoint, "
        "AWS_ENDPOINT_URL_SNS or AWS_ENDPOINT_URL, must be on loopback). A sidecar subscribed to it marks the contact "
        "bounced. Exit codes: 1 the topic or the endpoint is missing, 2 a bad setting or argument.",
    )
    bounce.add_argument("address", type=_address, metavar="ADDRESS", help="the recipient that bounced")
    bounce.add_argument(
        "--topic",
        metavar="NAME",
        help="the SNS topic (default: bootstrap's, CONFIGURATION_SET-feedback from $MAILGW_SES_CONFIGURATION_SET)",
    )
    bounce.set_defaults(run=publish_local_bounce)


def serve_local_aws(args: argparse.Namespace) -> int:
    from gateway.core.config import ConfigError

    try:
        import moto.server  # noqa: F401  (the dev extra; not a dependency of the gateway)
    except ImportError:
        raise ConfigError("`mailgw dev aws` needs moto's server: pip install -e '.[dev]'") from None
    from gateway.dev.aws import serve

    return serve(args.port)  # 0 when stopped; a taken port is AddressInUse (one line, exit 1)


def publish_local_bounce(args: argparse.Namespace) -> int:
    from gateway.aws.bootstrap import feedback_name
    from gateway.aws.outcome import BootstrapError
    from gateway.core.config import Settings
    from gateway.dev.bounce import publish_bounce

    topic = args.topic or feedback_name(Settings.from_env().ses_configuration_set)
    try:
        arn = publish_bounce(args.address, topic)
    except BootstrapError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return 1
    print(f"published a bounce of {args.address} to {arn}")
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def _address(text: str) -> str:
    parsed = parse_address(text)
    if isinstance(parsed, str):
        raise argparse.ArgumentTypeError(f"{text!r} is not an address: {parsed}")
    return parsed.addr_spec
