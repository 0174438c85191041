"""`mailgw aws bootstrap`: the configuration set, the topic, the event destination, the HTTPS subscription and/or
the SQS queue with its dead-letter queue, policy and subscription, and SES tenants with their identity and
configuration set; each created, found right, or found different."""

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from gateway.aws import ses_side, sns_side, sqs_side
from gateway.aws.outcome import BootstrapError, Mode, Outcome
from gateway.core.config import CONFIGURATION_SET_NAME, ConfigError
from gateway.core.logs import error_text
from gateway.ses.transport import aws_session

# A few calls in a row, by hand: botocore's standard retries (throttling, 5xx) are welcome; a connection that is
# refused fails after them with one line.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15)
SERVICES = ("sesv2", "sns", "sqs")
EVENT_DESTINATION = "feedback"
# SNS topic and SQS queue names: letters, digits, '-' and '_' (topics up to 256, queues up to 80; "-dlq" is added).
TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,76}")
DESTINATION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TENANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # SES's TenantName, as SendEmailRequest.tenant takes it


def feedback_name(configuration_set: str) -> str:
    """The topic's and the queue's name when none is given."""
    return f"{configuration_set}-feedback"


@dataclass(frozen=True)
class Plan:
    """The names of what to create or check; `https_endpoint` and `queue` are None when that delivery is not wanted."""

    configuration_set: str
    topic: str
    event_destination: str = EVENT_DESTINATION
    https_endpoint: str | None = None  # {MAILGW_PUBLIC_BASE_URL}/sns
    queue: str | None = None
    tenants: tuple[str, ...] = ()  # SES tenants, each associated with `identity` and the configuration set
    identity: str = ""  # the sending identity (MAILGW_DEFAULT_FROM's domain)

    def __post_init__(self):
        names = (
            ("--configuration-set", self.configuration_set, CONFIGURATION_SET_NAME, "1-64"),
            ("--topic", self.topic, TOPIC_NAME, "1-256"),
            ("--queue", self.queue or "q", QUEUE_NAME, "1-76"),
            ("--event-destination", self.event_destination, DESTINATION_NAME, "1-64"),
        )
        for option, value, pattern, length in names:
            if not pattern.fullmatch(value):
                raise ConfigError(f"{option} must be {length} letters, digits, '-' or '_', not {value!r}")
        if self.https_endpoint is None and self.queue is None:
            raise ConfigError("nothing to deliver to: choose --https and/or --sqs")
        for tenant in self.tenants:
            if not TENANT_NAME.fullmatch(tenant):
                raise ConfigError(f"--tenant must be 1-64 letters, digits, '-' or '_', not {tenant!r}")
        if self.tenants and not self.identity:
            raise ConfigError("--tenant needs MAILGW_DEFAULT_FROM: its domain is the identity the tenant sends from")

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}-dlq"


class Bootstrap:
    """Runs a plan against AWS; after run(), topic_arn and queue_url are known (unless a dry run would create them)."""

    def __init__(self, plan: Plan, mode: Mode, session: boto3.session.Session | None = None):
        self.plan, self.mode = plan, mode
        self._session = session
        self.topic_arn: str | None = None
        self.queue_url: str | None = None

    def run(self) -> Iterator[Outcome]:
        """Each resource's outcome as soon as it is known; raises BootstrapError when AWS fails or refuses."""
        plan, mode = self.plan, self.mode
        last = LastAnswer()
        with aws_errors(last):
            session = self._session or aws_session()
            sesv2, sns, sqs = (last.watch(name, session.client(name, config=CLIENT_CONFIG)) for name in SERVICES)
            yield ses_side.configuration_set(sesv2, mode, plan.configuration_set)
            outcome, self.topic_arn = sns_side.topic(sns, mode, plan.topic)
            yield outcome
            yield ses_side.event_destination(
                sesv2, mode, plan.configuration_set, plan.event_destination, self.topic_arn
            )
            if plan.https_endpoint:
                yield sns_side.subscription(
                    sns, mode, "HTTPS subscription", plan.https_endpoint, self.topic_arn, "https", plan.https_endpoint
                )
            if plan.queue:
                outcome, dead_letters = sqs_side.dead_letter_queue(sqs, mode, plan.dead_letter_queue)
                yield outcome
                outcome, queue = sqs_side.queue(sqs, mode, plan.queue, plan.dead_letter_queue, dead_letters)
                yield outcome
                self.queue_url = queue["url"] if queue else None
                yield sqs_side.queue_policy(sqs, mode, plan.queue, queue, self.topic_arn)
                queue_arn = queue["arn"] if queue else None
                yield sns_side.subscription(sns, mode, "SQS subscription", plan.queue, self.topic_arn, "sqs", queue_arn)
            for tenant in plan.tenants:
                outcome, tenant_arn = ses_side.tenant(sesv2, mode, tenant)
                yield outcome
                yield ses_side.tenant_resource(sesv2, mode, tenant, tenant_arn, "identity", plan.identity)
                yield ses_side.tenant_resource(
                    sesv2, mode, tenant, tenant_arn, "configuration-set", plan.configuration_set
                )

    def settings_lines(self, topic_arns: str = "") -> list[str]:
        """The MAILGW_* lines the operator sets afterwards; `topic_arns` is MAILGW_SNS_TOPIC_ARNS as set now."""
        lines = [f"MAILGW_SES_CONFIGURATION_SET={self.plan.configuration_set}"]
        if self.plan.tenants:
            lines.append("MAILGW_SES_TENANTS=true")
        if self.topic_arn:
            arns = [arn.strip() for arn in topic_arns.split(",") if arn.strip()]  # other topics the sidecar takes
            arns += [self.topic_arn] if self.topic_arn not in arns else []
            lines.append(f"MAILGW_SNS_TOPIC_ARNS={','.join(arns)}")
        else:
            lines.append("# MAILGW_SNS_TOPIC_ARNS: the topic's ARN, once it exists")
        if self.plan.queue:
            lines.append(
                f"MAILGW_SQS_QUEUE_URL={self.queue_url}"
                if self.queue_url
                else "# MAILGW_SQS_QUEUE_URL: the queue's URL, once it exists"
            )
        return lines


class LastAnswer:
    """The last HTTP answer that bootstrap's clients received: which endpoint, service and operation, which status.
    An endpoint that lacks an operation (a local AWS: moto has no SES v2 event destinations) answers with a page that
    is no AWS error, which botocore turns into a ClientError coded with the bare HTTP status, or into a
    ResponseParserError; neither names the service, the latter not even the operation."""

    def __init__(self):
        self.endpoint = self.service = self.operation = ""
        self.status = 0

    def watch(self, service: str, client):
        """`client`, reporting each answer here before botocore parses it."""

        def note(operation_model, response_dict, **_):
            self.endpoint, self.service = client.meta.endpoint_url, service
            self.operation, self.status = operation_model.name, response_dict["status_code"]

        client.meta.events.register("before-parse", note)
        return client

    def not_aws(self) -> str:
        """The one line for an answer that is no AWS answer."""
        where = f"the AWS endpoint at {self.endpoint}"
        if self.status in (404, 405, 501):  # no such route: the endpoint does not serve this operation
            return f"{where} does not implement {self.service} {self.operation} (HTTP {self.status})"
        return f"{where} answered {self.service} {self.operation} with HTTP {self.status} and no AWS answer in it"


@contextlib.contextmanager
def aws_errors(last: LastAnswer) -> Iterator[None]:
    """botocore's exceptions as one line each: what failed, and what AWS (or the network) said; `last` names the
    call whose answer was no AWS answer at all (never printed: an HTML page, a crash's text)."""
    try:
        yield
    except NoCredentialsError:
        raise BootstrapError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role"
        ) from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise BootstrapError(f"AWS did not answer: {exc}") from None
    except ResponseParserError:
        raise BootstrapError(last.not_aws()) from None
    except ClientError as exc:
        error, status = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code, message = error.get("Code", "?"), error_text(status, str(error.get("Message", "")))
        if code.isdigit() and last.operation == exc.operation_name:  # botocore found no AWS error in the answer
            raise BootstrapError(last.not_aws()) from None
        raise BootstrapError(f"{exc.operation_name} refused: {code}" + (f": {message}" if message else "")) from None
    except BotoCoreError as exc:
        raise BootstrapError(f"AWS call failed: {exc}") from None
