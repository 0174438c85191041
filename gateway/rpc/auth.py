"""Who may call the gateway: TLS (optionally mutual) and per-caller bearer tokens, from settings."""

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.core.config import ConfigError, Settings, is_loopback, listen_address
from gateway.core.errors import AdminCallerRequired, Unauthenticated
from gateway.core.ids import is_name

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Authenticator:
    """Names the caller of an RPC; raises Unauthenticated when tokens are required and none matches."""

    tokens: tuple[tuple[str, bytes], ...] = ()  # (caller name, token)

    def caller(self, context: grpc.ServicerContext) -> str:
        if not self.tokens:
            # Without tokens, a client certificate (mTLS) names the caller; on loopback nobody is named.
            names = context.auth_context().get("x509_common_name") or [b""]
            name = names[0].decode(errors="replace")
            if name and not is_name(name):  # the name is stored with every message it sends
                raise Unauthenticated("the client certificate's CN is not a usable caller name")
            return name
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
            raise ConfigError(
                f"MAILGW_AUTH_TOKENS(_FILE): each token needs a caller name and at least {MIN_TOKEN_LENGTH} characters"
            )
        if not is_name(name):
            raise ConfigError(f"MAILGW_AUTH_TOKENS(_FILE): caller name {name[:40]!r} is not 1-128 printable ASCII")
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
    """Refuse to serve a non-loopback address to callers nobody authenticates, or to send bearer tokens across the
    network in clear, unless explicitly allowed (then each is a warning at start).

    TLS alone encrypts; it does not say who is calling, so any client on the network could send as anyone. Client
    certificates (MAILGW_TLS_CLIENT_CA) or bearer tokens do; tokens, though, are a password in every call's metadata,
    which anyone on the path reads unless TLS carries it.
    """
    host = listen_address(settings.grpc_addr, "MAILGW_GRPC_ADDR")[0]
    if is_loopback(host):
        return
    tokens = settings.auth_tokens or settings.auth_tokens_file
    risks = []
    if not (settings.tls_client_ca or tokens):
        risks.append(
            (
                "callers are not authenticated (TLS alone does not say who calls): set MAILGW_TLS_CLIENT_CA or "
                "MAILGW_AUTH_TOKENS(_FILE)",
                "without authenticating callers: anyone who reaches it can send mail",
            )
        )
    if (tokens or settings.admin_callers) and not settings.tls_cert:
        risks.append(
            (
                "bearer tokens would cross the network in clear: set MAILGW_TLS_CERT and MAILGW_TLS_KEY",
                "without TLS: bearer tokens cross the network in clear, readable by anyone on the path",
            )
        )
    for refusal, warning in risks:
        if not settings.allow_insecure_bind:
            raise ConfigError(
                f"MAILGW_GRPC_ADDR={settings.grpc_addr} is reachable from the network but {refusal}, or "
                "MAILGW_ALLOW_INSECURE_BIND=true"
            )
        log.warning("serving %s %s (MAILGW_ALLOW_INSECURE_BIND=true)", settings.grpc_addr, warning)


UNAUTHENTICATED_OPERATOR = "unauthenticated"  # who an admin change records when nobody is authenticated


@dataclass(frozen=True)
class AdminAuthenticator:
    """Names the caller of an admin RPC: an authenticated caller listed in MAILGW_ADMIN_CALLERS; anyone else gets
    AdminCallerRequired (PERMISSION_DENIED). With MAILGW_ADMIN_ALLOW_UNAUTHENTICATED (loopback, nobody
    authenticated), every caller is an admin, recorded as "unauthenticated"."""

    callers: Authenticator
    admins: frozenset[str] = frozenset()
    allow_unauthenticated: bool = False

    def caller(self, context: grpc.ServicerContext) -> str:
        name = self.callers.caller(context)
        if name in self.admins:
            return name
        if self.allow_unauthenticated:
            return UNAUTHENTICATED_OPERATOR
        metadata = {"caller": name} if name else {}
        raise AdminCallerRequired("only the callers in MAILGW_ADMIN_CALLERS may use the admin service", **metadata)


def admin_authenticator(settings: Settings, callers: Authenticator) -> AdminAuthenticator:
    """Who may use the admin service, from MAILGW_ADMIN_CALLERS ("name,…") and MAILGW_ADMIN_ALLOW_UNAUTHENTICATED.

    Nobody when MAILGW_ADMIN_CALLERS is empty. Unauthenticated callers only when asked for explicitly, and only where
    nobody can be authenticated (no tokens, no client CA) and only local processes can call (a loopback address).
    """
    admins = settings.admin_callers
    for name in sorted(admins):
        if not is_name(name):
            raise ConfigError(f"MAILGW_ADMIN_CALLERS: caller name {name[:40]!r} is not 1-128 printable ASCII")
    if admins and not callers.tokens and not settings.tls_client_ca:
        raise ConfigError(
            "MAILGW_ADMIN_CALLERS needs authenticated callers (MAILGW_AUTH_TOKENS(_FILE) or MAILGW_TLS_CLIENT_CA): "
            "without them no caller has a name (on loopback, MAILGW_ADMIN_ALLOW_UNAUTHENTICATED=true instead)"
        )
    token_names = {name for name, _ in callers.tokens}
    if token_names and not admins <= token_names:  # with tokens, a token names every caller (not a certificate)
        unknown = ", ".join(sorted(admins - token_names))
        raise ConfigError(f"MAILGW_ADMIN_CALLERS names callers no token names: {unknown}")
    if settings.admin_allow_unauthenticated:
        host = listen_address(settings.grpc_addr, "MAILGW_GRPC_ADDR")[0]
        if callers.tokens or settings.tls_client_ca or not is_loopback(host):
            raise ConfigError(
                "MAILGW_ADMIN_ALLOW_UNAUTHENTICATED=true needs a loopback MAILGW_GRPC_ADDR whose callers are not "
                "authenticated (no MAILGW_AUTH_TOKENS(_FILE), no MAILGW_TLS_CLIENT_CA); otherwise name the admins in "
                "MAILGW_ADMIN_CALLERS"
            )
    return AdminAuthenticator(callers, frozenset(admins), settings.admin_allow_unauthenticated)
