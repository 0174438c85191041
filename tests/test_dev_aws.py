"""`mailgw dev aws` as a user runs it, with real processes and real moto: the README's local walk-through (bootstrap
twice, the sidecar on the printed settings, a bounce published with `mailgw dev bounce`), a clean stop on Ctrl-C,
a taken port, and bootstrap against plain moto, which lacks SES v2 operations, naming the missing one in one line."""

import os
import signal
import socket

import boto3
import pytest

from gateway.aws.bootstrap import CLIENT_CONFIG, LastAnswer, aws_errors
from gateway.aws.outcome import BootstrapError
from gateway.store.models import database, open_database
from support.processes import drain, free_port, mailgw, start, wait_until
from tests.sqs_feedback import applied

CONFIGURATION_SET = "my-leads-now-config"  # bootstrap's default: the walk-through names none
TOPIC = f"{CONFIGURATION_SET}-feedback"
KINDS = [
    "configuration set",
    "SNS topic",
    "event destination",
    "dead-letter queue",
    "queue",
    "queue policy",
    "SQS subscription",
]


class DevAws:
    """`mailgw dev aws --port N` as a child process, with the exports it printed."""

    def __init__(self, port: int):
        self.port = port
        self.process = start(["-m", "gateway.cli", "dev", "aws", "--port", str(port)], {})
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, self.process)
        self.banner: list[str] = []
        while len(exports := [line for line in self.banner if line.startswith("export ")]) < 5:
            line = self.process.stdout.readline()
            assert line, f"mailgw dev aws ended:\n{''.join(self.banner)}"
            self.banner.append(line)
        self.exports = dict(line.removeprefix("export ").strip().partition("=")[::2] for line in exports)
        self.output = drain(self.process)  # what it prints later (a traceback, say) is kept

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=15)
        return code, "".join(self.banner) + "".join(self.output)


@pytest.fixture
def dev_aws(aws_env):
    """A fresh `mailgw dev aws` (aws_env: none of the developer's AWS_* settings reach it or the commands)."""
    server = DevAws(free_port())
    yield server
    server.stop()


def run_mailgw(*args: str, env: dict[str, str]):
    return mailgw(*args, environ=env, timeout=60)


def settings_printed(stdout: str) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in stdout.splitlines() if line.startswith("MAILGW_"))


def report(state: str) -> list[str]:
    """Bootstrap's line for each resource of the walk-through, all in `state`."""
    names = [CONFIGURATION_SET, TOPIC, f"{CONFIGURATION_SET}/feedback", f"{TOPIC}-dlq", TOPIC, TOPIC, TOPIC]
    return [f"{kind + ':':<20} {name}: {state}" for kind, name in zip(KINDS, names, strict=True)]


@pytest.fixture
def sqlite_url(tmp_path):
    """The walk-through's database: SQLite, as `mailgw feedback` uses it by default."""
    url = f"sqlite:///{tmp_path}/mailgw.db"
    open_database(url)  # the test's own reads; the sidecar creates the schema as well
    yield url
    database.close_all()


@pytest.mark.slow
def test_the_walk_through_bootstraps_a_local_aws_and_a_published_bounce_reaches_the_sidecar(dev_aws, sqlite_url):
    url = f"http://127.0.0.1:{dev_aws.port}"
    assert dev_aws.exports == {
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_SNS": url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    shell = os.environ | dev_aws.exports  # the terminal where the user pasted the exports

    early = run_mailgw("dev", "bounce", "ada@example.org", env=shell)
    assert (early.returncode, early.stdout) == (1, "")
    assert early.stderr == f"mailgw: no SNS topic named {TOPIC} at {url}: run `mailgw aws bootstrap` first\n"

    first = run_mailgw("aws", "bootstrap", env=shell)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[: len(KINDS)] == report("created")
    printed = settings_printed(first.stdout)
    assert printed == {
        "MAILGW_SES_CONFIGURATION_SET": CONFIGURATION_SET,
        "MAILGW_SNS_TOPIC_ARNS": f"arn:aws:sns:us-east-1:123456789012:{TOPIC}",
        "MAILGW_SQS_QUEUE_URL": f"{url}/123456789012/{TOPIC}",  # through the one endpoint, not moto's own port
    }

    second = run_mailgw("aws", "bootstrap", env=shell)
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout.splitlines()[: len(KINDS)] == report("ok")
    assert settings_printed(second.stdout) == printed

    sidecar_env = dev_aws.exports | {
        "MAILGW_SNS_TOPIC_ARNS": printed["MAILGW_SNS_TOPIC_ARNS"],
        "MAILGW_SQS_QUEUE_URL": printed["MAILGW_SQS_QUEUE_URL"],
        "MAILGW_DATABASE_URL": sqlite_url,
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "MAILGW_SQS_WAIT_SECONDS": "1",  # so that it stops at once at the end
    }
    sidecar = start(["-m", "gateway.cli", "feedback"], sidecar_env)  # `mailgw feedback`: python -m feedback_http
    sidecar_output = drain(sidecar)
    try:
        wait_until(lambda: any("SQS intake: polling" in line for line in sidecar_output) or sidecar.poll() is not None)
        assert sidecar.poll() is None, "".join(sidecar_output)

        published = run_mailgw("dev", "bounce", "ada@example.org", env=shell)
        assert (published.returncode, published.stderr) == (0, "")
        assert published.stdout == f"published a bounce of ada@example.org to {printed['MAILGW_SNS_TOPIC_ARNS']}\n"

        wait_until(lambda: applied().statuses.get("ada@example.org") == "bounced", timeout=30)
        # What the user sees in the sidecar's terminal: the change, the address masked.
        wait_until(
            lambda: any("(a***@example.org): active -> bounced by ses:Bounce" in line for line in sidecar_output)
        )
    finally:
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=30) == 0, "".join(sidecar_output)
    assert "Traceback" not in "".join(sidecar_output)


@pytest.mark.slow
def test_ctrl_c_stops_it_with_exit_code_0_and_no_traceback(dev_aws):
    sqs = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=dev_aws.exports["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sqs.create_queue(QueueName="in-use")  # a client's connection to it stays open, as a sidecar's would

    code, output = dev_aws.stop(signal.SIGINT)
    sqs.close()

    assert code == 0, output
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_taken_port_is_one_line_and_exit_code_1(aws_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        done = run_mailgw("dev", "aws", "--port", str(port), env=dict(os.environ))

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"mailgw: --port=127.0.0.1:{port}: the address is in use by another process\n"


@pytest.mark.slow
def test_without_moto_it_says_what_to_install_and_exits_2(aws_env, tmp_path):
    (tmp_path / "moto").mkdir()  # a Python where moto is not installed: importing it fails as a missing module does
    (tmp_path / "moto" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'moto'\")\n")

    done = run_mailgw("dev", "aws", "--port", str(free_port()), env=os.environ | {"PYTHONPATH": str(tmp_path)})

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "mailgw: `mailgw dev aws` needs moto's server: pip install -e '.[dev]'\n"


@pytest.mark.slow
def test_a_bounce_is_never_published_to_a_real_aws(aws_env):
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}

    done = run_mailgw("dev", "bounce", "ada@example.org", env=env)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "mailgw: mailgw dev bounce publishes to a local AWS only, not to https://sns.us-east-1.amazonaws.com: "
        "export the settings that `mailgw dev aws` prints (AWS_ENDPOINT_URL)\n"
    )


# --- An endpoint that lacks an operation -------------------------------------------------------------------------


@pytest.mark.slow
def test_bootstrap_against_plain_moto_names_the_missing_sesv2_operation_in_one_line(moto):
    # moto has CreateConfigurationSet but none of the event-destination calls: it answers them with an HTML 404.
    env = os.environ | {"AWS_ENDPOINT_URL": moto.url}

    done = run_mailgw("aws", "bootstrap", env=env)

    assert done.returncode == 1
    assert done.stderr == (
        f"mailgw: the AWS endpoint at {moto.url} does not implement sesv2 GetConfigurationSetEventDestinations "
        "(HTTP 404)\n"
    )
    assert "<html" not in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stderr


def test_an_answer_that_does_not_parse_names_the_call_too(moto):
    # moto answers an SNS action it has not implemented with an HTML 500 page, which botocore cannot parse at all.
    last = LastAnswer()

    with pytest.raises(BootstrapError) as refused, aws_errors(last):
        sns = last.watch("sns", boto3.client("sns", region_name="us-east-1", config=CLIENT_CONFIG))
        sns.list_origination_numbers()

    assert str(refused.value) == (
        f"the AWS endpoint at {moto.url} answered sns ListOriginationNumbers with HTTP 500 and no AWS answer in it"
    )
