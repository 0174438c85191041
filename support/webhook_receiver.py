"""A webhook endpoint on loopback, as a caller's service would run one: it records every POST (headers, raw body,
arrival time) and answers each with the next status of a script (then 200), a redirect with its Location."""

import http.server
import json
import threading
import time
from dataclasses import dataclass, field

TRICKLE = -1  # an answer of the script: 200, then the body a byte at a time (Handler._trickle)


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic() (one clock for every process of the machine)
    status: int  # what it was answered

    @property
    def events(self) -> list[dict]:
        return json.loads(self.body)["events"]


@dataclass
class Receiver:
    """Serves on 127.0.0.1 from `start()`; `url` is where to point MAILGW_WEBHOOK_URLS."""

    answers: list[int] = field(default_factory=list)  # statuses (or TRICKLE) for the next POSTs; then `otherwise`
    otherwise: int = 200
    location: str = ""  # a 3xx answer's Location
    posts: list[Post] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver._answer(dict(self.headers.items()), body)
                if status == TRICKLE:
                    self._trickle()
                    return
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _trickle(self):
                """A 200 whose body comes a byte every 0.1 s, for far longer than anyone should wait."""
                self.send_response(200)
                self.send_header("Content-Length", "600")
                self.end_headers()
                for _ in range(600):
                    try:
                        self.wfile.write(b".")
                        self.wfile.flush()
                    except OSError:
                        return  # the client gave up
                    time.sleep(0.1)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/mail"

    def start(self) -> "Receiver":
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = self.answers.pop(0) if self.answers else self.otherwise
            self.posts.append(Post(headers, body, time.monotonic(), status))
            return status

    def acknowledged(self) -> list[dict]:
        """Every event of the POSTs answered 2xx, in arrival order."""
        with self._lock:
            return [event for post in self.posts if 200 <= post.status < 300 for event in post.events]
