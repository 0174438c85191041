"""Starting the processes: one owner per port, and a bad setting stops a process with one line, never a traceback."""

import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from urllib.parse import urlsplit
from urllib.request import urlopen

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import Settings, masked_url
from gateway.process.gateway import create_server
from gateway.store.contacts import change_status
from gateway.store.models import ContactStatus, database, open_database
from support.processes import ROOT, free_port, start, wait_until
from tests.conftest import POSTGRES_SERVER_URL
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_sidecar_stops_with_one_line_when_its_port_is_taken(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {"MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/db", "MAILGW_HTTP_ADDR": address}
        code, output = refused_at_start(["-m", "feedback_http"], env)

    assert code == 1
    assert one_line(output) == f"mailgw: MAILGW_HTTP_ADDR={address}: the address is in use by another process"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_password_in_a_bad_database_url_is_never_printed(tmp_path):
    url = "postgresql:/mailgw:hunter2@db.internal/mail"  # one slash short
    code, output = refused_at_start(["-m", "gateway"], {"MAILGW_DATABASE_URL": url, "MAILGW_TRANSPORT": "outbox"})

    assert code == 2
    assert one_line(output) == (
        "mailgw: MAILGW_DATABASE_URL must be sqlite:///path or postgresql://user@host/db, "
        "not 'postgresql:/mailgw:***@db.internal/mail'"
    )


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://mailgw:s3cr/t@db:5432/mail", "postgresql://mailgw:***@db:5432/mail"),
        ("postgresql://mailgw:a@b:c@db/mail?sslmode=require", "postgresql://mailgw:***@db/mail?sslmode=require"),
        (
            "postgresql://mailgw@db/mail?password=s3cret&sslmode=require",
            "postgresql://mailgw@db/mail?password=***&sslmode=require",
        ),
        ("postgresql://mailgw@db/mail", "postgresql://mailgw@db/mail"),
        ("sqlite:///data/mail@1.db", "sqlite:///data/mail@1.db"),
        ("mailgw:s3cret@db/mail", "mailgw:***@db/mail"),
    ],
)
def test_printed_database_urls_mask_the_password(url, shown):
    assert masked_url(url) == shown


# --- the database: one line naming the setting and the problem, exit code 1; a command never makes one ---------


def postgres_url(*, user: str = "", port: int | None = None, name: str = "postgres", password: str = "") -> str:
    """The test server's URL, with another user, port, database or a password."""
    server = urlsplit(POSTGRES_SERVER_URL)
    user = user or server.username or "postgres"
    credentials = f"{user}:{password}" if password else user
    return f"postgresql://{credentials}@{server.hostname}:{port or server.port or 5432}/{name}"


def unusable_databases(tmp_path) -> dict[str, tuple[str, str]]:
    """Each way a database cannot be used: its URL and the problem the line names."""
    missing = f"mailgw_missing_{secrets.token_hex(4)}"
    closed = free_port()
    return {
        "no such database": (postgres_url(name=missing), f'cannot connect: database "{missing}" does not exist'),
        "nothing listening": (postgres_url(port=closed, password="hunter2"), "cannot connect: connection refused"),
        "unknown role": (postgres_url(user="mailgw_no_such_role"), 'cannot connect: role "mailgw_no_such_role" does'),
        "missing folder": (
            f"sqlite:///{tmp_path}/missing/mailgw.db",
            f"cannot create the database: the folder {tmp_path}/missing does not exist",
        ),
    }


def database_problem_line(output: str, url: str, problem: str) -> None:
    line = one_line(output)
    assert line.startswith(f"mailgw: MAILGW_DATABASE_URL={masked_url(url)}: {problem}"), line
    assert "hunter2" not in output


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no such database", "nothing listening", "unknown role", "missing folder"])
def test_a_database_that_cannot_be_used_stops_the_gateway_with_one_line(tmp_path, case):
    url, problem = unusable_databases(tmp_path)[case]
    env = gateway_env(tmp_path, "unused", f"127.0.0.1:{free_port()}", MAILGW_TRANSPORT="outbox")

    code, output = refused_at_start(["-m", "gateway"], env | {"MAILGW_DATABASE_URL": url})

    assert code == 1
    database_problem_line(output, url, problem)


PROCESSES_AND_COMMANDS = {
    "mailgw serve": ["serve"],
    "python -m feedback_http": None,
    "mailgw feedback-sqs": ["feedback-sqs"],
    "mailgw run": ["run"],
    "mailgw suppression sync": ["suppression", "sync"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", PROCESSES_AND_COMMANDS)
def test_every_process_and_command_says_so_in_one_line_and_never_shows_the_password(tmp_path, aws_env, name):
    url, problem = unusable_databases(tmp_path)["nothing listening"]
    args = PROCESSES_AND_COMMANDS[name]
    env = gateway_env(tmp_path, "unused", f"127.0.0.1:{free_port()}") | {
        "MAILGW_DATABASE_URL": url,
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "MAILGW_TRANSPORT": "outbox" if args in (["serve"], ["run"]) else "ses",
        "MAILGW_SQS_QUEUE_URL": "http://127.0.0.1:9/123456789012/feedback",
    }

    code, output = refused_at_start(["-m", "gateway.cli", *args] if args else ["-m", "feedback_http"], env)

    assert code == 1
    database_problem_line(output, url, problem)


COMMANDS = {
    "suppression sync": ["suppression", "sync"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_run_where_no_database_is_never_makes_one(tmp_path, aws_env, name):
    """Run in a folder without the gateway's database (MAILGW_DATABASE_URL unset: ./mailgw.db), a command that reads
    state said "dispatch: full pace" of an empty database it had just created."""
    command = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *COMMANDS[name]],
        env=os.environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert command.returncode == 1
    assert command.stdout == ""
    assert one_line(command.stderr) == (
        f"mailgw: MAILGW_DATABASE_URL=sqlite:///mailgw.db: no database at {tmp_path}/mailgw.db: start the gateway "
        "first or set MAILGW_DATABASE_URL"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_against_a_postgresql_database_that_is_not_there_says_so(tmp_path, aws_env, name):
    url, problem = unusable_databases(tmp_path)["no such database"]
    code, output = refused_at_start(["-m", "gateway.cli", *COMMANDS[name]], {"MAILGW_DATABASE_URL": url})

    assert code == 1
    database_problem_line(output, url, problem)


# --- mailgw run and Ctrl-C ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_stops_mailgw_run_with_exit_code_0(tmp_path):
    """A terminal's Ctrl-C signals every process of the foreground group: `mailgw run` exited 241 (a child's -15)."""
    grpc_address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = gateway_env(tmp_path, "run", grpc_address, MAILGW_HTTP_ADDR=http_address, MAILGW_TRANSPORT="outbox")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run"],
        env=os.environ | env | {"MAILGW_OUTBOX_DIR": str(tmp_path / "outbox")},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a foreground job
    )
    try:
        healthy(grpc_address, process)
        wait_until(lambda: urlopen(f"http://{http_address}/healthz", timeout=1).status == 200, process)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output
    assert "Traceback" not in output
    # The gateway was asked once (it heard the terminal's SIGINT, then the SIGTERM forwarded to it).
    [drain] = [line for line in output.splitlines() if "draining in-flight RPCs" in line]
    assert drain.endswith("gateway.process.gateway signal 15: draining in-flight RPCs and sends")


def test_without_a_public_base_url_links_follow_the_sidecars_address():
    assert Settings.from_env({}).public_base_url == "http://127.0.0.1:8080"
    assert Settings.from_env({"MAILGW_HTTP_ADDR": "127.0.0.1:18080"}).public_base_url == "http://127.0.0.1:18080"
    assert Settings.from_env({"MAILGW_HTTP_ADDR": "[::1]:8081"}).public_base_url == "http://[::1]:8081"
    chosen = {"MAILGW_HTTP_ADDR": "127.0.0.1:18080", "MAILGW_PUBLIC_BASE_URL": "https://mail.example.com/"}
    assert Settings.from_env(chosen).public_base_url == "https://mail.example.com"
