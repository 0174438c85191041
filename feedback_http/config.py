"""The sidecar's settings: one typed object, read from the environment once at start-up."""

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.addresses import parse_address
from gateway.core.config import (
    DEFAULT_HTTP_ADDR,
    ConfigError,
    check_database_url,
    check_metrics_address,
    check_sender,
    listen_address,
    named_sender,
    read_env,
)

# https://sqs.<region>.amazonaws.com/<account>/<name> as AWS prints it; local stacks serve the same path elsewhere.
SQS_QUEUE_PATH = re.compile(r"/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?")
TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


@dataclass(frozen=True)
class FeedbackSettings:
    """MAILGW_* variables of the sidecar; the database is the gateway's (MAILGW_DATABASE_URL)."""

    database_url: str = "sqlite:///mailgw.db"
    http_addr: str = DEFAULT_HTTP_ADDR
    sns_topic_arns: frozenset = frozenset()
    unsubscribe_on_get: bool = False
    # How long the browser that unsubscribed on the page may undo it (its done page holds the secret); 0: no undo.
    unsubscribe_undo_seconds: int = 900
    soft_bounce_limit: int = 0  # 0: soft bounces are recorded and counted, never suppress
    sns_max_age_seconds: int = 0  # 0: no age limit (SNS retries for up to an hour; redelivery is deduplicated)
    max_body_bytes: int = 256 * 1024  # SNS messages are at most 256 KiB
    http_body_timeout_seconds: float = 10.0  # a client that has not sent its whole body by then is cut off (408)
    # Prometheus /metrics on a listener of its own: the public port (SNS, recipients) must not expose them.
    feedback_metrics_addr: str = ""
    sqs_queue_url: str = ""  # set: SNS envelopes are also taken from this queue (feedback_http/sqs.py)
    sqs_wait_seconds: int = 20  # ReceiveMessage long poll; SIGTERM waits for the one under way
    sqs_visibility_timeout_seconds: int = 30  # per receive, extended while a batch is still being applied
    brand_name: str = ""  # the sender the unsubscribe page names (sender_name), as every mail's footer does
    default_from: str = ""  # the gateway's MAILGW_DEFAULT_FROM: without a brand name, the sender it names
    privacy_url: str = ""  # the privacy policy the unsubscribe page links to
    contact_email: str = ""  # the address the unsubscribe page offers for questions
    templates_dir: str = ""  # the operator's unsubscribe page templates, each replacing the package's of its name

    def __post_init__(self):
        check_database_url(self.database_url)
        listen_address(self.http_addr, "MAILGW_HTTP_ADDR")
        for arn in self.sns_topic_arns:
            if not TOPIC_ARN.fullmatch(arn):  # a typo here would refuse every notification
                raise ConfigError(f"MAILGW_SNS_TOPIC_ARNS: {arn!r} is not an ARN like arn:aws:sns:region:account:topic")
        if not 0 <= self.unsubscribe_undo_seconds <= MAX_UNDO_SECONDS:
            raise ConfigError(f"MAILGW_UNSUBSCRIBE_UNDO_SECONDS must be 0-{MAX_UNDO_SECONDS} (0: no undo)")
        for name in ("soft_bounce_limit", "sns_max_age_seconds", "http_body_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MAILGW_{name.upper()} must not be negative")
        if self.max_body_bytes < 1024:
            raise ConfigError("MAILGW_MAX_BODY_BYTES must be at least 1024")
        if self.feedback_metrics_addr:
            check_metrics_address(
                self.feedback_metrics_addr, "MAILGW_FEEDBACK_METRICS_ADDR", self.http_addr, "MAILGW_HTTP_ADDR"
            )
        if self.sqs_queue_url:
            check_queue_url(self.sqs_queue_url)
        if not 0 <= self.sqs_wait_seconds <= 20:
            raise ConfigError("MAILGW_SQS_WAIT_SECONDS must be 0-20 (SQS long-polls for at most 20 s)")
        if not 2 <= self.sqs_visibility_timeout_seconds <= 43200:
            raise ConfigError("MAILGW_SQS_VISIBILITY_TIMEOUT_SECONDS must be 2-43200 (SQS allows up to 12 hours)")
        check_page_settings(self)

    @property
    def undo_window(self) -> datetime.timedelta | None:
        """How long an unsubscribe made on the page can be undone there; None: not at all."""
        return datetime.timedelta(seconds=self.unsubscribe_undo_seconds) if self.unsubscribe_undo_seconds else None

    @property
    def sender_name(self) -> str:
        """The sender the unsubscribe page names, as the gateway's footer does; "": the page says "us"."""
        return named_sender(self.brand_name, self.default_from)

    @property
    def host(self) -> str:
        return listen_address(self.http_addr, "MAILGW_HTTP_ADDR")[0]

    @property
    def port(self) -> int:
        return listen_address(self.http_addr, "MAILGW_HTTP_ADDR")[1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "FeedbackSettings":
        return cls(**read_env(cls, environ))


def check_queue_url(url: str) -> None:
    parts = urlsplit(url)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or not SQS_QUEUE_PATH.fullmatch(parts.path)
    ):
        raise ConfigError(
            f"MAILGW_SQS_QUEUE_URL must be a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/name, "
            f"not {url!r}"
        )


MAX_UNDO_SECONDS = 86400  # a day: a done page left open longer than that lifts nothing
MAX_PRIVACY_URL = 2000


def check_page_settings(settings: FeedbackSettings) -> None:
    """The unsubscribe page's settings; each is shown to recipients, so each is checked at start."""
    check_sender(settings.brand_name, settings.default_from)
    if settings.privacy_url and not _is_web_url(settings.privacy_url):
        raise ConfigError(f"MAILGW_PRIVACY_URL must be an http(s) URL, not {settings.privacy_url[:200]!r}")
    if settings.contact_email:
        parsed = parse_address(settings.contact_email)
        if isinstance(parsed, str) or parsed.display_name:
            why = parsed if isinstance(parsed, str) else "a bare address, without a display name"
            raise ConfigError(f"MAILGW_CONTACT_EMAIL must be an email address: {why}")
    if settings.templates_dir and not os.path.isdir(settings.templates_dir):
        raise ConfigError(f"MAILGW_TEMPLATES_DIR is not a directory: {settings.templates_dir!r}")


def _is_web_url(url: str) -> bool:
    if len(url) > MAX_PRIVACY_URL or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:  # an unclosed IPv6 bracket
        return False


def sns_endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    """Where SNS signing certificates and confirmation URLs are fetched instead of AWS: AWS_ENDPOINT_URL_SNS (boto3's
    name, for local stacks and tests), never the generic AWS_ENDPOINT_URL, which a LocalStack setup leaves behind:
    whoever serves the endpoint vouches for every notification."""
    url = environ.get("AWS_ENDPOINT_URL_SNS", "").strip()
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"AWS_ENDPOINT_URL_SNS must be an http(s) URL, not {url!r}")
    return url or None
