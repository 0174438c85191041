"""CI's `buf breaking` step (.ci/buf-breaking) in a git repository of its own: a wire-incompatible change to protos/
fails it, a compatible one passes, and a shallow clone or a first commit is handled."""

import shutil
import subprocess

import pytest

from support.processes import ROOT

PROTO = "protos/mailgateway/v1/mail_gateway.proto"


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def check(repo) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", ".ci/buf-breaking"], cwd=repo, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path):
    """A repository whose only commit holds this checkout's API, buf configuration and the check."""
    repo = tmp_path / "repo"
    for path in ("protos", "third_party", ".ci"):
        shutil.copytree(ROOT / path, repo / path)
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "the API as it is")
    return repo


def commit(repo, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=ci", "-c", "user.email=ci@example.org", "commit", "-q", "-m", message)


def edit(repo, old: str, new: str) -> None:
    proto = repo / PROTO
    text = proto.read_text()
    assert old in text
    proto.write_text(text.replace(old, new))


@pytest.mark.slow
def test_a_changed_field_type_fails_the_check_and_names_the_field(repo):
    edit(repo, "  string reply_to = 6;", "  int32 reply_to = 6;")
    commit(repo, "reply_to becomes a number")

    done = check(repo)

    assert done.returncode != 0
    assert f"{PROTO}:" in done.stdout
    assert 'Field "6" with name "reply_to" on message "SendEmailRequest" changed type from "string" to "int32"' in (
        done.stdout
    )


@pytest.mark.slow
def test_a_removed_rpc_fails_the_check(repo):
    edit(repo, "  rpc GetMessage(GetMessageRequest) returns (GetMessageResponse);\n", "")
    commit(repo, "GetMessage goes")

    done = check(repo)

    assert done.returncode != 0
    assert 'Previously present RPC "GetMessage" on service "MailGatewayService" was deleted.' in done.stdout


@pytest.mark.slow
def test_an_added_field_passes_in_a_shallow_clone_too(repo, tmp_path):
    last = "  string tenant = 10;\n"
    edit(repo, last, last + "  // A new field.\n  bool urgent = 99;\n")
    commit(repo, "a new field")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))

    done = check(clone)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("buf breaking: protos/ is wire-compatible with HEAD~1 (")


@pytest.mark.slow
def test_a_first_commit_has_nothing_to_compare_with(repo):
    done = check(repo)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "buf breaking: there is no HEAD~1 to compare with: nothing to check\n"
