"""A stand-in for the SES v2 API on loopback: answers SendEmail, GetAccount, the configuration sets with their event
destinations, the suppression list (dev/ses_suppression.py) and the tenants (dev/ses_tenants.py) as SES does (paths,
JSON shapes, x-amzn-ErrorType errors), records what boto3 really sent and when, and can be scripted to throttle, fail,
hang or answer slowly. The tests start it on a port of its own (start()); `mailgw dev aws` serves its routes beside
moto's (register())."""

import asyncio
import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from urllib.parse import unquote

from aiohttp import web

from gateway.dev.ses_answers import error
from gateway.dev.ses_suppression import SuppressionListStandIn
from gateway.dev.ses_tenants import TenantsStandIn

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

    def __init__(self, *, keep: int | None = None):
        self.requests: list[SesRequest] = []
        self.keep = keep  # how many requests to record (None: all); a long-lived `mailgw dev aws` keeps the last ones
        self.delay = 0.0  # seconds between deciding on a send and answering: slow, or a hang past the read timeout
        self.max_send_rate = 100.0  # GetAccount's SendQuota
        self.max_24_hour_send = -1
        self.sent_before = 0  # SentLast24Hours before this stand-in's own accepted sends
        self.on_send = None  # called with each SesRequest before it is answered (from the stand-in's thread)
        # GetAccount answers this (status, code) instead, or (status, code, body): a raw body (see fail)
        self.account_error: tuple[int, str] | tuple[int, str, str] | None = None
        self.suppression = SuppressionListStandIn()  # the account-level suppression list (its own routes)
        self.tenants = TenantsStandIn()  # tenants and their reputation entities (their own routes)
        self._failures: deque = deque()
        self._message_ids: deque = deque()
        self.configuration_sets = ConfigurationSets()
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self.url = ""

    def fail(self, status: int, code: str, message: str = "", times: int = 1, *, body: str | None = None):
        """The next `times` sends are answered with this error, as SES answers it; or, with `body`, with that body as
        text/html (what a proxy or load balancer in front of SES answers), and `code` in x-amzn-ErrorType if any."""
        self._failures.extend([(status, code, message, body)] * times)

    def clear_failures(self):
        self._failures.clear()

    def answer_ids(self, *message_ids: str):
        """The next successful sends are answered with these MessageIds (any text), one each, in order."""
        self._message_ids.extend(message_ids)

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
        if self.keep is not None and len(self.requests) > self.keep:
            forgotten = self.requests.pop(0)
            self.sent_before += bool(forgotten.message_id)  # still counted in SentLast24Hours
        if request.path.startswith(CONFIGURATION_SETS_PATH):
            return self.configuration_sets.answer(request.method, request.path, recorded.body)
        if request.path == ACCOUNT_PATH and request.method == "GET":
            if self.account_error:
                status, code, *body = self.account_error
                return error(status, code, "denied", body[0] if body else None)
            return web.json_response(self._account())
        if self.on_send is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.on_send, recorded)
        # SES decides on receipt; the answer may then be slow or never arrive (a client that gave up, or died).
        refused = self.tenants.refusal_of_send(recorded.body)
        if self._failures:
            answer = error(*self._failures.popleft())
        elif refused is not None:
            answer = refused
        else:
            scripted = self._message_ids.popleft() if self._message_ids else None
            recorded.message_id = scripted or f"0100019{uuid.uuid4().hex}-000000"
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

    def register(self, app: web.Application) -> None:
        """The routes of the operations this stand-in answers, on `app` (whose client_max_size takes MAX_REQUEST)."""
        self.suppression.register(app)
        self.tenants.register(app)
        app.router.add_post(SEND_PATH, self._handle)
        app.router.add_get(ACCOUNT_PATH, self._handle)
        app.router.add_route("*", CONFIGURATION_SETS_PATH, self._handle)
        app.router.add_route("*", CONFIGURATION_SETS_PATH + "/{tail:.*}", self._handle)

    def start(self) -> str:
        ready = threading.Event()

        async def serve():
            app = web.Application(client_max_size=MAX_REQUEST)
            self.register(app)  # before the catch-all, which answers everything else as a send
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


# --- Configuration sets and their event destinations (what `mailgw aws bootstrap` calls) ---------------------------
# moto 5.2 has CreateConfigurationSet and GetConfigurationSet but no event-destination calls, so the stand-in serves
# all of them (one SESV2 endpoint). Paths, JSON and errors as in botocore's sesv2 model (2019-09-27): errors carry
# x-amzn-ErrorType; NotFoundException is 404, AlreadyExistsException and BadRequestException are 400.

CONFIGURATION_SETS_PATH = "/v2/email/configuration-sets"
EVENT_TYPES = frozenset(
    ("SEND", "REJECT", "BOUNCE", "COMPLAINT", "DELIVERY", "OPEN", "CLICK", "RENDERING_FAILURE", "DELIVERY_DELAY",
     "SUBSCRIPTION")
)  # fmt: skip
DESTINATION_KINDS = (
    "SnsDestination",
    "CloudWatchDestination",
    "KinesisFirehoseDestination",
    "EventBridgeDestination",
    "PinpointDestination",
)
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConfigurationSets:
    """The account's configuration sets, each {"ConfigurationSetName", ...options, "EventDestinations": {name: …}}."""

    def __init__(self):
        self.sets: dict[str, dict] = {}
        self.refusal: tuple[int, str, str] | None = None  # (status, code, message) answered to every call instead

    def answer(self, method: str, path: str, body: dict) -> web.Response:
        if self.refusal is not None:
            return error(*self.refusal)
        parts = [unquote(part) for part in path.removeprefix(CONFIGURATION_SETS_PATH).strip("/").split("/") if part]
        if method == "POST" and not parts:
            return self._create_set(body)
        if not parts or parts[0] not in self.sets:
            return error(404, "NotFoundException", f"Configuration set <{parts[0] if parts else ''}> does not exist.")
        found = self.sets[parts[0]]
        if method == "GET" and len(parts) == 1:
            options = {key: value for key, value in found.items() if key != "EventDestinations"}
            return web.json_response(options)
        if len(parts) == 2 and parts[1] == "event-destinations":
            if method == "GET":
                destinations = [{"Name": name} | d for name, d in found["EventDestinations"].items()]
                return web.json_response({"EventDestinations": destinations})
            if method == "POST":
                return self._put_destination(found, body.get("EventDestinationName"), body, create=True)
        if len(parts) == 3 and parts[1] == "event-destinations" and method == "PUT":
            return self._put_destination(found, parts[2], body, create=False)
        return error(400, "BadRequestException", f"{method} {path} is not an operation of this stand-in")

    def _create_set(self, body: dict) -> web.Response:
        name = body.get("ConfigurationSetName")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return error(400, "BadRequestException", "Invalid configuration set name.")
        if name in self.sets:
            return error(400, "AlreadyExistsException", f"Configuration set <{name}> already exists.")
        self.sets[name] = {
            "ConfigurationSetName": name,
            "DeliveryOptions": body.get("DeliveryOptions", {"TlsPolicy": "OPTIONAL"}),
            "ReputationOptions": body.get("ReputationOptions", {"ReputationMetricsEnabled": False}),
            "SendingOptions": body.get("SendingOptions", {"SendingEnabled": True}),
            "Tags": body.get("Tags", []),
            "EventDestinations": {},
        }
        return web.json_response({})

    def _put_destination(self, found: dict, name, body: dict, *, create: bool) -> web.Response:
        destinations = found["EventDestinations"]
        definition = body.get("EventDestination")
        if not isinstance(name, str) or not NAME.fullmatch(name) or not isinstance(definition, dict):
            return error(400, "BadRequestException", "EventDestinationName and EventDestination are required.")
        if create and name in destinations:
            return error(400, "AlreadyExistsException", f"Event destination {name} already exists.")
        if not create and name not in destinations:
            return error(404, "NotFoundException", f"Event destination {name} does not exist.")
        types = definition.get("MatchingEventTypes")
        if not isinstance(types, list) or not types or not set(types) <= EVENT_TYPES:
            return error(400, "BadRequestException", "MatchingEventTypes must list event types.")
        kinds = [kind for kind in DESTINATION_KINDS if definition.get(kind)]
        if len(kinds) != 1:
            return error(400, "BadRequestException", "Exactly one destination must be provided.")
        destinations[name] = {
            "Enabled": bool(definition.get("Enabled", False)),
            "MatchingEventTypes": list(types),
            kinds[0]: definition[kinds[0]],
        }
        return web.json_response({})
