"""The Amazon SES (sesv2) transport and the table that turns SES errors into the gateway's."""

import os
import random
import time

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from gateway.errors import GatewayError, SesRejected, SesThrottled, SesUnavailable
from gateway.ops.config import ConfigError

# botocore's own retries are off: SesTransport retries itself, within the caller's deadline, and never
# resends after a read timeout (SES may already have the message).
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=15)
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.2  # doubled after each attempt, with jitter

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
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    if not session.region_name:  # checked here: with an endpoint URL set, botocore would go on without one
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) for the SES transport")
    return session.client("sesv2", config=CLIENT_CONFIG.merge(Config(max_pool_connections=max_connections)))


class SesTransport:
    """Sends raw MIME through sesv2 SendEmail with the configuration set that publishes our feedback events."""

    def __init__(self, client, configuration_set: str):
        self._client = client
        self._configuration_set = configuration_set

    def send(
        self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str], deadline: float | None = None
    ) -> str:
        """Send, retrying throttling, 5xx answers and refused connections up to MAX_ATTEMPTS with backoff, never
        past `deadline` (time.monotonic()) and never when SES may have the message; the last error is raised."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._send_once(raw, sender=sender, recipient=recipient, tags=tags)
            except (SesThrottled, SesUnavailable) as exc:
                delay = BACKOFF_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                maybe_sent = isinstance(exc, SesUnavailable) and exc.maybe_sent
                out_of_time = deadline is not None and time.monotonic() + delay >= deadline
                if attempt == MAX_ATTEMPTS or maybe_sent or out_of_time:
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _send_once(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
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
        except ReadTimeoutError:
            # SES may have taken the message: the caller must not be told it is safe to send again.
            raise SesUnavailable("SES did not answer in time", maybe_sent=True) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise SesUnavailable(f"SES could not be reached: {type(exc).__name__}") from None
        except BotoCoreError as exc:
            raise SesUnavailable(f"SES call failed: {type(exc).__name__}", maybe_sent=True) from None
        return response["MessageId"]


def ses_error(exc: ClientError) -> GatewayError:
    """The gateway error for an SES error response."""
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
