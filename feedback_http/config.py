"""The sidecar's settings: one typed object, read from the environment once at start-up."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import ConfigError, read_env


@dataclass(frozen=True)
class FeedbackSettings:
    """MAILGW_* variables of the sidecar; the database is the gateway's (MAILGW_DATABASE_URL)."""

    database_url: str = "sqlite:///mailgw.db"
    http_addr: str = "127.0.0.1:8080"
    sns_topic_arns: frozenset = frozenset()
    unsubscribe_on_get: bool = False
    soft_bounce_limit: int = 0  # 0: soft bounces are recorded and counted, never suppress
    sns_max_age_seconds: int = 0  # 0: no age limit (SNS retries for up to an hour; redelivery is deduplicated)
    max_body_bytes: int = 256 * 1024  # SNS messages are at most 256 KiB
    http_body_timeout_seconds: float = 10.0  # a client that has not sent its whole body by then is cut off (408)
    sns_endpoint_url: str = ""  # from AWS_ENDPOINT_URL_SNS / AWS_ENDPOINT_URL, as boto3 reads them

    def __post_init__(self):
        host, _, port = self.http_addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"MAILGW_HTTP_ADDR must be host:port, not {self.http_addr!r}")
        for name in ("soft_bounce_limit", "sns_max_age_seconds", "http_body_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MAILGW_{name.upper()} must not be negative")

    @property
    def host(self) -> str:
        return self.http_addr.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.http_addr.rpartition(":")[2])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "FeedbackSettings":
        values = read_env(cls, environ)
        values.pop("sns_endpoint_url", None)
        endpoint = environ.get("AWS_ENDPOINT_URL_SNS") or environ.get("AWS_ENDPOINT_URL") or ""
        return cls(**values, sns_endpoint_url=endpoint)
