"""Access control: bearer tokens per caller, TLS and mutual TLS, and no accidental exposure."""

from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import ConfigError
from gateway.process.gateway import create_server
from gateway.store.models import Message, database, open_database
from support.tls_certs import CertificateAuthority
from tests.conftest import TEARDOWN_GRACE
from tests.rpc import error_info, rpc_failure, settled

BILLING_TOKEN = "billing-token-0123456789abcdef"
SIGNUP_TOKEN = "signup-token-0123456789abcdef"
REQUEST = pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="Hello")


@pytest.fixture
def serve(ses):
    started = []

    def start(settings, channel_credentials=None):
        gateway = create_server(settings)
        gateway.start()
        started.append(gateway)
        target = f"localhost:{gateway.port}"
        if channel_credentials:
            return grpc.secure_channel(target, channel_credentials)
        return grpc.insecure_channel(target)

    yield start
    for gateway in started:
        gateway.stop(TEARDOWN_GRACE)


def callers() -> list[str]:
    """Who sent each accepted message, oldest first."""
    with database.connection_context():
        return [m.caller for m in Message.select().order_by(Message.id)]


def with_token(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_tokens_name_the_caller_and_everything_else_is_unauthenticated(settings, serve, ses):
    channel = serve(replace(settings, auth_tokens=f"billing={BILLING_TOKEN},signup={SIGNUP_TOKEN}"))
    stub = pb_grpc.MailGatewayServiceStub(channel)

    for metadata in ([], with_token("wrong-token-0123456789abcdef"), [("authorization", BILLING_TOKEN)]):
        code, _, details = rpc_failure(stub.SendEmail, REQUEST, metadata=metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(details).reason == "UNAUTHENTICATED"
    assert ses.sent == []

    stub.SendEmail(REQUEST, metadata=with_token(SIGNUP_TOKEN))
    stub.GetContactStatus(pb.GetContactStatusRequest(email="a@example.org"), metadata=with_token(BILLING_TOKEN))
    assert callers() == ["signup"]
    # Health checks stay open, so load balancers and orchestrators need no token.
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_come_from_a_file_too(settings, serve, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# caller token\nbilling {BILLING_TOKEN}\n")
    stub = pb_grpc.MailGatewayServiceStub(serve(replace(settings, auth_tokens_file=str(tokens))))

    stub.SendEmail(REQUEST, metadata=with_token(BILLING_TOKEN))

    assert callers() == ["billing"]


def test_request_ids_are_scoped_to_their_caller(settings, serve, ses):
    stub = pb_grpc.MailGatewayServiceStub(serve(replace(settings, auth_tokens=f"a={BILLING_TOKEN},b={SIGNUP_TOKEN}")))
    request = pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="Hello", request_id="order-1")

    first = stub.SendEmail(request, metadata=with_token(BILLING_TOKEN))
    second = stub.SendEmail(request, metadata=with_token(SIGNUP_TOKEN))

    assert first.message_id != second.message_id
    assert stub.SendEmail(request, metadata=with_token(SIGNUP_TOKEN)) == second
    assert callers() == ["a", "b"]


def test_a_caller_reads_only_its_own_messages(settings, serve, ses):
    stub = pb_grpc.MailGatewayServiceStub(serve(replace(settings, auth_tokens=f"a={BILLING_TOKEN},b={SIGNUP_TOKEN}")))
    sent = stub.SendEmail(REQUEST, metadata=with_token(BILLING_TOKEN))

    assert settled(stub, sent.message_id, metadata=with_token(BILLING_TOKEN)).state == pb.MESSAGE_STATE_SENT
    request = pb.GetMessageRequest(message_id=sent.message_id)
    code, _, details = rpc_failure(stub.GetMessage, request, metadata=with_token(SIGNUP_TOKEN))
    assert code == grpc.StatusCode.NOT_FOUND  # the same answer as for an id nobody sent
    assert error_info(details).reason == "MESSAGE_NOT_FOUND"


@pytest.mark.one_database
@pytest.mark.parametrize("bad", ["short=abc", "=no-name-0123456789abcdef", "justatoken"])
def test_weak_or_unnamed_tokens_are_refused_at_start(settings, bad):
    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_server(replace(settings, auth_tokens=bad))


@pytest.fixture
def pki(tmp_path):
    ca = CertificateAuthority()
    cert, key = ca.issue("mailgw.internal", server=True).write(tmp_path, "server")
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(ca.pem)
    return ca, cert, key, str(ca_path)


@pytest.mark.one_database
def test_mutual_tls_names_the_caller_by_its_certificate(settings, serve, pki):
    ca, cert, key, ca_path = pki
    client = ca.issue("billing-service")
    secure = replace(settings, tls_cert=cert, tls_key=key, tls_client_ca=ca_path)
    credentials = grpc.ssl_channel_credentials(ca.pem, client.key_pem, client.cert_pem)

    pb_grpc.MailGatewayServiceStub(serve(secure, credentials)).SendEmail(REQUEST, timeout=10)

    assert callers() == ["billing-service"]


@pytest.mark.one_database
def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(settings, serve, pki, ses):
    ca, cert, key, ca_path = pki
    secure = replace(settings, tls_cert=cert, tls_key=key, tls_client_ca=ca_path)
    stranger = CertificateAuthority("another CA").issue("intruder")
    attempts = [
        grpc.ssl_channel_credentials(ca.pem),  # no client certificate
        grpc.ssl_channel_credentials(ca.pem, stranger.key_pem, stranger.cert_pem),
        None,  # plaintext
    ]
    for credentials in attempts:
        stub = pb_grpc.MailGatewayServiceStub(serve(secure, credentials))
        with pytest.raises(grpc.RpcError) as refused:
            stub.SendEmail(REQUEST, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails: no RPC is served
    assert ses.sent == []


@pytest.mark.one_database
def test_tls_with_tokens(settings, serve, pki):
    ca, cert, key, _ = pki
    secure = replace(settings, tls_cert=cert, tls_key=key, auth_tokens=f"billing={BILLING_TOKEN}")
    stub = pb_grpc.MailGatewayServiceStub(serve(secure, grpc.ssl_channel_credentials(ca.pem)))

    stub.SendEmail(REQUEST, metadata=with_token(BILLING_TOKEN), timeout=10)
    code, _, _ = rpc_failure(stub.SendEmail, REQUEST, timeout=10)

    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert callers() == ["billing"]


@pytest.mark.one_database
@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "192.0.2.10:0"])
def test_a_non_loopback_address_needs_authenticated_callers_or_an_explicit_opt_in(settings, pki, address):
    _, cert, key, _ = pki
    # TLS without client certificates encrypts, but any client on the network could then send as anyone.
    for exposed in (
        replace(settings, grpc_addr=address),
        replace(settings, grpc_addr=address, tls_cert=cert, tls_key=key),
    ):
        with pytest.raises(ConfigError, match="callers are not authenticated"):
            create_server(exposed)


@pytest.mark.one_database
def test_client_certificates_or_tokens_over_tls_or_an_explicit_opt_in_allow_a_non_loopback_address(
    settings, pki, ses, caplog
):
    _, cert, key, ca_path = pki
    for exposed in (
        replace(settings, grpc_addr="0.0.0.0:0", tls_cert=cert, tls_key=key, tls_client_ca=ca_path),
        replace(settings, grpc_addr="0.0.0.0:0", tls_cert=cert, tls_key=key, auth_tokens=f"billing={BILLING_TOKEN}"),
        replace(
            settings, grpc_addr="0.0.0.0:0", tls_cert=cert, tls_key=key, auth_tokens=f"ops={BILLING_TOKEN}",
            admin_callers=frozenset({"ops"}),
        ),
    ):  # fmt: skip
        gateway = create_server(exposed)
        assert gateway.port > 0
        gateway.stop(None)
    assert "MAILGW_ALLOW_INSECURE_BIND" not in caplog.text

    gateway = create_server(replace(settings, grpc_addr="0.0.0.0:0", allow_insecure_bind=True))
    gateway.stop(None)
    assert gateway.port > 0
    [warning] = [r for r in caplog.records if "MAILGW_ALLOW_INSECURE_BIND" in r.getMessage()]
    assert warning.levelname == "WARNING" and "anyone who reaches it can send mail" in warning.getMessage()


@pytest.mark.one_database
def test_tokens_never_cross_the_network_in_clear(settings, ses, caplog):
    """A bearer token is a password in every call: on a non-loopback address it needs TLS, for callers and admins."""
    for exposed in (
        replace(settings, grpc_addr="0.0.0.0:0", auth_tokens=f"billing={BILLING_TOKEN}"),
        replace(settings, grpc_addr="[::]:0", auth_tokens=f"ops={BILLING_TOKEN}", admin_callers=frozenset({"ops"})),
    ):
        with pytest.raises(ConfigError, match="bearer tokens would cross the network in clear: set MAILGW_TLS_CERT"):
            create_server(exposed)

    allowed = replace(settings, grpc_addr="0.0.0.0:0", auth_tokens=f"billing={BILLING_TOKEN}", allow_insecure_bind=True)
    gateway = create_server(allowed)
    gateway.stop(None)
    [warning] = [r for r in caplog.records if "MAILGW_ALLOW_INSECURE_BIND" in r.getMessage()]
    assert "bearer tokens cross the network in clear" in warning.getMessage()


@pytest.mark.slow
def test_a_token_gateway_without_tls_on_a_public_address_stops_with_one_line(database_url, tmp_path):
    from tests.test_startup import one_line, refused_at_start

    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": "0.0.0.0:0",
        "MAILGW_AUTH_TOKENS": f"billing={BILLING_TOKEN}",
        "MAILGW_TRANSPORT": "outbox",
        "MAILGW_OUTBOX_DIR": str(tmp_path),
    }

    code, output = refused_at_start(["-m", "gateway"], env)

    assert code == 2
    line = one_line(output)
    assert line.startswith("mailgw: MAILGW_GRPC_ADDR=0.0.0.0:0 is reachable from the network but bearer tokens")
    assert BILLING_TOKEN not in line


@pytest.mark.slow
def test_cli_sends_with_a_token_over_tls(settings, pki, ses, database_url):
    """`mailgw send` against a protected gateway, configured the way an operator would."""
    from support.processes import free_port, start, wait_until

    ca, cert, key, ca_path = pki
    address = f"localhost:{free_port()}"
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_TLS_CERT": cert,
        "MAILGW_TLS_KEY": key,
        "MAILGW_AUTH_TOKENS": f"ops-cli={BILLING_TOKEN}",
    }
    server = start(["-m", "gateway"], env)
    try:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca.pem))
        wait_until(
            lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1), server
        )
        client_env = env | {"MAILGW_CLIENT_CA": ca_path, "MAILGW_CLIENT_TOKEN": BILLING_TOKEN}
        send = start(
            ["-m", "gateway.cli", "send", "--to", "a@example.org", "--subject", "Hi", "--text", "x"], client_env
        )
        out, _ = send.communicate(timeout=30)
        assert send.returncode == 0, out
        assert out.startswith("accepted: message_id=msg_")
        unauthenticated = start(["-m", "gateway.cli", "status", "a@example.org"], env | {"MAILGW_CLIENT_CA": ca_path})
        out, _ = unauthenticated.communicate(timeout=30)
        assert unauthenticated.returncode == 1 and "reason=UNAUTHENTICATED" in out
    finally:
        server.terminate()
        assert server.wait(20) == 0
    open_database(database_url)
    assert callers() == ["ops-cli"]
