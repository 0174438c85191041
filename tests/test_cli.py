"""The `mailgw` command as a user types it: help for everything, --addr, errors that name the flags typed."""

import argparse

import pytest

from gateway.cli import parser
from support.processes import mailgw, wait_until


@pytest.fixture
def address(served):
    """The address of a gateway running in this process, its SES transport pointed at the stand-in."""
    return f"127.0.0.1:{served.port}"


def lines(text: str) -> list[str]:
    found = text.splitlines()
    assert all(line == line.rstrip() for line in found), f"trailing spaces in {found}"
    return found


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_command_and_option_has_a_help_line(capsys):
    [commands] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert all(choice.help for choice in commands._choices_actions)
    for name, sub in subcommands().items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"mailgw {name} {action.option_strings or action.dest} has no help"
    for args in ([], *([name] for name in subcommands())):
        with pytest.raises(SystemExit) as done:
            parser().parse_args([*args, "--help"])
        assert done.value.code == 0
        lines(capsys.readouterr().out)


@pytest.mark.slow
def test_send_calls_the_gateway_named_by_addr_and_prints_the_unsubscribe_link(address, ses):
    done = mailgw(
        "send", "--addr", address, "--to", "Dev@Example.org", "--subject", "Hi", "--text", "Hello",
        MAILGW_PUBLIC_BASE_URL="https://mail.example.com",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    accepted, link = lines(done.stdout)
    assert accepted.startswith("accepted: message_id=msg_")
    message_id, contact_id = (part.split("=")[1] for part in accepted.removeprefix("accepted: ").split())
    assert link == f"unsubscribe link: https://mail.example.com/unsubscribe/{contact_id}"
    sent = wait_until(lambda: ses.accepted)  # dispatched from the queue
    assert link.removeprefix("unsubscribe link: ") in sent[0].mime.get_content()  # the link in the message

    shown = mailgw("message", "--addr", address, message_id)
    assert shown.returncode == 0, shown.stderr
    first, *_, last = lines(shown.stdout)
    assert first == f"{message_id}: sent, SES id {sent[0].message_id}, 1 attempt"
    assert last.startswith(f"  contact_id={contact_id} created_at=")


@pytest.mark.slow
def test_addr_defaults_to_mailgw_grpc_addr(address):
    done = mailgw("status", "nobody@example.org", MAILGW_GRPC_ADDR=address)

    assert done.returncode == 1
    assert lines(done.stderr) == [
        "error: NOT_FOUND: no contact has that address or id",
        "  reason=CONTACT_NOT_FOUND",
    ]


@pytest.mark.slow
def test_errors_name_the_flags_the_user_typed(address, ses):
    done = mailgw(
        "send", "--addr", address, "--to", "not-an-address", "--subject", " ", "--text", "x",
        "--tag", "bad name=x", "--request-id", "r" * 200,
    )  # fmt: skip

    assert done.returncode == 1
    output = lines(done.stderr)
    assert output[0] == "error: INVALID_ARGUMENT: the request is invalid"
    flags = sorted(line.split(":")[0].strip() for line in output[1:-1])
    assert flags == ["--request-id", "--subject", "--tag bad name=…", "--to"]
    assert output[-1] == "  reason=INVALID_REQUEST"
    assert not any(proto in done.stderr for proto in ("request_id", "tags[", " to:", " subject:"))
    assert ses.sent == []


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["campaign", "=value"])
def test_a_tag_without_a_name_and_equals_sign_is_refused_before_any_call(address, ses, tag):
    done = mailgw("send", "--addr", address, "--to", "a@example.org", "--subject", "Hi", "--text", "x", "--tag", tag)

    assert done.returncode == 2
    assert f"argument --tag: {tag!r} is not NAME=VALUE" in done.stderr
    assert ses.sent == []
