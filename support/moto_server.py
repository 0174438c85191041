"""moto in server mode as a real HTTP peer: one child process per test session, reset before each test."""

import json
import urllib.request

from support.processes import drain, free_port, start, wait_until


class MotoServer:
    """moto's server (gateway/dev/moto_fixes.py) on a free loopback port (SNS, SQS and what moto has of SES)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = None
        self.log = None

    def start(self) -> "MotoServer":
        self._process = start(["-m", "gateway.dev.moto_fixes", "-H", "127.0.0.1", "-p", str(self.port)], {})
        wait_until(lambda: urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).status == 200, self._process)
        self.log = drain(self._process, keep=200)  # it logs a line per request: an unread pipe would stall it
        return self

    def reset(self) -> None:
        """Forget every resource, as a fresh account would have none."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=json.dumps({}).encode(), method="POST")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
