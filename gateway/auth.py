"""Who may call the gateway: TLS (optionally mutual) and per-caller bearer tokens, from settings."""

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.config import ConfigError, Settings
from gateway.errors import Unauthenticated

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Authenticator:
    """Names the caller of an RPC; raises Unauthenticated when tokens are required and none matches."""

    tokens: tuple[tuple[str, bytes], ...] = ()  # (caller name, token)

    def caller(self, context: grpc.ServicerContext) -> str:
        if not self.tokens:
            # Without tokens, a client certificate (mTLS) names the caller; on loopback nobody is named.
            names = context.auth_context().get("x509_common_name") or [b""]
            return names[0].decode(errors="replace")
        presented = b""
        for key, value in context.invocation_metadata():
            if key == "authorization" and value.startswith("Bearer "):
                presented = value.removeprefix("Bearer ").strip().encode()
        caller = ""
        for name, token in self.tokens:  # every token is compared, so timing tells nothing about which matched
            if hmac.compare_digest(token, presented) and presented:
                caller = name
        if not caller:
            raise Unauthenticated("a valid bearer token is required in the authorization metadata")
        return caller


def authenticator(settings: Settings) -> Authenticator:
    """Tokens from MAILGW_AUTH_TOKENS ("name=token,…") and MAILGW_AUTH_TOKENS_FILE (one "name token" a line)."""
    entries = [item.partition("=")[::2] for item in settings.auth_tokens.split(",") if item.strip()]
    if settings.auth_tokens_file:
        try:
            lines = Path(settings.auth_tokens_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"MAILGW_AUTH_TOKENS_FILE cannot be read: {exc.strerror}") from None
        entries += [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.startswith("#")]
    tokens = []
    for entry in entries:
        name, token = (part.strip() for part in (entry + ("",))[:2])
        if not name or len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"each token needs a caller name and at least {MIN_TOKEN_LENGTH} characters")
        tokens.append((name, token.encode()))
    return Authenticator(tuple(tokens))


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from MAILGW_TLS_CERT/KEY, requiring client certificates signed by MAILGW_TLS_CLIENT_CA."""
    if not settings.tls_cert:
        return None
    try:
        key, cert = Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes()
        client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"TLS files cannot be read: {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=bool(client_ca))


def check_exposure(settings: Settings) -> None:
    """Refuse to serve a non-loopback address in the clear to anyone, unless explicitly allowed."""
    host = settings.grpc_addr.rpartition(":")[0].strip("[]")
    protected = settings.tls_cert or settings.auth_tokens or settings.auth_tokens_file
    if not is_loopback(host) and not protected and not settings.allow_insecure_bind:
        raise ConfigError(
            f"refusing to serve {settings.grpc_addr} without TLS or tokens: set MAILGW_TLS_CERT and MAILGW_TLS_KEY, "
            "or MAILGW_AUTH_TOKENS(_FILE), or MAILGW_ALLOW_INSECURE_BIND=true"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
