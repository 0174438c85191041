"""A stand-in for the SES v2 API on loopback: answers SendEmail and GetAccount as SES does (paths, JSON shapes,
x-amzn-ErrorType errors), records what boto3 really sent and when, and can be scripted to throttle, fail, hang or
answer slowly."""

import asyncio
import base64
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiohttp import web

MAX_REQUEST = 64 * 1024 * 1024  # SES v2 takes 40 MB messages; base64 inside JSON makes the request larger
SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT_PATH = "/v2/email/account"


@dataclass
class SesRequest:
    path: str
    headers: dict
    body: dict
    at: float = field(default_factory=time.monotonic)  # when it arrived
    message_id: str = ""  # what the stand-in answered, when it answered with success

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.body["Content"]["Raw"]["Data"])

    @property
    def mime(self):
        return message_from_bytes(self.raw, policy=policy.default)

    @property
    def tags(self) -> dict:
        return {tag["Name"]: tag["Value"] for tag in self.body.get("EmailTags", [])}


class SesStandIn:
    """Each request is recorded; queued failures answer sends first, then "MessageId" successes."""

    def __init__(self):
        self.requests: list[SesRequest] = []
        self.delay = 0.0  # seconds between deciding on a send and answering: slow, or a hang past the read timeout
        self.max_send_rate = 100.0  # GetAccount's SendQuota
        self.max_24_hour_send = -1
        self.sent_before = 0  # SentLast24Hours before this stand-in's own accepted sends
        self.on_send = None  # called with each SesRequest before it is answered (from the stand-in's thread)
        self.account_error: tuple[int, str] | None = None  # GetAccount answers this (status, code) instead
        self._failures: deque = deque()
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self.url = ""

    def fail(self, status: int, code: str, message: str = "", times: int = 1):
        """The next `times` sends are answered with this error, as SES answers it."""
        self._failures.extend([(status, code, message)] * times)

    def clear_failures(self):
        self._failures.clear()

    @property
    def sent(self) -> list[SesRequest]:
        """Every SendEmail request, answered or not."""
        return [r for r in self.requests if r.path == SEND_PATH]

    @property
    def accepted(self) -> list[SesRequest]:
        """The SendEmail requests answered with a MessageId: what SES would have taken."""
        return [r for r in self.sent if r.message_id]

    def accepted_ids(self) -> list[str]:
        """The gateway's message ids (the message_id EmailTag) of the accepted sends, one entry per send."""
        return [r.tags.get("message_id", "") for r in self.accepted]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        recorded = SesRequest(request.path, dict(request.headers), json.loads(body or b"{}"))
        self.requests.append(recorded)
        if request.path == ACCOUNT_PATH and request.method == "GET":
            if self.account_error:
                status, code = self.account_error
                return web.json_response({"message": "denied"}, status=status, headers={"x-amzn-ErrorType": code})
            return web.json_response(self._account())
        if self.on_send is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.on_send, recorded)
        # SES decides on receipt; the answer may then be slow or never arrive (a client that gave up, or died).
        if self._failures:
            status, code, message = self._failures.popleft()
            answer = web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": code})
        else:
            recorded.message_id = f"0100019{uuid.uuid4().hex}-000000"
            answer = web.json_response({"MessageId": recorded.message_id})
        if self.delay:
            await asyncio.sleep(self.delay)
        return answer

    def _account(self) -> dict:
        """GetAccount's answer, shaped as in the SES v2 API reference."""
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {
                "Max24HourSend": float(self.max_24_hour_send),
                "MaxSendRate": float(self.max_send_rate),
                "SentLast24Hours": float(self.sent_before + len(self.accepted)),
            },
            "SendingEnabled": True,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }

    def start(self) -> str:
        ready = threading.Event()

        async def serve():
            app = web.Application(client_max_size=MAX_REQUEST)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            # Cancel a hanging answer when the client gives up, so stop() does not wait for it.
            self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop)
        ready.wait(5)
        return self.url

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
