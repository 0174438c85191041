"""The README's Quick start as a new user follows it: `make run`, `mailgw send`, the link it prints, the page and the
mail naming the sender, the admin commands, then Ctrl-C; on the sidecar port the user chose, not 8080."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import pytest

from support.processes import ROOT, free_port, mailgw, wait_until
from tests.test_startup import healthy

BIN = Path(sys.executable).parent  # the environment running the tests has mailgw installed beside its python


@pytest.mark.slow
def test_make_run_is_ready_to_explore_and_ctrl_c_stops_it_cleanly(tmp_path):
    grpc_address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {
        "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/mailgw.db",
        "MAILGW_OUTBOX_DIR": str(tmp_path / "outbox"),
        "MAILGW_GRPC_ADDR": grpc_address,
        "MAILGW_HTTP_ADDR": http_address,  # not 8080: the link must follow it
    }
    make = subprocess.Popen(
        # -o: the environment is installed already (BIN's), so make does not reinstall it
        ["make", "--no-print-directory", "-o", f"{BIN}/.installed", "run", f"BIN={BIN}"],
        env=os.environ | env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the process group a shell gives a foreground job: Ctrl-C signals all of it
    )
    try:
        healthy(grpc_address, make)
        wait_until(lambda: urlopen(f"http://{http_address}/healthz", timeout=1).status == 200, make)

        sent = mailgw("send", "--addr", grpc_address, "--to", "ada@example.org", "--subject", "Hi", "--text", "First")
        assert sent.returncode == 0, sent.stderr
        [link] = re.findall(r"^unsubscribe link: (\S+)$", sent.stdout, re.MULTILINE)
        assert link.startswith(f"http://{http_address}/unsubscribe/")
        page = urlopen(link, timeout=10).read().decode()
        assert "stop receiving emails from Mail Gateway at a***@example.org." in page
        wait_until(lambda: list((tmp_path / "outbox").glob("*.eml")), make)
        [eml] = (tmp_path / "outbox").glob("*.eml")
        mail = eml.read_bytes().decode().replace("=\r\n", "")  # quoted-printable soft line breaks
        assert "You receive this email from Mail Gateway. To stop receiving these emails, unsubscribe here: " in mail
        assert f"List-Unsubscribe: <{link}>" in mail

        listed = mailgw("contacts", "list", "--addr", grpc_address)  # an admin command, on loopback
        assert listed.returncode == 0, listed.stderr
        assert "ada@example.org" in listed.stdout
        guard = mailgw("dispatch", "status", "--addr", grpc_address)  # another
        assert guard.returncode == 0, guard.stderr
        assert guard.stdout.splitlines()[0] == "dispatch: full pace"
    finally:
        os.killpg(make.pid, signal.SIGINT)
        output, _ = make.communicate(timeout=60)

    assert not re.search(r"^make: \*\*\* .*Error", output, re.MULTILINE), output  # was "[Makefile:..: run] Error 241"
    assert "Traceback" not in output
    assert "gateway stopped" in output
