"""The gateway's settings: one typed object, read from the environment once at start-up."""

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.addresses import parse_address, sender_name


class ConfigError(ValueError):
    """A setting in the environment has a value the gateway cannot use; the message names the variable."""


TRANSPORTS = ("ses", "outbox")
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"  # the sidecar's; without MAILGW_PUBLIC_BASE_URL, the gateway's links point there
SQLITE_SCHEMES = ("sqlite", "sqlite+pool")
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgres+pool", "postgresql+pool")
DATABASE_SCHEMES = SQLITE_SCHEMES + POSTGRES_SCHEMES
# SES: "up to 64 alphanumeric characters, including letters, numbers, hyphens (-) and underscores (_) only".
CONFIGURATION_SET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SLOWEST_SEND_SECONDS = 20  # SES client: 5 s to connect, 15 s to answer
MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES = 64 * 1024, 27 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from MAILGW_* variables; AWS settings stay with boto3's own conventions."""

    database_url: str = "sqlite:///mailgw.db"
    grpc_addr: str = "127.0.0.1:50051"
    public_base_url: str = f"http://{DEFAULT_HTTP_ADDR}"  # from_env: MAILGW_HTTP_ADDR's when unset
    ses_configuration_set: str = "my-leads-now-config"
    default_from: str = ""
    transport: str = "ses"
    outbox_dir: str = "outbox"
    grpc_workers: int = 16
    grpc_processes: int = 1
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_tokens: str = ""
    auth_tokens_file: str = ""
    allow_insecure_bind: bool = False
    admin_callers: frozenset = frozenset()  # callers who may use the admin service (rpc/auth.py)
    admin_allow_unauthenticated: bool = False
    dispatch_workers: int = 4
    dispatch_lease_seconds: float = 60.0
    send_rate: float = 0.0  # messages per second for all replicas together; 0: SES's MaxSendRate (outbox: no limit)
    max_message_age_seconds: float = 86400.0
    pause_probe_seconds: float = 60.0
    unknown_resend_seconds: float = 900.0  # 0: never resend, an operator decides
    message_retention_days: float = 30.0
    # The reputation guard (sending/reputation.py): rates in percent of the sends in the window.
    reputation_guard: bool = True
    reputation_window_sends: int = 10000
    reputation_window_days: float = 7.0
    reputation_min_sends: int = 1000
    reputation_slow_bounce_percent: float = 4.0
    reputation_slow_complaint_percent: float = 0.08
    reputation_pause_bounce_percent: float = 8.0
    reputation_pause_complaint_percent: float = 0.4
    reputation_slow_fraction: float = 0.5
    reputation_check_seconds: float = 30.0
    tenant_reputation_min_sends: int = 100  # a tenant's window is judged once it holds this many sends
    # SES's account-level suppression list (gateway/suppression/), with the SES transport only
    ses_suppression_sync_seconds: float = 300.0  # 0: the gateway never syncs it (`mailgw suppression sync` still does)
    ses_suppression_reconcile_hours: float = 24.0  # a full listing at least this often; incremental ones in between
    ses_suppression_push: bool = False  # put our own bounced and complained contacts on it
    ses_suppression_settle_seconds: float = 300.0  # a reconcile leaves a status changed this recently for the next
    # SES tenants (sending/ses_tenants.py), with the SES transport only
    ses_tenants: bool = False  # every tenant's send carries its TenantName; SES's status of it holds its mail
    ses_tenant_status_seconds: float = 300.0  # each active tenant's SES status is read this often
    ses_tenant_pause_in_ses: bool = False  # a tenant's pause here also disables it in SES (customer-managed status)
    # Lanes (sending/order.py, core/policy.py)
    caller_policy_file: str = ""  # TOML: each caller's max priority, weight, queue and submit-rate limits
    max_queued_messages: int = 1_000_000  # every caller's queued messages together: a guard for the disk
    lower_class_min_share: float = 0.05  # of the rate, for each class with due mail below a busier, more urgent one
    # Events back to the callers (gateway/events/, WatchEvents)
    event_retention_days: float = 0.0  # the event log's records are kept this long; 0: MAILGW_MESSAGE_RETENTION_DAYS
    max_watchers_per_caller: int = 16  # WatchEvents streams one caller may hold open on one gateway
    max_watchers: int = 0  # WatchEvents streams on one gateway, all callers together; 0: half of MAILGW_GRPC_WORKERS
    webhook_urls: str = ""  # caller=URL,...: each caller's records POSTed there (core/webhooks.py, events/webhooks.py)
    webhook_secrets: str = dataclasses.field(default="", repr=False)  # caller=secret,...: what signs them
    max_message_bytes: int = 10 * 1024 * 1024  # a message's bodies and attachments together; the gRPC limit follows
    metrics_addr: str = ""  # Prometheus /metrics on a listener of its own; unset: none
    brand_name: str = ""  # the sender every mail's footer names (named_sender); the unsubscribe page names the same

    def __post_init__(self):
        check_database_url(self.database_url)
        listen_address(self.grpc_addr, "MAILGW_GRPC_ADDR")
        check_base_url(self.public_base_url)
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"MAILGW_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not CONFIGURATION_SET_NAME.fullmatch(self.ses_configuration_set):
            raise ConfigError(
                "MAILGW_SES_CONFIGURATION_SET must be an SES configuration set name (1-64 letters, digits, '_', '-'), "
                f"not {self.ses_configuration_set!r}"
            )
        check_sender(self.brand_name, self.default_from)
        if self.grpc_workers < 1 or self.grpc_processes < 1:
            raise ConfigError("MAILGW_GRPC_WORKERS and MAILGW_GRPC_PROCESSES must be at least 1")
        if self.grpc_processes > 1 and listen_address(self.grpc_addr, "MAILGW_GRPC_ADDR")[1] == 0:
            raise ConfigError("MAILGW_GRPC_PROCESSES above 1 needs a fixed port in MAILGW_GRPC_ADDR")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ConfigError("MAILGW_TLS_CERT and MAILGW_TLS_KEY go together; MAILGW_TLS_CLIENT_CA needs both")
        for name in ("dispatch_workers", "send_rate", "unknown_resend_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MAILGW_{name.upper()} must not be negative")
        for name in ("dispatch_lease_seconds", "max_message_age_seconds", "pause_probe_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"MAILGW_{name.upper()} must be above 0")
        if self.message_retention_days <= 0:
            raise ConfigError("MAILGW_MESSAGE_RETENTION_DAYS must be above 0")
        check_reputation(self)
        if self.ses_suppression_sync_seconds < 0 or self.ses_suppression_reconcile_hours <= 0:
            raise ConfigError(
                "MAILGW_SES_SUPPRESSION_SYNC_SECONDS must not be negative and MAILGW_SES_SUPPRESSION_RECONCILE_HOURS "
                "must be above 0"
            )
        if self.ses_suppression_settle_seconds < 0:
            raise ConfigError("MAILGW_SES_SUPPRESSION_SETTLE_SECONDS must not be negative")
        if self.ses_tenants and self.transport != "ses":
            raise ConfigError(f"MAILGW_SES_TENANTS needs MAILGW_TRANSPORT=ses, not {self.transport!r}")
        if self.ses_tenant_status_seconds <= 0:
            raise ConfigError("MAILGW_SES_TENANT_STATUS_SECONDS must be above 0")
        if self.ses_tenant_pause_in_ses and not self.ses_tenants:
            raise ConfigError("MAILGW_SES_TENANT_PAUSE_IN_SES needs MAILGW_SES_TENANTS=true")
        if self.tenant_reputation_min_sends < 1:
            raise ConfigError("MAILGW_TENANT_REPUTATION_MIN_SENDS must be at least 1")
        if self.max_queued_messages < 1:
            raise ConfigError("MAILGW_MAX_QUEUED_MESSAGES must be at least 1")
        if not 0 <= self.lower_class_min_share <= 0.5:
            raise ConfigError("MAILGW_LOWER_CLASS_MIN_SHARE must be a fraction from 0 to 0.5 (0.05: 5 % of the rate)")
        if self.event_retention_days < 0:
            raise ConfigError("MAILGW_EVENT_RETENTION_DAYS must not be negative (0: MAILGW_MESSAGE_RETENTION_DAYS)")
        if self.max_watchers_per_caller < 1 or self.max_watchers < 0:
            raise ConfigError("MAILGW_MAX_WATCHERS_PER_CALLER must be at least 1 and MAILGW_MAX_WATCHERS not negative")
        if self.max_watchers >= self.grpc_workers:
            raise ConfigError(
                "MAILGW_MAX_WATCHERS must be below MAILGW_GRPC_WORKERS: each stream holds one of those threads, and "
                "calls need the others"
            )
        if not MIN_MESSAGE_BYTES <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ConfigError(
                f"MAILGW_MAX_MESSAGE_BYTES must be from {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} (SES takes 40 MB "
                "of MIME, in which base64 makes files a third larger)"
            )
        if self.metrics_addr:
            check_metrics_address(self.metrics_addr, "MAILGW_METRICS_ADDR", self.grpc_addr, "MAILGW_GRPC_ADDR")
        object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        values = read_env(cls, environ)
        if "public_base_url" not in values:  # the sidecar's own address: links work wherever `make run` put it
            http_addr = environ.get("MAILGW_HTTP_ADDR", "").strip() or DEFAULT_HTTP_ADDR
            values["public_base_url"] = f"http://{host_port(*listen_address(http_addr, 'MAILGW_HTTP_ADDR'))}"
        return cls(**values)

    @property
    def watchers(self) -> int:
        """WatchEvents streams one gateway holds at most, all callers together."""
        return self.max_watchers or self.grpc_workers // 2  # 0 with one worker: WatchEvents is then refused

    @property
    def event_retention(self) -> float:
        """Days the event log keeps a record."""
        return self.event_retention_days or self.message_retention_days

    @property
    def sender_name(self) -> str:
        return named_sender(self.brand_name, self.default_from)

    def warnings(self) -> list[str]:
        """Settings that work but that an operator should hear about at start."""
        found = []
        host = urlsplit(self.public_base_url).hostname or ""
        if self.public_base_url.startswith("http://") and not is_loopback(host):
            found.append(
                f"MAILGW_PUBLIC_BASE_URL is http:// on {host}: mailbox providers only offer one-click unsubscribe "
                "(RFC 8058) for https links"
            )
        if self.dispatch_workers and self.dispatch_lease_seconds < SLOWEST_SEND_SECONDS:
            found.append(
                f"MAILGW_DISPATCH_LEASE_SECONDS={self.dispatch_lease_seconds:g} is shorter than a send may take "
                f"({SLOWEST_SEND_SECONDS} s): a send still waiting for SES would be taken for interrupted"
            )
        if self.reputation_guard and self.message_retention_days < self.reputation_window_days:
            found.append(
                f"MAILGW_MESSAGE_RETENTION_DAYS={self.message_retention_days:g} is shorter than "
                f"MAILGW_REPUTATION_WINDOW_DAYS={self.reputation_window_days:g}: the reputation guard sees only the "
                "sends that are kept"
            )
        return found


MAX_BRAND_NAME = 100


def check_sender(brand_name: str, default_from: str) -> None:
    """MAILGW_BRAND_NAME and MAILGW_DEFAULT_FROM, which both processes read: the sender recipients are shown."""
    if len(brand_name) > MAX_BRAND_NAME or not brand_name.isprintable():
        raise ConfigError(f"MAILGW_BRAND_NAME must be printable text of at most {MAX_BRAND_NAME} characters")
    if default_from:
        parsed = parse_address(default_from.strip())
        if isinstance(parsed, str):
            raise ConfigError(f"MAILGW_DEFAULT_FROM is not an address SES can send from: {parsed}")


def named_sender(brand_name: str, default_from: str) -> str:
    """The sender that the unsubscribe page and every mail's footer name: MAILGW_BRAND_NAME, else the display name of
    MAILGW_DEFAULT_FROM, else its domain; "" when neither is set (checked: check_sender)."""
    if brand_name or not default_from:
        return brand_name
    parsed = parse_address(default_from.strip())
    return "" if isinstance(parsed, str) else sender_name(parsed)


def check_reputation(settings: Settings) -> None:
    """The reputation guard's settings: a window, thresholds that are percentages with the slow one below the pause
    one, and a fraction of the pace."""
    for name in ("window_sends", "min_sends"):
        if getattr(settings, f"reputation_{name}") < 1:
            raise ConfigError(f"MAILGW_REPUTATION_{name.upper()} must be at least 1")
    if settings.reputation_min_sends > settings.reputation_window_sends:
        raise ConfigError(
            "MAILGW_REPUTATION_MIN_SENDS must not exceed MAILGW_REPUTATION_WINDOW_SENDS: the guard would never act"
        )
    for name in ("window_days", "check_seconds"):
        if getattr(settings, f"reputation_{name}") <= 0:
            raise ConfigError(f"MAILGW_REPUTATION_{name.upper()} must be above 0")
    for kind in ("bounce", "complaint"):
        slow = getattr(settings, f"reputation_slow_{kind}_percent")
        pause = getattr(settings, f"reputation_pause_{kind}_percent")
        slow_name, pause_name = (
            f"MAILGW_REPUTATION_SLOW_{kind.upper()}_PERCENT",
            f"MAILGW_REPUTATION_PAUSE_{kind.upper()}_PERCENT",
        )
        if not 0 < slow <= 100 or not 0 < pause <= 100:
            raise ConfigError(f"{slow_name} and {pause_name} must be percentages above 0 and at most 100")
        if slow > pause:
            raise ConfigError(f"{slow_name} must not be above {pause_name}")
    if not 0 < settings.reputation_slow_fraction <= 1:
        raise ConfigError("MAILGW_REPUTATION_SLOW_FRACTION must be above 0 and at most 1 (1: never slow down)")


def check_database_url(url: str) -> None:
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in DATABASE_SCHEMES or not rest:
        raise ConfigError(
            f"MAILGW_DATABASE_URL must be sqlite:///path or postgresql://user@host/db, not {masked_url(url)!r}"
        )


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """`url` fit to print or log: a password in it shown as *** (postgresql://user:***@host/db, ?password=***).

    The user part runs from the scheme's slashes to the last '@' before the query, so a password holding '/', ':' or
    '@' is masked whole; a URL typed without its slashes ("user:secret@host") is masked too, since a mistyped URL
    still holds the secret.
    """
    main, question, query = url.partition("?")
    head, at, location = main.rpartition("@")
    if at:
        scheme = _SCHEME.match(head)
        start = scheme.end() if scheme else 0
        user, colon, _password = head[start:].partition(":")
        if colon:
            main = f"{head[:start]}{user}:***@{location}"
    if question:
        query = _QUERY_PASSWORD.sub(r"\1***", query)
    return main + question + query


def check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"MAILGW_PUBLIC_BASE_URL must be an http(s) URL without query or fragment, not {url!r}")


def listen_address(value: str, variable: str) -> tuple[str, int]:
    """(host, port) of a "host:port" or "[v6]:port" setting; ConfigError naming `variable` otherwise."""
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{variable} must be host:port (port 0-65535), not {value!r}")
    return host, int(port)


def host_port(host: str, port: int) -> str:
    """How a listener names its address: host:port as listen_address reads it back, [v6]:port for an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_metrics_address(value: str, variable: str, other: str, other_variable: str) -> None:
    """A metrics address is host:port and a listener of its own, never the service's port."""
    host, port = listen_address(value, variable)
    if port and (host, port) == listen_address(other, other_variable):
        raise ConfigError(f"{variable} must be an address of its own, not {other_variable}'s ({value})")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_env(settings_class, environ: Mapping[str, str]) -> dict:
    """MAILGW_<FIELD> values for a settings dataclass, converted to each field's type; unset ones are left out."""
    values = {}
    for field in dataclasses.fields(settings_class):
        name = f"MAILGW_{field.name.upper()}"
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        kind = type(field.default)
        try:
            values[field.name] = _convert(kind, raw)
        except ValueError:
            raise ConfigError(f"{name} must be {_KIND_NAMES.get(kind, kind.__name__)}, not {raw!r}") from None
    return values


_KIND_NAMES = {int: "a whole number", float: "a finite number", bool: "true or false"}


def _convert(kind, raw: str):
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    if kind is frozenset:
        return frozenset(item.strip() for item in raw.split(",") if item.strip())
    value = kind(raw)
    if kind is float and not math.isfinite(value):  # "nan" and "inf" parse, and break every comparison after
        raise ValueError(raw)
    return value
