"""The Amazon SES (sesv2) transport: one SendEmail call per attempt, and the account's quotas for pacing."""

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.ops.config import ConfigError
from gateway.sending.failures import SendFailed, classify_ses_error

# botocore's own retries are off: every attempt goes through the dispatcher, so the shared rate limit counts it,
# and a retry after "maybe sent" is never made behind the dispatcher's back.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=15)


@dataclass(frozen=True)
class SendQuota:
    """sesv2 GetAccount's SendQuota: messages per second, and the rolling 24-hour quota (-1: unlimited)."""

    max_send_rate: float
    max_24_hour_send: int
    sent_last_24_hours: int

    @property
    def remaining(self) -> int:
        """Messages SES takes before the 24-hour window frees some; -1 when unlimited."""
        if self.max_24_hour_send < 0:
            return -1
        return max(0, self.max_24_hour_send - self.sent_last_24_hours)


def ses_client(max_connections: int = 10, *, read_timeout: float | None = None):
    """An sesv2 client from boto3's own conventions: the credential chain, AWS_ENDPOINT_URL(_SESV2), the region.

    One client is shared by every dispatch thread (botocore clients are thread-safe); its connection pool is as
    large as the number of threads, so no send waits for or throws away a connection.
    """
    # botocore reads AWS_DEFAULT_REGION (and the config file); AWS_REGION is what the other AWS SDKs and
    # Lambda set, so it is honoured too.
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    if not session.region_name:  # checked here: with an endpoint URL set, botocore would go on without one
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) for the SES transport")
    config = CLIENT_CONFIG.merge(Config(max_pool_connections=max_connections))
    if read_timeout is not None:
        config = config.merge(Config(read_timeout=read_timeout))
    return session.client("sesv2", config=config)


class SesTransport:
    """Sends raw MIME through sesv2 SendEmail with the configuration set that publishes our feedback events."""

    paced_by_ses = True  # its rate and daily quota come from GetAccount unless MAILGW_SEND_RATE is set

    def __init__(self, client, configuration_set: str):
        self._client = client
        self._configuration_set = configuration_set

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
        """One attempt; SES's message id, or SendFailed with the classified failure."""
        try:
            response = self._client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": raw}},
                ConfigurationSetName=self._configuration_set,
                EmailTags=[{"Name": name, "Value": value} for name, value in tags.items()],
            )
        except (ClientError, BotoCoreError) as exc:
            raise SendFailed(classify_ses_error(exc)) from None
        return response["MessageId"]

    def send_quota(self) -> SendQuota:
        """The account's quotas now (sesv2 GetAccount); SendFailed when SES cannot say."""
        try:
            quota = self._client.get_account()["SendQuota"]
        except (ClientError, BotoCoreError) as exc:
            raise SendFailed(classify_ses_error(exc)) from None
        return SendQuota(
            max_send_rate=float(quota.get("MaxSendRate", 1.0)),
            max_24_hour_send=int(quota.get("Max24HourSend", -1)),
            sent_last_24_hours=int(quota.get("SentLast24Hours", 0)),
        )
