"""`mailgw contacts …` as an operator runs it: a real subprocess against a real gateway, CSV files as spreadsheets
write and read them, progress on a terminal only."""

import argparse
import csv
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest

from gateway.cli import parser
from gateway.store.contacts import change_status
from gateway.store.models import Contact, ContactStatus, SesListIntent, StatusChange, database
from support.processes import ROOT, mailgw
from tests.admin_rpc import BILLING_TOKEN, OPS_TOKEN, start_admin_gateway

BOM = "\ufeff".encode()
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ACTIVE, BOUNCED = ContactStatus.ACTIVE, ContactStatus.BOUNCED
DELETE = "DeleteSuppressedDestination"


@pytest.fixture
def address(make_gateway) -> str:
    return f"127.0.0.1:{start_admin_gateway(make_gateway).port}"


def run_mailgw(*args: str, token: str = OPS_TOKEN):
    return mailgw(*args, MAILGW_CLIENT_TOKEN=token)


def mailgw_on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess, str]:
    """mailgw with its stderr on a pseudo-terminal 100 columns wide (as an operator's shell has it); the run (stdout
    captured) and what the terminal showed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    shown = []

    def read():
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=os.environ | {"MAILGW_CLIENT_TOKEN": OPS_TOKEN},
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(terminal)
        reader.join(10)
        os.close(controller)
    return done, b"".join(shown).decode(errors="replace")


def contact(email: str) -> Contact | None:
    with database.connection_context():
        return Contact.get_or_none(Contact.email == email)


# A file as a spreadsheet set to French or German saves "CSV UTF-8": byte-order mark, semicolons, CRLF, quotes
# doubled inside quoted cells; one formula-looking address and reason, a non-ASCII reason, two bad rows.
SPREADSHEET_FILE = (
    "Email;Status;Reason\r\n"
    'ada@example.org;bounced;"550 5.1.1 user unknown; the server said ""no such user"""\r\n'
    '=cmd@example.org;complained;=HYPERLINK("http://evil.example","click")\r\n'
    "bob@example.org;active;\r\n"
    "emile@exämple.org;unsubscribed;Désabonné par courrier\r\n"
    "not-an-address;bounced;typo\r\n"
    "carol@example.org;bouncd;typo\r\n"
    ";;\r\n"
)


@pytest.mark.slow
def test_import_then_export_round_trip_through_spreadsheet_files(address, tmp_path):
    source, report, exported = tmp_path / "old-system.csv", tmp_path / "report.csv", tmp_path / "contacts.csv"
    source.write_bytes(BOM + SPREADSHEET_FILE.encode())

    first = run_mailgw("contacts", "import", "--addr", address, str(source), "--report", str(report))

    assert first.returncode == 1  # rows were refused
    assert first.stdout == f"{source}: 4 created, 0 changed, 0 unchanged, 2 refused\n"
    assert first.stderr.splitlines() == [
        "refused:",
        "  line 6: not-an-address: not a mailable address: An email address must have an @-sign.",
        "  line 7: carol@example.org: status must be one of active, unsubscribed, bounced, complained",
    ]
    with open(report, encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["line", "email", "status", "outcome", "detail"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
        ("2", "ada@example.org", "created"),
        ("3", "'=cmd@example.org", "created"),  # escaped here too: the report is a spreadsheet as well
        ("4", "bob@example.org", "created"),
        ("5", "emile@exämple.org", "created"),
        ("6", "not-an-address", "refused"),
        ("7", "carol@example.org", "refused"),
    ]
    assert contact("=cmd@example.org").reason == '=HYPERLINK("http://evil.example","click")'
    assert contact("ada@example.org").reason == '550 5.1.1 user unknown; the server said "no such user"'
    with database.connection_context():
        assert {c.actor for c in StatusChange.select()} == {"ops"}

    again = run_mailgw("contacts", "import", "--addr", address, str(source))
    assert again.stdout == f"{source}: 0 created, 0 changed, 4 unchanged, 2 refused\n"

    export = run_mailgw("contacts", "export", "--addr", address, "-o", str(exported))

    assert export.returncode == 0, export.stderr
    assert (export.stdout, export.stderr) == ("", "")
    raw = exported.read_bytes()
    assert raw.startswith(BOM + b"email,status,reason,updated_at,created_at\r\n")
    assert raw.count(b"\r\n") == 5 and b"\n" not in raw.replace(b"\r\n", b"")
    assert list(tmp_path.glob("*.part")) == []
    with open(exported, encoding="utf-8-sig", newline="") as file:
        cells = {row["email"]: row for row in csv.DictReader(file)}
    assert set(cells) == {"ada@example.org", "'=cmd@example.org", "bob@example.org", "emile@xn--exmple-cua.org"}
    assert cells["'=cmd@example.org"]["reason"] == '\'=HYPERLINK("http://evil.example","click")'
    assert cells["ada@example.org"]["reason"] == '550 5.1.1 user unknown; the server said "no such user"'
    assert cells["emile@xn--exmple-cua.org"]["reason"] == "Désabonné par courrier"
    assert [cells[e]["status"] for e in sorted(cells)] == ["complained", "bounced", "active", "unsubscribed"]
    assert all(
        ISO_TIME.fullmatch(row["updated_at"]) and ISO_TIME.fullmatch(row["created_at"]) for row in cells.values()
    )

    back = run_mailgw("contacts", "import", "--addr", address, str(exported))  # the export reads back as it was
    assert (back.returncode, back.stdout) == (0, f"{exported}: 0 created, 0 changed, 4 unchanged, 0 refused\n")

    to_stdout = run_mailgw("contacts", "export", "--addr", address, "--status", "complained", "--status", "bounced")
    assert to_stdout.stdout.splitlines()[0] == "email,status,reason,updated_at,created_at"  # no byte-order mark
    assert [row["email"] for row in csv.DictReader(io.StringIO(to_stdout.stdout))] == [
        "ada@example.org",
        "'=cmd@example.org",
    ]


@pytest.mark.slow
def test_contacts_commands_print_what_an_operator_needs(address):
    suppress = run_mailgw("contacts", "suppress", "--addr", address, "Ada@Example.org", "--status", "bounced",
                      "--reason", "bounced in the old system")  # fmt: skip
    assert (suppress.returncode, suppress.stdout) == (0, "ada@example.org: active -> bounced\n"), suppress.stderr
    reactivate = ["contacts", "reactivate", "--addr", address, "ada@example.org", "--reason", "mailbox fixed"]
    assert run_mailgw(*reactivate).stdout.splitlines() == [
        "ada@example.org: bounced -> active",
        "  SES suppression list: was not on it",
    ]
    assert run_mailgw(*reactivate).stdout.splitlines()[0] == "ada@example.org: unchanged, already active"
    run_mailgw(
        "contacts", "suppress", "--addr", address, "bob@example.org", "--status", "complained", "--reason", "spam"
    )

    history = run_mailgw("contacts", "history", "--addr", address, "ada@example.org")
    header, newest, oldest = history.stdout.splitlines()
    assert re.fullmatch(r"ada@example.org: active \(contact_id=[\w-]{22}\)", header)
    assert re.fullmatch(r"  \S+Z  bounced -> active  admin by ops: mailbox fixed", newest)
    assert re.fullmatch(r"  \S+Z  active -> bounced  admin by ops: bounced in the old system", oldest)

    listed = run_mailgw("contacts", "list", "--addr", address, "--limit", "1")
    [line] = listed.stdout.splitlines()
    assert re.fullmatch(r"\S+Z  active        ada@example.org  mailbox fixed", line)
    [more] = listed.stderr.splitlines()
    token = more.removeprefix("more: continue with --page-token ")
    rest = run_mailgw("contacts", "list", "--addr", address, "--page-token", token)
    assert [line.split()[1:3] for line in rest.stdout.splitlines()] == [["complained", "bob@example.org"]]
    only = run_mailgw("contacts", "list", "--addr", address, "--status", "complained", "--since", "2020-01-01")
    assert [line.split()[2] for line in only.stdout.splitlines()] == ["bob@example.org"]

    refused = run_mailgw("contacts", "list", "--addr", address, token=BILLING_TOKEN)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "error: PERMISSION_DENIED: only the callers in MAILGW_ADMIN_CALLERS may use the admin service",
        "  reason=ADMIN_CALLER_REQUIRED caller=billing",
    ]
    no_reason = run_mailgw("contacts", "reactivate", "--addr", address, "bob@example.org", "--reason", " ")
    assert no_reason.returncode == 1
    assert no_reason.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: the request is invalid",
        "  --reason: required: say why (it is kept in the contact's history)",
        "  reason=INVALID_REQUEST",
    ]
    assert run_mailgw("contacts", "list", "--addr", address, "--since", "yesterday").returncode == 2
    assert run_mailgw("contacts", "suppress", "--addr", address, "x@example.org", "--status", "bounced").returncode == 2
    assert contact("x@example.org") is None


def last_change(email: str) -> tuple:
    with database.connection_context():
        row = StatusChange.select().join(Contact).where(Contact.email == email).order_by(StatusChange.id.desc()).get()
        return (row.from_status, row.to_status, row.source, row.actor, row.reason)


def suppressed(email: str, status: ContactStatus = ContactStatus.BOUNCED) -> None:
    with database.connection_context():
        change_status(status, source="ses:Bounce", reason="Permanent/General", email=email)


@pytest.mark.slow
def test_mailgw_contacts_reactivate_takes_the_address_off_ses_list(make_gateway, ses):
    # The gateway's own sync is off: what SES's list sees here is the reactivation's doing alone.
    address = f"127.0.0.1:{start_admin_gateway(make_gateway, ses_suppression_sync_seconds=0).port}"
    suppressed("ada@example.org")
    ses.suppression.add("ada@example.org")

    done = run_mailgw("contacts", "reactivate", "--addr", address, "Ada@Example.org", "--reason", "mailbox fixed")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ada@example.org: bounced -> active", "  SES suppression list: removed"]
    assert last_change("ada@example.org") == (BOUNCED, ACTIVE, "admin", "ops", "mailbox fixed")
    assert ses.suppression.called(DELETE) == [{"EmailAddress": "ada@example.org"}]
    assert ses.suppression.entries == {}

    again = run_mailgw("contacts", "reactivate", "--addr", address, "ada@example.org", "--reason", "sure")
    assert (again.returncode, again.stdout.splitlines()) == (
        0, ["ada@example.org: unchanged, already active", "  SES suppression list: was not on it"]
    )  # fmt: skip

    suppressed("slow@example.org")
    ses.suppression.add("slow@example.org")
    ses.suppression.fail(DELETE, 429, "TooManyRequestsException", "Too many requests")
    waiting = run_mailgw("contacts", "reactivate", "--addr", address, "slow@example.org", "--reason", "asked us to")
    assert (waiting.returncode, waiting.stdout.splitlines()) == (0, [
        "slow@example.org: bounced -> active",
        "  SES suppression list: not removed yet (SES_THROTTLED); the gateway's sync tries again",
    ])  # fmt: skip
    assert "slow@example.org" in ses.suppression.entries  # still listed: the sync's to remove

    suppressed("odd@example.org", ContactStatus.COMPLAINED)
    ses.suppression.fail(DELETE, 400, "BadRequestException", "Invalid email address")
    refused = run_mailgw("contacts", "reactivate", "--addr", address, "odd@example.org", "--reason", "test account")
    assert (refused.returncode, refused.stdout.splitlines()) == (1, [
        "odd@example.org: complained -> active",
        "  SES suppression list: SES refused to remove it (SES_BAD_REQUEST)",
    ])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("gateway_settings", [{"transport": "outbox"}, {"dispatch_workers": 0}])
def test_mailgw_contacts_reactivate_through_a_gateway_that_does_not_call_ses_leaves_the_removal_to_the_sync(
    make_gateway, ses, gateway_settings
):
    address = f"127.0.0.1:{start_admin_gateway(make_gateway, **gateway_settings).port}"
    suppressed("ada@example.org")

    done = run_mailgw("contacts", "reactivate", "--addr", address, "ada@example.org", "--reason", "mailbox fixed")

    assert (done.returncode, done.stdout.splitlines()) == (0, [
        "ada@example.org: bounced -> active",
        "  SES suppression list: not asked (this gateway does not call SES: outbox transport, or accepting only); "
        "removed by the sync of a gateway that sends through SES",
    ])  # fmt: skip
    assert ses.suppression.calls == []
    with database.connection_context():
        intent = SesListIntent.get()
    assert (intent.action, intent.state) == ("delete", "pending")  # recorded for a gateway that syncs


@pytest.mark.slow
def test_mailgw_contacts_reactivate_refuses_unknown_contacts_and_missing_reasons(address):
    unknown = run_mailgw("contacts", "reactivate", "--addr", address, "nobody@example.org", "--reason", "x")
    no_reason = run_mailgw("contacts", "reactivate", "--addr", address, "nobody@example.org")

    assert (unknown.returncode, unknown.stderr.splitlines()) == (1, [
        "error: NOT_FOUND: no contact has that address or id",
        "  reason=CONTACT_NOT_FOUND",
    ])  # fmt: skip
    assert no_reason.returncode == 2 and "the following arguments are required: --reason" in no_reason.stderr
    assert contact("nobody@example.org") is None


@pytest.mark.slow
def test_progress_shows_on_a_terminal_and_nowhere_else(address, tmp_path):
    rows = "".join(f"user{i}@example.org,bounced,old system\r\n" for i in range(3000))
    source, exported = tmp_path / "many.csv", tmp_path / "many-out.csv"
    source.write_text("email,status,reason\r\n" + rows, encoding="utf-8")

    imported, terminal = mailgw_on_a_terminal("contacts", "import", "--addr", address, str(source))
    assert imported.stdout == f"{source}: 3,000 created, 0 changed, 0 unchanged, 0 refused\n"
    assert "100%" in terminal and "3000/3000" in terminal and "rows" in terminal

    quiet = run_mailgw("contacts", "import", "--addr", address, str(source))  # stderr a pipe: no progress
    assert (quiet.returncode, quiet.stderr) == (0, "")

    done, terminal = mailgw_on_a_terminal("contacts", "export", "--addr", address, "-o", str(exported))
    assert done.returncode == 0
    assert "100%" in terminal and "3000/3000" in terminal and "contacts" in terminal
    assert len(exported.read_text(encoding="utf-8-sig").splitlines()) == 3001


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize(
    "content, complaint",
    [
        (b"email,reason\r\na@example.org,x\r\n", "line 1: the header must name the columns email and status"),
        (b"", "line 1: the header must name the columns email and status (and reason), not nothing"),
        (
            b"email,status,reason\r\na@example.org,bounced,x\r\nb@example.org,bounced," + b"r" * 200_000,
            "line 3: field larger",
        ),
        ("email,status\r\na@example.org,bounced\r\nb@exämple.org,bounced\r\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_a_file_that_is_not_contacts_csv_imports_nothing(address, tmp_path, content, complaint):
    source = tmp_path / "broken.csv"
    source.write_bytes(content)

    done = run_mailgw("contacts", "import", "--addr", address, str(source))

    assert done.returncode == 2
    assert complaint in done.stderr and "(nothing was imported)" in done.stderr
    assert contact("a@example.org") is None


def test_every_contacts_action_and_option_has_help(capsys):
    [commands] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    contacts = commands.choices["contacts"]
    [actions] = [a for a in contacts._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(actions.choices) == {"list", "history", "reactivate", "suppress", "import", "export"}
    for name, action in actions.choices.items():
        assert action.description, name
        assert all(option.help for option in action._actions), name
        with pytest.raises(SystemExit):
            parser().parse_args(["contacts", name, "--help"])
        assert all(line == line.rstrip() for line in capsys.readouterr().out.splitlines())
