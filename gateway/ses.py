"""The Amazon SES (sesv2) transport and the table that turns SES errors into the gateway's."""

import os

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from gateway.config import ConfigError
from gateway.errors import GatewayError, SesRejected, SesThrottled, SesUnavailable

# Bounded retries inside botocore (throttling, 5xx, connection faults); what is left after them reaches the caller.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=15)

THROTTLING_CODES = {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
# SES error code -> ErrorInfo reason, for refusals that a retry of the same call will not fix.
REJECTION_REASONS = {
    "MessageRejected": "SES_MESSAGE_REJECTED",
    "MailFromDomainNotVerifiedException": "SES_MAIL_FROM_DOMAIN_NOT_VERIFIED",
    "SendingPausedException": "SES_SENDING_PAUSED",
    "AccountSuspendedException": "SES_ACCOUNT_SUSPENDED",
    "NotFoundException": "SES_CONFIGURATION_SET_NOT_FOUND",
    "BadRequestException": "SES_BAD_REQUEST",
}


def ses_client(max_connections: int = 10):
    """An sesv2 client from boto3's own conventions: the credential chain, AWS_ENDPOINT_URL(_SESV2), the region.

    One client is shared by every RPC thread (botocore clients are thread-safe); its connection pool is as
    large as the number of threads, so no send waits for or throws away a connection.
    """
    # botocore reads AWS_DEFAULT_REGION (and the config file); AWS_REGION is what the other AWS SDKs and
    # Lambda set, so it is honoured too.
    region = os.environ.get("AWS_REGION") or None
    try:
        return boto3.session.Session(region_name=region).client(
            "sesv2", config=CLIENT_CONFIG.merge(Config(max_pool_connections=max_connections))
        )
    except NoRegionError:
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) for the SES transport") from None


class SesTransport:
    """Sends raw MIME through sesv2 SendEmail with the configuration set that publishes our feedback events."""

    def __init__(self, client, configuration_set: str):
        self._client = client
        self._configuration_set = configuration_set

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
        try:
            response = self._client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": raw}},
                ConfigurationSetName=self._configuration_set,
                EmailTags=[{"Name": name, "Value": value} for name, value in tags.items()],
            )
        except ClientError as exc:
            raise ses_error(exc) from None
        except BotoCoreError as exc:
            raise SesUnavailable(f"SES could not be reached: {type(exc).__name__}") from None
        return response["MessageId"]


def ses_error(exc: ClientError) -> GatewayError:
    """The gateway error for an SES error response (after botocore's own retries)."""
    error = exc.response.get("Error", {})
    code, detail = error.get("Code", "Unknown"), error.get("Message", "")
    http_status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in THROTTLING_CODES:
        return SesThrottled(f"SES is throttling sends: {code}", retry_after=1.0, sesErrorCode=code)
    reason = REJECTION_REASONS.get(code)
    if code == "MessageRejected" and "not verified" in detail.lower():
        reason = "SES_IDENTITY_NOT_VERIFIED"
    if reason:
        return SesRejected(reason, f"SES refused the message: {code}: {detail}", sesErrorCode=code)
    if http_status >= 500:
        return SesUnavailable(f"SES failed: {code}", sesErrorCode=code)
    return SesRejected("SES_ERROR", f"SES answered {code}: {detail}", sesErrorCode=code)
