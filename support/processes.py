"""Starting the real server processes for tests, on free loopback ports."""

import collections
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


LOWEST_PORT = 10000


def free_port() -> int:
    """A loopback port nobody listens on, for a server about to start. Chosen below the kernel's ephemeral range
    (net.ipv4.ip_local_port_range), where bind(port 0) would pick it: there every outgoing connection of the run (to
    PostgreSQL, to a stand-in) takes its local port too, and one took a port between this check and the server's
    bind (CI saw "the address is in use by another process")."""
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    for _ in range(200):
        port = random.randrange(LOWEST_PORT, max(first_ephemeral, LOWEST_PORT + 1000))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


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


def wait_until(condition, process: subprocess.Popen | None = None, *, timeout: float = 20.0, interval: float = 0.05):
    """Poll `condition()` until it returns something true, and return that. With a child `process` (waiting for a
    server to be ready), its exceptions mean "not yet" and the child exiting fails at once with its output; without
    one, they propagate. AssertionError (with the child's output) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if value := condition():
                return value
        except Exception:
            if process is None:
                raise
        if time.monotonic() > deadline:
            if process is None:
                raise AssertionError(f"not true after {timeout} s: {condition.__doc__ or condition}")
            process.kill()
            raise AssertionError(f"process not ready after {timeout}s:\n{process.communicate()[0]}")
        time.sleep(interval)


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


def mailgw(*args: str, environ: Mapping[str, str] | None = None, timeout: float = 120.0, **env: str):
    """`mailgw ARGS…` run as a user runs it (`python -m gateway.cli` from the checkout), with this process's
    environment (or `environ`) plus `env`; the finished process, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ if environ is None else environ) | env,
        cwd=ROOT,
        timeout=timeout,
    )
