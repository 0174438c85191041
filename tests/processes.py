"""Starting the real server processes for tests, on free loopback ports."""

import collections
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child process with the test's environment plus `env`, run from the checkout."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=os.environ | env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(ready, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Poll `ready()` until it returns true; fail with the child's output if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"process not ready after {timeout}s:\n{process.communicate()[0]}")


def drain(process: subprocess.Popen, *, keep: int | None = None) -> collections.deque:
    """Read a child's output as it comes, so that a chatty child never blocks writing to a full pipe (64 KiB: a
    long-lived moto server logging every request stalled after a few hundred); the lines read, the last `keep` of
    them. Wait for the child with wait(), not communicate(), afterwards."""
    lines: collections.deque = collections.deque(maxlen=keep)

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines
