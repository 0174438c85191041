"""The gateway's settings: one typed object, read from the environment once at start-up."""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting in the environment has a value the gateway cannot use."""


TRANSPORTS = ("ses", "outbox")


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from MAILGW_* variables; AWS settings stay with boto3's own conventions."""

    database_url: str = "sqlite:///mailgw.db"
    grpc_addr: str = "127.0.0.1:50051"
    public_base_url: str = "http://127.0.0.1:8080"
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

    def __post_init__(self):
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"MAILGW_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not self.public_base_url.startswith(("https://", "http://")):
            raise ConfigError(f"MAILGW_PUBLIC_BASE_URL must be an http(s) URL, not {self.public_base_url!r}")
        if self.grpc_workers < 1 or self.grpc_processes < 1:
            raise ConfigError("MAILGW_GRPC_WORKERS and MAILGW_GRPC_PROCESSES must be at least 1")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ConfigError("MAILGW_TLS_CERT and MAILGW_TLS_KEY go together; MAILGW_TLS_CLIENT_CA needs both")
        object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(**read_env(cls, environ))


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
            raise ConfigError(f"{name} must be a {kind.__name__}, not {raw!r}") from None
    return values


def _convert(kind, raw: str):
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    if kind is frozenset:
        return frozenset(item.strip() for item in raw.split(",") if item.strip())
    return kind(raw)
