"""Starting the processes: one owner per port, and a bad setting stops a process with one line, never a traceback."""

import socket
import subprocess
from dataclasses import replace
from urllib.request import urlopen

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.rpc.server import create_server
from gateway.store.contacts import change_status
from gateway.store.models import ContactStatus, database, open_database
from tests.processes import free_port, start, wait_until
from tests.rpc import error_info, rpc_failure

REQUEST = pb.SendEmailRequest(to="gone@example.org", subject="Hi", text_body="Hello")


def gateway_env(tmp_path, name: str, address: str, **extra: str) -> dict[str, str]:
    return {
        "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db",
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
    } | extra


def healthy(address: str, process: subprocess.Popen) -> None:
    channel = grpc.insecure_channel(address)
    wait_until(lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1), process)
    channel.close()


def refused_at_start(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """A process that must stop by itself: its exit code and everything it printed."""
    process = start(args, env)
    output, _ = process.communicate(timeout=30)
    return process.returncode, output


def one_line(output: str) -> str:
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    return output.strip()


@pytest.fixture
def stop_afterwards():
    processes = []
    yield processes.append
    for process in processes:
        process.terminate()
        assert process.wait(20) == 0, process.stdout.read()


# --- one owner per port ---------------------------------------------------------------------------------


def test_a_stale_gateway_cannot_share_the_port_of_a_running_one(tmp_path, ses, stop_afterwards):
    """grpcio sets SO_REUSEPORT: a second gateway on another database took 2 of 6 calls to an unsubscribed recipient."""
    address = f"127.0.0.1:{free_port()}"
    current = start(["-m", "gateway"], gateway_env(tmp_path, "current", address))
    stop_afterwards(current)
    healthy(address, current)
    open_database(f"sqlite:///{tmp_path}/current.db")
    with database.connection_context():
        change_status(ContactStatus.UNSUBSCRIBED, source="test", email="gone@example.org")
    database.close_all()

    code, output = refused_at_start(["-m", "gateway"], gateway_env(tmp_path, "stale", address))

    assert code == 1
    assert one_line(output) == f"mailgw: MAILGW_GRPC_ADDR={address}: the address is in use by another process"
    for _ in range(6):  # a new connection each time, as separate clients make
        with grpc.insecure_channel(address) as channel:
            code, _, details = rpc_failure(pb_grpc.MailGatewayServiceStub(channel).SendEmail, REQUEST, timeout=10)
        assert (code, error_info(details).reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RECIPIENT_SUPPRESSED")
    assert ses.sent == []


def test_gateway_processes_share_their_port_with_each_other_only(tmp_path, ses, stop_afterwards):
    address = f"127.0.0.1:{free_port()}"
    group = start(["-m", "gateway"], gateway_env(tmp_path, "group", address, MAILGW_GRPC_PROCESSES="2"))
    stop_afterwards(group)
    healthy(address, group)

    for processes, expected in (("2", "another mailgw gateway serves this port"), ("1", "the address is in use")):
        env = gateway_env(tmp_path, "other", address, MAILGW_GRPC_PROCESSES=processes)
        code, output = refused_at_start(["-m", "gateway"], env)
        assert code == 1
        assert expected in one_line(output)


def test_the_sidecar_stops_with_one_line_when_its_port_is_taken(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {"MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/db", "MAILGW_HTTP_ADDR": address}
        code, output = refused_at_start(["-m", "feedback_http"], env)

    assert code == 1
    assert one_line(output) == f"mailgw: MAILGW_HTTP_ADDR={address}: the address is in use by another process"


def test_mailgw_run_starts_neither_server_when_the_sidecars_port_is_taken(tmp_path):
    grpc_address = f"127.0.0.1:{free_port()}"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        http_address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = gateway_env(tmp_path, "run", grpc_address, MAILGW_HTTP_ADDR=http_address, MAILGW_TRANSPORT="outbox")
        code, output = refused_at_start(["-m", "gateway.cli", "run"], env)

    assert code == 1
    assert one_line(output) == f"mailgw: MAILGW_HTTP_ADDR={http_address}: the address is in use by another process"
    assert not (tmp_path / "run.db").exists()  # the gateway never started: it would have created its database


# --- configuration mistakes: one line naming the variable, exit code 2 --------------------------------------


@pytest.mark.parametrize(
    "module, env, expected",
    [
        ("gateway", {"MAILGW_DEFAULT_FROM": "noreply@app.test"}, "MAILGW_DEFAULT_FROM is not an address SES can send"),
        ("gateway", {"MAILGW_TRANSPORT": "ses", "AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, "no AWS region"),
        ("gateway", {"MAILGW_GRPC_WORKERS": "many"}, "MAILGW_GRPC_WORKERS must be a whole number, not 'many'"),
        ("gateway", {"MAILGW_ALLOW_INSECURE_BIND": "maybe"}, "MAILGW_ALLOW_INSECURE_BIND must be true or false"),
        ("gateway", {"MAILGW_SEND_RATE": "nan"}, "MAILGW_SEND_RATE must be a finite number, not 'nan'"),
        ("gateway", {"MAILGW_MAX_MESSAGE_AGE_SECONDS": "inf"}, "MAILGW_MAX_MESSAGE_AGE_SECONDS must be a finite"),
        ("gateway", {"MAILGW_DISPATCH_LEASE_SECONDS": "0"}, "MAILGW_DISPATCH_LEASE_SECONDS must be above 0"),
        ("gateway", {"MAILGW_DATABASE_URL": "mysql://db/mail"}, "MAILGW_DATABASE_URL must be sqlite:///path or"),
        ("gateway", {"MAILGW_GRPC_ADDR": "localhost"}, "MAILGW_GRPC_ADDR must be host:port"),
        ("gateway", {"MAILGW_TLS_CERT": "/nonexistent.crt", "MAILGW_TLS_KEY": "/k"}, "TLS files cannot be read"),
        ("gateway", {"MAILGW_AUTH_TOKENS": "billing=short"}, "MAILGW_AUTH_TOKENS(_FILE): each token needs"),
        ("gateway", {"MAILGW_SES_CONFIGURATION_SET": "my set"}, "MAILGW_SES_CONFIGURATION_SET must be an SES"),
        ("gateway", {"MAILGW_PUBLIC_BASE_URL": "mail.example.com"}, "MAILGW_PUBLIC_BASE_URL must be an http(s) URL"),
        ("feedback_http", {"MAILGW_SNS_TOPIC_ARNS": "ses-feedback"}, "MAILGW_SNS_TOPIC_ARNS: 'ses-feedback' is not"),
        ("feedback_http", {"MAILGW_SOFT_BOUNCE_LIMIT": "-1"}, "MAILGW_SOFT_BOUNCE_LIMIT must not be negative"),
        ("feedback_http", {"MAILGW_HTTP_ADDR": "8080"}, "MAILGW_HTTP_ADDR must be host:port"),
        ("feedback_http", {"MAILGW_DATABASE_URL": "mailgw.db"}, "MAILGW_DATABASE_URL must be sqlite:///path or"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line_and_exit_code_2(tmp_path, aws_env, module, env, expected):
    base = {"MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/db", "MAILGW_GRPC_ADDR": f"127.0.0.1:{free_port()}"}
    code, output = refused_at_start(["-m", module], base | {"MAILGW_TRANSPORT": "outbox"} | env)

    assert code == 2
    line = one_line(output)
    assert line.startswith("mailgw: ") and expected in line


def test_an_http_unsubscribe_link_on_a_public_host_is_warned_about(settings, ses, caplog):
    caplog.set_level("WARNING")
    create_server(replace(settings, public_base_url="http://mail.example.com")).stop(None)

    assert "MAILGW_PUBLIC_BASE_URL is http:// on mail.example.com" in caplog.text
    assert "RFC 8058" in caplog.text


def test_gateways_and_sidecars_starting_at_once_on_a_new_sqlite_file_all_start(tmp_path):
    """The first connection of each process turns WAL on for a new file, which needs the file to itself: processes
    starting at the same moment (mailgw run, replicas) wait for each other instead of exiting 'database is locked'."""
    env = {
        "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/new.db",
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_TRANSPORT": "outbox",
        "MAILGW_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    gateways = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    sidecars = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    processes = [start(["-m", "gateway"], env | {"MAILGW_GRPC_ADDR": address}) for address in gateways]
    processes += [start(["-m", "feedback_http"], env | {"MAILGW_HTTP_ADDR": address}) for address in sidecars]
    try:
        for process, address in zip(processes, gateways, strict=False):
            health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
            wait_until(lambda health=health: health.Check(health_pb2.HealthCheckRequest(), timeout=1), process)
        for process, address in zip(processes[len(gateways) :], sidecars, strict=True):
            wait_until(lambda address=address: urlopen(f"http://{address}/healthz", timeout=1).status == 200, process)
    finally:
        for process in processes:
            process.terminate()
        codes = [process.wait(30) for process in processes]
    assert codes == [0] * len(processes)
