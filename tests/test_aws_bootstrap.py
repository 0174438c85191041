"""`mailgw aws bootstrap` against moto in server mode (SNS, SQS) and the SES stand-in (sesv2: moto lacks the
event-destination calls): what it creates, that a second run finds everything right, that a dry run changes
nothing, that differences are named and fixed only with --fix, and that what it wires carries signed envelopes."""

import copy
import json
import os
import time

import aiohttp
import boto3
import pytest

from feedback_http.events import parse_ses_event
from feedback_http.sns import SnsVerifier, parse_envelope
from gateway.aws.bootstrap import Bootstrap, Plan
from gateway.aws.outcome import CREATED, DIFFERS, FIXED, OK, WOULD_CREATE, WOULD_FIX, Mode
from gateway.store.models import ContactStatus
from support import ses_samples
from support.processes import free_port, mailgw

CONFIGURATION_SET = "app-config"
TOPIC = "app-config-feedback"
QUEUE = "app-config-feedback"
SIDECAR = "https://mail.example.com/sns"
FOURTEEN_DAYS = str(14 * 24 * 3600)
EVENT_TYPES = ["BOUNCE", "COMPLAINT", "DELIVERY", "REJECT", "SEND", "SUBSCRIPTION"]
EVERYTHING = [
    "configuration set",
    "SNS topic",
    "event destination",
    "HTTPS subscription",
    "dead-letter queue",
    "queue",
    "queue policy",
    "SQS subscription",
]


@pytest.fixture
def aws(moto, ses):
    """boto3 clients on the same endpoints as bootstrap: moto for SNS and SQS, the stand-in for sesv2."""
    return {name: boto3.client(name, region_name="us-east-1") for name in ("sns", "sqs", "sesv2")}


def bootstrap(*, dry_run: bool = False, fix: bool = False, **plan) -> tuple[dict, Bootstrap]:
    """Run bootstrap; its outcomes by resource kind (in order), and the runner (topic ARN, queue URL)."""
    plan = {"configuration_set": CONFIGURATION_SET, "topic": TOPIC, "https_endpoint": SIDECAR, "queue": QUEUE} | plan
    runner = Bootstrap(Plan(**plan), Mode(dry_run=dry_run, fix=fix))
    outcomes = {outcome.kind: outcome for outcome in runner.run()}
    return outcomes, runner


def states(outcomes: dict) -> dict[str, str]:
    return {kind: outcome.state for kind, outcome in outcomes.items()}


def aws_side(aws, ses) -> dict:
    """Everything bootstrap could touch, as AWS (moto, the stand-in) reports it."""
    sns = aws["sns"]
    topics = sorted(topic["TopicArn"] for topic in sns.list_topics()["Topics"])
    subscriptions = aws["sns"].list_subscriptions()["Subscriptions"]
    queues = sorted(aws["sqs"].list_queues().get("QueueUrls", []))
    return {
        "topics": {arn: aws["sns"].get_topic_attributes(TopicArn=arn)["Attributes"] for arn in topics},
        "subscriptions": {
            (s["Protocol"], s["Endpoint"]): sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])[
                "Attributes"
            ]
            for s in subscriptions
        },
        "queues": {
            url: aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"] for url in queues
        },
        "configuration sets": copy.deepcopy(ses.configuration_sets.sets),
    }


def queue_attributes(aws, name: str) -> dict:
    url = aws["sqs"].get_queue_url(QueueName=name)["QueueUrl"]
    return aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def subscription_arn(aws, topic_arn: str, protocol: str) -> str:
    listed = aws["sns"].list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    [found] = [s["SubscriptionArn"] for s in listed if s["Protocol"] == protocol]
    return found


@pytest.mark.slow
def test_a_first_run_creates_everything_and_a_second_finds_it_all_right(aws, ses):
    first, runner = bootstrap()

    assert list(first) == EVERYTHING
    assert states(first) == dict.fromkeys(EVERYTHING, CREATED)
    topic_arn, queue_url = runner.topic_arn, runner.queue_url
    assert topic_arn == f"arn:aws:sns:us-east-1:123456789012:{TOPIC}"
    assert queue_url == aws["sqs"].get_queue_url(QueueName=QUEUE)["QueueUrl"]
    # What AWS now holds, read back through its own API.
    assert aws["sns"].get_topic_attributes(TopicArn=topic_arn)["Attributes"]["SignatureVersion"] == "2"
    [destination] = aws["sesv2"].get_configuration_set_event_destinations(ConfigurationSetName=CONFIGURATION_SET)[
        "EventDestinations"
    ]
    assert destination == {
        "Name": "feedback",
        "Enabled": True,
        "MatchingEventTypes": EVENT_TYPES,
        "SnsDestination": {"TopicArn": topic_arn},
    }
    dead_letters, queue = queue_attributes(aws, f"{QUEUE}-dlq"), queue_attributes(aws, QUEUE)
    assert dead_letters["MessageRetentionPeriod"] == queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letters["QueueArn"], "maxReceiveCount": 5}
    [statement] = json.loads(queue["Policy"])["Statement"]
    assert statement == {
        "Sid": "mailgw-feedback-topic",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue["QueueArn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }
    subscriptions = aws_side(aws, ses)["subscriptions"]
    assert set(subscriptions) == {("https", SIDECAR), ("sqs", queue["QueueArn"])}
    assert all(str(s["RawMessageDelivery"]).lower() == "false" for s in subscriptions.values())
    assert runner.settings_lines() == [
        f"MAILGW_SES_CONFIGURATION_SET={CONFIGURATION_SET}",
        f"MAILGW_SNS_TOPIC_ARNS={topic_arn}",
        f"MAILGW_SQS_QUEUE_URL={queue_url}",
    ]

    before = aws_side(aws, ses)
    second, again = bootstrap()

    assert states(second) == dict.fromkeys(EVERYTHING, OK)
    assert aws_side(aws, ses) == before  # nothing created, nothing changed
    assert (again.topic_arn, again.queue_url) == (topic_arn, queue_url)


def test_a_dry_run_changes_nothing(aws, ses):
    empty = aws_side(aws, ses)

    outcomes, runner = bootstrap(dry_run=True, fix=True)

    assert states(outcomes) == dict.fromkeys(EVERYTHING, WOULD_CREATE)
    assert aws_side(aws, ses) == empty
    assert runner.settings_lines()[1:] == [
        "# MAILGW_SNS_TOPIC_ARNS: the topic's ARN, once it exists",
        "# MAILGW_SQS_QUEUE_URL: the queue's URL, once it exists",
    ]

    _, created = bootstrap()
    sqs_subscription = subscription_arn(aws, created.topic_arn, "sqs")
    aws["sns"].set_subscription_attributes(
        SubscriptionArn=sqs_subscription, AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    aws["sqs"].delete_queue(QueueUrl=aws["sqs"].get_queue_url(QueueName=f"{QUEUE}-dlq")["QueueUrl"])
    before = aws_side(aws, ses)

    outcomes, _ = bootstrap(dry_run=True, fix=True)

    assert outcomes["SQS subscription"].state == WOULD_FIX
    assert outcomes["dead-letter queue"].state == WOULD_CREATE
    assert outcomes["queue"].state == OK  # its redrive policy names the dead-letter queue's ARN, which comes back
    assert aws_side(aws, ses) == before


def test_differences_are_named_left_as_they_are_and_fixed_with_fix(aws, ses):
    _, created = bootstrap()
    topic_arn = created.topic_arn
    queue = queue_attributes(aws, QUEUE)
    # Someone changed things by hand.
    aws["sns"].set_subscription_attributes(
        SubscriptionArn=subscription_arn(aws, topic_arn, "sqs"),
        AttributeName="RawMessageDelivery",
        AttributeValue="true",
    )
    aws["sns"].set_topic_attributes(TopicArn=topic_arn, AttributeName="SignatureVersion", AttributeValue="1")
    aws["sesv2"].update_configuration_set_event_destination(
        ConfigurationSetName=CONFIGURATION_SET,
        EventDestinationName="feedback",
        EventDestination={
            "Enabled": True,
            "MatchingEventTypes": ["BOUNCE", "COMPLAINT", "OPEN"],
            "SnsDestination": {"TopicArn": topic_arn},
        },
    )
    reader = {
        "Sid": "poller-reads",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/poller"},
        "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
        "Resource": queue["QueueArn"],
    }
    anyone = {"Sid": "open", "Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": queue["QueueArn"]}
    policy = {"Version": "2012-10-17", "Statement": [reader, anyone]}
    aws["sqs"].set_queue_attributes(
        QueueUrl=created.queue_url, Attributes={"Policy": json.dumps(policy), "MessageRetentionPeriod": "345600"}
    )
    changed = aws_side(aws, ses)

    reported, _ = bootstrap()

    assert states(reported) == {
        **dict.fromkeys(EVERYTHING, OK),
        "SNS topic": DIFFERS,
        "event destination": DIFFERS,
        "queue": DIFFERS,
        "queue policy": DIFFERS,
        "SQS subscription": DIFFERS,
    }
    assert reported["SNS topic"].differences == ("SignatureVersion is 1 (SHA1), not 2 (SHA256)",)
    assert reported["event destination"].differences == ("event types missing: DELIVERY, REJECT, SEND, SUBSCRIPTION",)
    assert reported["queue"].differences == ("keeps messages 4 days, not 14",)
    assert reported["queue policy"].differences == (
        "does not let the topic send",
        "statement 'open' lets * send, not only the topic",
    )
    assert reported["SQS subscription"].differences == (
        "raw message delivery is on (the sidecar needs SNS's signed envelope)",
    )
    assert reported["SQS subscription"].line() == (
        f"SQS subscription:    {QUEUE}: differs: raw message delivery is on (the sidecar needs SNS's signed "
        "envelope) (left as it is; --fix changes it)"
    )
    assert aws_side(aws, ses) == changed  # reported, not changed

    fixed, _ = bootstrap(fix=True)

    assert {kind for kind, state in states(fixed).items() if state == FIXED} == {
        "SNS topic",
        "event destination",
        "queue",
        "queue policy",
        "SQS subscription",
    }
    subscription = aws_side(aws, ses)["subscriptions"][("sqs", queue["QueueArn"])]
    assert str(subscription["RawMessageDelivery"]).lower() == "false"
    assert aws["sns"].get_topic_attributes(TopicArn=topic_arn)["Attributes"]["SignatureVersion"] == "2"
    [destination] = aws["sesv2"].get_configuration_set_event_destinations(ConfigurationSetName=CONFIGURATION_SET)[
        "EventDestinations"
    ]
    assert destination["MatchingEventTypes"] == sorted([*EVENT_TYPES, "OPEN"])  # the operator's OPEN stays
    queue = queue_attributes(aws, QUEUE)
    assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    statements = json.loads(queue["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["poller-reads", "mailgw-feedback-topic"]  # the reader stays, "*" goes
    assert states(bootstrap()[0]) == dict.fromkeys(EVERYTHING, OK)


def test_an_event_destination_to_another_topic_or_disabled_is_reported(aws, ses):
    aws["sesv2"].create_configuration_set(ConfigurationSetName=CONFIGURATION_SET)
    aws["sesv2"].create_configuration_set_event_destination(
        ConfigurationSetName=CONFIGURATION_SET,
        EventDestinationName="feedback",
        EventDestination={
            "Enabled": False,
            "MatchingEventTypes": EVENT_TYPES,
            "SnsDestination": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:old-topic"},
        },
    )

    outcomes, runner = bootstrap(https_endpoint=None)

    assert outcomes["configuration set"].state == OK
    assert outcomes["event destination"].state == DIFFERS
    assert outcomes["event destination"].differences == (
        "publishes to arn:aws:sns:us-east-1:123456789012:old-topic, not to the topic",
        "disabled",
    )
    assert "HTTPS subscription" not in outcomes

    bootstrap(https_endpoint=None, fix=True)

    [destination] = aws["sesv2"].get_configuration_set_event_destinations(ConfigurationSetName=CONFIGURATION_SET)[
        "EventDestinations"
    ]
    assert destination["Enabled"] is True
    assert destination["SnsDestination"] == {"TopicArn": runner.topic_arn}


async def test_what_bootstrap_wires_carries_a_bounce_as_a_signed_envelope_to_the_queue(aws, moto):
    outcomes, runner = bootstrap(https_endpoint=None)
    assert states(outcomes) == dict.fromkeys([k for k in EVERYTHING if k != "HTTPS subscription"], CREATED)
    settings = dict(line.split("=", 1) for line in runner.settings_lines())
    bounce = ses_samples.message(ses_samples.bounce_event())

    published = aws["sns"].publish(TopicArn=settings["MAILGW_SNS_TOPIC_ARNS"], Message=bounce)

    received = aws["sqs"].receive_message(QueueUrl=settings["MAILGW_SQS_QUEUE_URL"], WaitTimeSeconds=5)
    [body] = [m["Body"] for m in received["Messages"]]
    envelope = parse_envelope(body.encode())  # raw delivery off: the envelope, not the bare message
    assert envelope["MessageId"] == published["MessageId"]
    assert envelope["SignatureVersion"] == "2"
    async with aiohttp.ClientSession() as session:
        verifier = SnsVerifier(
            session, topic_arns=frozenset(settings["MAILGW_SNS_TOPIC_ARNS"].split(",")), endpoint_url=moto.url
        )
        await verifier.verify(envelope)  # the sidecar's own check: genuine, from the allowed topic
    event = parse_ses_event(envelope["Message"])
    assert (event.event_type, [(o.email, o.status) for o in event.outcomes]) == (
        "Bounce",
        [(ses_samples.RECIPIENT, ContactStatus.BOUNCED)],
    )


# --- The command, as an operator runs it --------------------------------------------------------------------------


def mailgw_aws(*args: str, env: dict[str, str] | None = None):
    if env is None:
        return mailgw("aws", *args, timeout=60, MAILGW_SES_CONFIGURATION_SET=CONFIGURATION_SET)
    return mailgw("aws", *args, environ=env, timeout=60)


@pytest.mark.slow
def test_the_command_creates_then_checks_and_prints_the_settings_to_use(aws):
    dry = mailgw_aws("bootstrap", "--dry-run")
    assert dry.returncode == 3, dry.stderr  # something would change
    assert aws["sns"].list_topics()["Topics"] == []

    done = mailgw_aws("bootstrap")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    topic_arn = f"arn:aws:sns:us-east-1:123456789012:{TOPIC}"
    queue_url = aws["sqs"].get_queue_url(QueueName=QUEUE)["QueueUrl"]
    assert done.stdout.splitlines() == [
        f"configuration set:   {CONFIGURATION_SET}: created",
        f"SNS topic:           {TOPIC}: created",
        f"event destination:   {CONFIGURATION_SET}/feedback: created",
        f"dead-letter queue:   {QUEUE}-dlq: created",  # no https:// MAILGW_PUBLIC_BASE_URL: SQS only
        f"queue:               {QUEUE}: created",
        f"queue policy:        {QUEUE}: created",
        f"SQS subscription:    {QUEUE}: created",
        "",
        "# Settings (the sidecar, and `mailgw feedback-sqs` for the queue):",
        f"MAILGW_SES_CONFIGURATION_SET={CONFIGURATION_SET}",
        f"MAILGW_SNS_TOPIC_ARNS={topic_arn}",
        f"MAILGW_SQS_QUEUE_URL={queue_url}",
    ]

    https = os.environ | {
        "MAILGW_SES_CONFIGURATION_SET": CONFIGURATION_SET,
        "MAILGW_PUBLIC_BASE_URL": "https://mail.example.com",
        "MAILGW_SQS_QUEUE_URL": queue_url,
        "MAILGW_SNS_TOPIC_ARNS": "arn:aws:sns:eu-west-1:123456789012:older-topic",
    }
    again = mailgw_aws("bootstrap", env=https)

    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert f"HTTPS subscription:  {SIDECAR}: created (SNS now asks the sidecar to confirm it)" in lines
    assert sum(line.endswith(": ok") for line in lines) == 7
    assert f"MAILGW_SNS_TOPIC_ARNS=arn:aws:sns:eu-west-1:123456789012:older-topic,{topic_arn}" in lines


@pytest.mark.slow
def test_unreachable_aws_is_one_line_and_exit_code_1(aws):
    closed = f"http://127.0.0.1:{free_port()}"
    env = os.environ | {
        "AWS_ENDPOINT_URL_SESV2": closed,
        "AWS_ENDPOINT_URL_SNS": closed,
        "AWS_ENDPOINT_URL_SQS": closed,
    }

    started = time.monotonic()
    done = mailgw_aws("bootstrap", env=env)

    assert done.returncode == 1
    assert done.stdout == ""
    url = f"{closed}/v2/email/configuration-sets/my-leads-now-config"
    assert done.stderr == f'mailgw: AWS did not answer: Could not connect to the endpoint URL: "{url}"\n'
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_missing_credentials_are_one_line_and_exit_code_1(aws, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    done = mailgw_aws("bootstrap", env=env)

    assert done.returncode == 1
    assert done.stderr == (
        "mailgw: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role\n"
    )


@pytest.mark.slow
def test_a_refused_call_is_named_in_one_line_with_exit_code_1(aws, ses):
    message = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ses:GetConfigurationSet"
    ses.configuration_sets.refusal = (403, "AccessDeniedException", message)

    done = mailgw_aws("bootstrap")

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"mailgw: GetConfigurationSet refused: AccessDeniedException: {message}\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (
            ["--https"],
            {},
            "mailgw: --https needs MAILGW_PUBLIC_BASE_URL to be the sidecar's public https:// URL, "
            "not 'http://127.0.0.1:8080'",
        ),
        (["--no-sqs"], {}, "mailgw: nothing to deliver to: choose --https and/or --sqs"),
        (["--queue", "a.fifo"], {}, "mailgw: --queue must be 1-76 letters, digits, '-' or '_', not 'a.fifo'"),
        ([], {"AWS_REGION": ""}, "mailgw: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) for the SES transport"),
    ],
)
def test_options_that_cannot_work_are_one_line_and_exit_code_2(aws, args, env, error):
    done = mailgw_aws("bootstrap", *args, env=os.environ | env)

    assert (done.returncode, done.stdout, done.stderr) == (2, "", error + "\n")
