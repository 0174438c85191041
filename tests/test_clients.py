"""Clients in other languages: the Node and Go examples against a real gateway (a send followed with GetMessage,
and the google.rpc details of each refusal as those languages read them) and on bad flags, the README's offline Go
command as written, and the committed Node and Go code is what `make clients` generates from protos/."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import Settings
from gateway.process.gateway import create_server
from gateway.store.contacts import change_status
from gateway.store.models import ContactStatus, database
from support.processes import ROOT
from tests.rpc import settled
from tests.test_faults import postgres_proxy  # noqa: F401 (a fixture: PostgreSQL behind a proxy a test can cut)

# One worker builds the Go example once and runs the Node and buf tools (their caches are the machine's).
pytestmark = pytest.mark.xdist_group("clients")

BUF = ["npx", "--yes", "@bufbuild/buf@1.75.0"]
GENERATED = {"clients/node/gen": "*_pb.*", "clients/go/mailgateway": "*.pb.go"}
GO_EXAMPLE = ROOT / "examples" / "go" / "run.sh"
README_ADDRESS = "127.0.0.1:50051"
# What a crash looks like in either language: Node's "TypeError: …" and "    at …" frames, Go's panic and goroutines.
STACK_TRACE = re.compile(r"Error:|^\s+at |goroutine|panic", re.MULTILINE)


@pytest.fixture(scope="module")
def go_example() -> list[str]:
    """examples/go/run.sh, the README's offline command: its first run builds the example over Debian's Go libraries
    (minutes on a cold build cache), so later runs within a test's timeout only link it."""
    built = subprocess.run([GO_EXAMPLE, "-help"], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    return [GO_EXAMPLE]


@pytest.fixture(params=["node", "go"])
def example(request):
    """Runs one language's example with the given arguments."""
    if request.param == "node":
        require_node_packages()
        command = ["node", ROOT / "examples" / "node" / "send.js"]
    else:
        command = request.getfixturevalue("go_example")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)

    return run


def require_node_packages() -> None:
    if not (ROOT / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("the Node packages are not installed: run `npm ci` in the checkout (make test does)")


def send(example, address: str, to: str) -> subprocess.CompletedProcess:
    return example("--addr", address, "--to", to, "--subject", "Hello from another language", "--text", "First mail")


@pytest.fixture
def address(served):
    return f"127.0.0.1:{served.port}"


@pytest.mark.slow
def test_example_sends_then_follows_the_message_until_ses_took_it(example, address, ses):
    done = send(example, address, "Ada <ada@example.org>")

    assert done.returncode == 0, done.stderr
    accepted, followed = done.stdout.splitlines()
    message_id, contact_id = (part.split("=")[1] for part in accepted.removeprefix("accepted: ").split())
    assert message_id.startswith("msg_") and len(contact_id) == 22
    [received] = ses.accepted
    assert received.tags == {"message_id": message_id, "contact_id": contact_id, "priority": "transactional"}
    assert followed == f"message: state=SENT ses_message_id={received.message_id} attempts=1"


@pytest.mark.slow
def test_example_attaches_files_that_reach_ses_intact(example, address, ses, tmp_path):
    invoice, notes = tmp_path / "Rechnung März.pdf", tmp_path / "notes.txt"
    invoice.write_bytes(b"%PDF-1.7\n" + bytes(range(256)))
    notes.write_bytes(b"plain text")

    done = example(
        *("--addr", address, "--to", "ada@example.org", "--subject", "Invoice", "--text", "Attached"),
        *("--attach", f"{invoice}:application/pdf", "--attach", str(notes)),
    )

    assert done.returncode == 0, done.stderr
    files = ses.accepted[0].mime.get_payload()[1:]
    assert [(f.get_filename(), f.get_content_type(), f.get_payload(decode=True)) for f in files] == [
        ("Rechnung März.pdf", "application/pdf", invoice.read_bytes()),
        ("notes.txt", "application/octet-stream", b"plain text"),
    ]


@pytest.mark.slow
def test_example_reads_the_error_info_of_a_suppressed_recipient(example, address, ses):
    with database.connection_context():
        contact = change_status(ContactStatus.UNSUBSCRIBED, source="test", email="ada@example.org").contact

    done = send(example, address, "ada@example.org")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: FAILED_PRECONDITION: the recipient is unsubscribed: nothing was sent",
        f"  ErrorInfo: reason=RECIPIENT_SUPPRESSED domain=mailgateway contactId={contact.contact_id} "
        "status=unsubscribed",
    ]
    assert ses.sent == []


@pytest.mark.slow
def test_example_reads_the_field_violations_of_a_bad_address(example, address, ses):
    done = send(example, address, "not-an-address")

    assert done.returncode == 1
    first, info, *violations = done.stderr.splitlines()
    assert first.startswith("error: INVALID_ARGUMENT: ")
    assert info == "  ErrorInfo: reason=INVALID_REQUEST domain=mailgateway"
    assert len(violations) == 1 and violations[0].startswith("  BadRequest: to: "), violations
    assert ses.sent == []


@pytest.mark.slow
def test_example_reads_the_retry_info_while_the_database_is_down(example, postgres_proxy, ses):  # noqa: F811
    proxy, url = postgres_proxy
    gateway = create_server(Settings(database_url=url, grpc_addr="127.0.0.1:0", default_from="noreply@example.com"))
    gateway.start()
    try:
        proxy.cut()
        done = send(example, f"127.0.0.1:{gateway.port}", "ada@example.org")
    finally:
        proxy.restore()
        gateway.stop(None)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: UNAVAILABLE: the database is unavailable; retry later",
        "  ErrorInfo: reason=DATABASE_UNAVAILABLE domain=mailgateway",
        "  RetryInfo: retry after 1s",
    ]


@pytest.mark.slow
def test_example_help_lists_the_flags_and_the_environment(example):
    done = example("--help")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("Usage: ")
    flags = ["-addr", "-to", "-subject", "-text", "-html", "-request-id"]
    for named in [*flags, "MAILGW_GRPC_ADDR", "MAILGW_CLIENT_TOKEN"]:
        assert named in done.stdout
    assert not STACK_TRACE.search(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--bogus", "--to", "ada@example.org", "--subject", "Hello"), "-bogus"),
        (("--to", "ada@example.org", "--text", "First mail"), "-subject"),
        (("--subject", "Hello", "--to"), "-to"),
    ],
    ids=["unknown flag", "no subject", "no value"],
)
def test_example_answers_a_bad_flag_with_one_line_and_exit_code_2(example, args, named):
    done = example(*args)

    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert named in line and line.endswith("-help lists the flags"), line
    assert not STACK_TRACE.search(line)


def readme_go_command() -> list[str]:
    """The one line of README.md's shell blocks that runs examples/go/run.sh to send (not `run.sh watch`), split as
    the shell splits it."""
    blocks = re.findall(r"^```sh\n(.*?)^```", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("examples/go/run.sh -")]
    [line] = lines
    return shlex.split(line)


@pytest.fixture(params=["node", "go"])
def watch_example(request):
    """Runs one language's watch example (WatchEvents, resuming from a stored cursor)."""
    if request.param == "node":
        require_node_packages()
        command = ["node", ROOT / "examples" / "node" / "watch.js"]
    else:
        command = [*request.getfixturevalue("go_example"), "watch"]
    return lambda *args: subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.slow
def test_watch_example_resumes_right_after_the_cursor_it_stored(watch_example, address, served, ses, tmp_path):
    cursor = tmp_path / "events.cursor"
    watch = lambda: watch_example("--addr", address, "--cursor-file", str(cursor), "--until-caught-up")  # noqa: E731
    stub = pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(address))

    def sent(to: str) -> str:
        message_id = stub.SendEmail(pb.SendEmailRequest(to=to, subject="Hi", text_body="Hello")).message_id
        settled(stub, message_id)
        return message_id

    first = watch()  # no cursor yet: from now, so nothing, and the cursor of now stored
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    ada = sent("ada@example.org")
    second = watch()
    grace = sent("grace@example.org")
    third = watch()

    assert second.stdout.splitlines() == [f"QUEUED message={ada}", f"SENT message={ada} QUEUED->SENT"]
    assert third.stdout.splitlines() == [f"QUEUED message={grace}", f"SENT message={grace} QUEUED->SENT"]
    assert not STACK_TRACE.search(second.stderr + third.stderr)


@pytest.mark.slow
def test_the_readmes_offline_go_command_builds_and_sends_without_a_module_proxy(go_example, address, ses):
    command = readme_go_command()
    assert README_ADDRESS in command

    done = subprocess.run(
        [address if part == README_ADDRESS else part for part in command],
        env=os.environ | {"GOPROXY": "off"}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"accepted: message_id=msg_\S+ contact_id=\S+", done.stdout.splitlines()[0])
    assert len(ses.accepted) == 1


def test_reflection_serves_the_error_detail_types_that_grpcurl_prints(served):
    """grpcurl learns every type from the server's reflection, the types in an error's details too."""
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        for name in ("google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo"):
            assert pool.FindMessageTypeByName(name).full_name == name


@pytest.mark.slow
def test_committed_client_code_is_what_make_clients_generates(tmp_path):
    require_node_packages()
    if shutil.which("protoc-gen-go-grpc") is None:
        pytest.fail("protoc-gen-go and protoc-gen-go-grpc are not installed: see .ci/run for the Debian packages")
    subprocess.run([*BUF, "generate", "--output", tmp_path], cwd=ROOT, check=True, timeout=300)

    for folder, pattern in GENERATED.items():
        fresh = files(tmp_path / folder, pattern)
        committed = files(ROOT / folder, pattern)
        assert fresh.keys() == committed.keys()
        stale = [name for name in fresh if fresh[name] != committed[name]]
        assert not stale, f"run `make clients`: {stale} differ from protos/"


def files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob(pattern)}
