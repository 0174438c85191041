"""A stand-in for the SES v2 API on loopback: answers SendEmail as SES does and records what boto3 really sent."""

import asyncio
import base64
import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy

from aiohttp import web

MAX_REQUEST = 64 * 1024 * 1024  # SES v2 takes 40 MB messages; base64 inside JSON makes the request larger


@dataclass
class SesRequest:
    path: str
    headers: dict
    body: dict
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
    """Each request is recorded; queued failures are answered first, then "MessageId" successes."""

    def __init__(self):
        self.requests: list[SesRequest] = []
        self.delay = 0.0
        self._failures: deque = deque()
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self.url = ""

    def fail(self, status: int, code: str, message: str = "", times: int = 1):
        self._failures.extend([(status, code, message)] * times)

    @property
    def sent(self) -> list[SesRequest]:
        return [r for r in self.requests if r.path == "/v2/email/outbound-emails"]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        recorded = SesRequest(request.path, dict(request.headers), json.loads(body or b"{}"))
        self.requests.append(recorded)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            status, code, message = self._failures.popleft()
            return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": code})
        recorded.message_id = f"0100019{uuid.uuid4().hex}-000000"
        return web.json_response({"MessageId": recorded.message_id})

    def start(self) -> str:
        ready = threading.Event()

        async def serve():
            app = web.Application(client_max_size=MAX_REQUEST)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
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
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
