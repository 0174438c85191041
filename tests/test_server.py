"""The gateway as its users run it: health, reflection, `python -m gateway` with boto3's env, SIGTERM, the CLI."""

import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import ConfigError, Settings
from gateway.process.gateway import create_server
from gateway.store.models import Message, MessageState, database, open_database
from support.processes import free_port, start, wait_until
from tests.rpc import settled


def test_health_and_reflection_are_registered(settings, ses):
    gateway = create_server(settings)
    gateway.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "mailgateway.v1.MailGatewayService", "mailgateway.v1.Dispatch"):
                response = health.Check(health_pb2.HealthCheckRequest(service=service))
                assert response.status == health_pb2.HealthCheckResponse.SERVING
            services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert "mailgateway.v1.MailGatewayService" in services
            assert "grpc.health.v1.Health" in services
    finally:
        gateway.stop(None)


@pytest.fixture
def gateway_process(database_url, ses):
    """`python -m gateway` configured only through the environment, SES reached through AWS_ENDPOINT_URL_SESV2."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_SES_CONFIGURATION_SET": "configured-set",
    }
    process = start(["-m", "gateway"], env)
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1, process)
    yield process, pb_grpc.MailGatewayServiceStub(channel)
    channel.close()
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.mark.slow
def test_python_m_gateway_reads_its_config_and_boto3_endpoint_from_the_environment(gateway_process, ses):
    _, stub = gateway_process

    accepted = stub.SendEmail(pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="Hello"), timeout=10)

    assert settled(stub, accepted.message_id).state == pb.MESSAGE_STATE_SENT
    assert len(ses.sent) == 1
    assert ses.sent[0].body["ConfigurationSetName"] == "configured-set"
    assert "us-east-1" in ses.sent[0].headers["Authorization"]  # AWS_REGION reached the SigV4 scope


@pytest.mark.slow
def test_sigterm_lets_the_in_flight_send_finish_then_exits_zero(gateway_process, ses, database_url):
    process, stub = gateway_process
    ses.delay = 1.5
    accepted = stub.SendEmail(pb.SendEmailRequest(to="a@example.org", subject="Hi", text_body="x"), timeout=10)
    wait_until(lambda: len(ses.sent) == 1, process)  # the dispatcher is now inside the SES call

    process.send_signal(signal.SIGTERM)

    assert process.wait(20) == 0
    assert [r.tags["message_id"] for r in ses.accepted] == [accepted.message_id]  # SES answered; not cut off
    open_database(database_url)
    with database.connection_context():
        assert Message.get(message_id=accepted.message_id).state is MessageState.SENT  # and the answer was recorded
    database.close_all()
    with pytest.raises(grpc.RpcError) as refused:
        stub.SendEmail(pb.SendEmailRequest(to="b@example.org", subject="Hi", text_body="x"), timeout=2)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_bad_settings_are_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="MAILGW_TRANSPORT"):
        Settings.from_env({"MAILGW_TRANSPORT": "smtp"})
    with pytest.raises(ConfigError, match="MAILGW_GRPC_WORKERS must be a whole number"):
        Settings.from_env({"MAILGW_GRPC_WORKERS": "many"})
    assert Settings.from_env({}).ses_configuration_set == "my-leads-now-config"


@pytest.mark.slow
def test_local_mode_cli_send_writes_an_eml_and_status_reads_it_back(tmp_path, database_url):
    """What a newcomer does after `make run`: send with the CLI, read the outbox, ask for the status."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_TRANSPORT": "outbox",
        "MAILGW_OUTBOX_DIR": str(tmp_path / "outbox"),
        "MAILGW_DEFAULT_FROM": "App <noreply@example.com>",
        "MAILGW_PUBLIC_BASE_URL": "http://127.0.0.1:8080",
    }
    server = start(["-m", "gateway.cli", "serve"], env)
    try:
        channel = grpc.insecure_channel(address)
        wait_until(
            lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1), server
        )
        channel.close()

        send = start(
            ["-m", "gateway.cli", "send", "--to", "Dev@Example.org", "--subject", "Hi", "--text", "Hello"], env
        )
        out, _ = send.communicate(timeout=20)
        assert send.returncode == 0, out
        accepted, link = out.splitlines()
        contact_id = accepted.split("contact_id=")[1]

        [eml] = wait_until(lambda: list((tmp_path / "outbox").glob("*.eml")))  # dispatched from the queue
        assert link == f"unsubscribe link: http://127.0.0.1:8080/unsubscribe/{contact_id}"
        assert f"<http://127.0.0.1:8080/unsubscribe/{contact_id}>" in eml.read_text()  # List-Unsubscribe

        status = start(["-m", "gateway.cli", "status", "dev@example.org"], env)
        out, _ = status.communicate(timeout=20)
        assert status.returncode == 0, out
        assert out.startswith("dev@example.org: active")

        missing = start(["-m", "gateway.cli", "status", "nobody@example.org"], env)
        out, _ = missing.communicate(timeout=20)
        assert missing.returncode == 1
        assert "NOT_FOUND" in out and "reason=CONTACT_NOT_FOUND" in out
    finally:
        server.terminate()
        assert server.wait(20) == 0
