"""A stand-in for the SES v2 API on loopback: answers SendEmail, GetAccount, the configuration sets with their event
destinations and the suppression list as SES does (paths, JSON shapes, x-amzn-ErrorType errors), records what boto3
really sent and when, and can be scripted to throttle, fail, hang or answer slowly. The tests start it on a port of
its own (start()); `mailgw dev aws` serves its routes beside moto's (register())."""

import asyncio
import base64
import datetime
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
                return _error(status, code, "denied", body[0] if body else None)
            return web.json_response(self._account())
        if self.on_send is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.on_send, recorded)
        # SES decides on receipt; the answer may then be slow or never arrive (a client that gave up, or died).
        if self._failures:
            answer = _error(*self._failures.popleft())
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


def _error(status: int, code: str, message: str, body: str | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": code} if code else {}
    if body is not None:
        return web.Response(text=body, status=status, content_type="text/html", headers=headers)
    return web.json_response({"message": message}, status=status, headers=headers)


class ConfigurationSets:
    """The account's configuration sets, each {"ConfigurationSetName", ...options, "EventDestinations": {name: …}}."""

    def __init__(self):
        self.sets: dict[str, dict] = {}
        self.refusal: tuple[int, str, str] | None = None  # (status, code, message) answered to every call instead

    def answer(self, method: str, path: str, body: dict) -> web.Response:
        if self.refusal is not None:
            return _error(*self.refusal)
        parts = [unquote(part) for part in path.removeprefix(CONFIGURATION_SETS_PATH).strip("/").split("/") if part]
        if method == "POST" and not parts:
            return self._create_set(body)
        if not parts or parts[0] not in self.sets:
            return _error(404, "NotFoundException", f"Configuration set <{parts[0] if parts else ''}> does not exist.")
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
        return _error(400, "BadRequestException", f"{method} {path} is not an operation of this stand-in")

    def _create_set(self, body: dict) -> web.Response:
        name = body.get("ConfigurationSetName")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return _error(400, "BadRequestException", "Invalid configuration set name.")
        if name in self.sets:
            return _error(400, "AlreadyExistsException", f"Configuration set <{name}> already exists.")
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
            return _error(400, "BadRequestException", "EventDestinationName and EventDestination are required.")
        if create and name in destinations:
            return _error(400, "AlreadyExistsException", f"Event destination {name} already exists.")
        if not create and name not in destinations:
            return _error(404, "NotFoundException", f"Event destination {name} does not exist.")
        types = definition.get("MatchingEventTypes")
        if not isinstance(types, list) or not types or not set(types) <= EVENT_TYPES:
            return _error(400, "BadRequestException", "MatchingEventTypes must list event types.")
        kinds = [kind for kind in DESTINATION_KINDS if definition.get(kind)]
        if len(kinds) != 1:
            return _error(400, "BadRequestException", "Exactly one destination must be provided.")
        destinations[name] = {
            "Enabled": bool(definition.get("Enabled", False)),
            "MatchingEventTypes": list(types),
            kinds[0]: definition[kinds[0]],
        }
        return web.json_response({})


# --- The account-level suppression list ---------------------------------------------------------------------------
# ListSuppressedDestinations, GetSuppressedDestination, PutSuppressedDestination and DeleteSuppressedDestination as
# the SES v2 API reference and botocore's sesv2 model give them: paths, query parameters, JSON shapes, error codes.

SUPPRESSION_PATH = "/v2/email/suppression/addresses"
SUPPRESSION_REASONS = ("BOUNCE", "COMPLAINT")
SUPPRESSION_PAGE_SIZE = 1000  # the default and the largest page this stand-in gives (SES documents neither)


@dataclass
class SuppressedEntry:
    reason: str
    added_at: float  # seconds since the epoch: StartDate and EndDate filter on when an address was added
    updated_at: float  # LastUpdateTime


class SuppressionListStandIn:
    """Entries by address exactly as given (SES matches them exactly when managing the list), listed in address
    order (not by time) with opaque NextTokens that can be made to expire; scripted errors per operation; every
    call recorded as (operation, parameters)."""

    def __init__(self):
        self.entries: dict[str, SuppressedEntry] = {}
        self.calls: list[tuple[str, dict]] = []
        self.delay = 0.0  # seconds before each answer: a slow SES
        self._tokens: dict[str, tuple[tuple, int]] = {}
        self._failures: dict[str, deque] = {}

    def add(self, address: str, reason: str = "BOUNCE", *, at: float | None = None) -> None:
        """Put an address on the list as SES itself would (a bounce or complaint it saw), added `at` (now)."""
        at = time.time() if at is None else at
        self.entries[address] = SuppressedEntry(reason, at, at)

    def fail(self, operation: str, status: int, code: str, message: str = "", times: int = 1, after: int = 0) -> None:
        """After `after` calls answered as usual, the next `times` calls of `operation` (e.g.
        "ListSuppressedDestinations") answer this error."""
        self._failures.setdefault(operation, deque()).extend([None] * after + [(status, code, message)] * times)

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def called(self, operation: str) -> list[dict]:
        return [params for name, params in self.calls if name == operation]

    def register(self, app: web.Application) -> None:
        app.router.add_get(SUPPRESSION_PATH, self._list)
        app.router.add_put(SUPPRESSION_PATH, self._put)
        app.router.add_get(SUPPRESSION_PATH + "/{address}", self._get)
        app.router.add_delete(SUPPRESSION_PATH + "/{address}", self._delete)

    async def _answer(self, operation: str, params: dict):
        """Record the call; a scripted error for it, or None."""
        self.calls.append((operation, params))
        if self.delay:
            await asyncio.sleep(self.delay)
        queued = self._failures.get(operation)
        scripted = queued.popleft() if queued else None
        return _error(*scripted) if scripted else None

    async def _list(self, request: web.Request) -> web.Response:
        query = request.query
        params = {name: query.getall(name) for name in query}
        if failed := await self._answer("ListSuppressedDestinations", params):
            return failed
        reasons = tuple(query.getall("Reason", [])) or SUPPRESSION_REASONS
        if any(reason not in SUPPRESSION_REASONS for reason in reasons):
            return _error(400, "BadRequestException", f"Invalid reason: {', '.join(reasons)}")
        try:
            size = int(query.get("PageSize", SUPPRESSION_PAGE_SIZE))
            start, end = (_timestamp(query.get(name)) for name in ("StartDate", "EndDate"))
        except ValueError as exc:
            return _error(400, "BadRequestException", str(exc))
        if not 1 <= size <= SUPPRESSION_PAGE_SIZE:
            return _error(400, "BadRequestException", f"PageSize must be between 1 and {SUPPRESSION_PAGE_SIZE}")
        listing = (reasons, start, end, size)
        offset = 0
        if "NextToken" in query:
            issued = self._tokens.pop(query["NextToken"], None)
            if issued is None or issued[0] != listing:
                return _error(400, "InvalidNextTokenException", "The specified NextToken is invalid or expired")
            offset = issued[1]
        matching = [
            (address, entry)
            for address, entry in sorted(self.entries.items())
            if entry.reason in reasons
            and (start is None or entry.added_at >= start)
            and (end is None or entry.added_at <= end)
        ]
        page = matching[offset : offset + size]
        answer: dict = {
            "SuppressedDestinationSummaries": [
                {"EmailAddress": address, "Reason": entry.reason, "LastUpdateTime": entry.updated_at}
                for address, entry in page
            ]
        }
        if offset + size < len(matching):
            token = base64.b64encode(uuid.uuid4().bytes).decode()
            self._tokens[token] = (listing, offset + size)
            answer["NextToken"] = token
        return web.json_response(answer)

    async def _put(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error(400, "BadRequestException", "The request body is not JSON")
        if failed := await self._answer("PutSuppressedDestination", body):
            return failed
        address, reason = body.get("EmailAddress"), body.get("Reason")
        if not isinstance(address, str) or "@" not in address or reason not in SUPPRESSION_REASONS:
            return _error(400, "BadRequestException", "EmailAddress and a Reason of BOUNCE or COMPLAINT are required")
        known = self.entries.get(address)
        now = time.time()
        self.entries[address] = SuppressedEntry(reason, known.added_at if known else now, now)
        return web.json_response({})

    async def _get(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if failed := await self._answer("GetSuppressedDestination", {"EmailAddress": address}):
            return failed
        entry = self.entries.get(address)
        if entry is None:
            return _error(404, "NotFoundException", f"Email address {address} does not exist on your suppression list.")
        summary = {"EmailAddress": address, "Reason": entry.reason, "LastUpdateTime": entry.updated_at}
        return web.json_response({"SuppressedDestination": summary})

    async def _delete(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if failed := await self._answer("DeleteSuppressedDestination", {"EmailAddress": address}):
            return failed
        if self.entries.pop(address, None) is None:
            return _error(404, "NotFoundException", f"Email address {address} does not exist on your suppression list.")
        return web.json_response({})


def _timestamp(value: str | None) -> float | None:
    """A query-string timestamp as botocore writes it (ISO 8601, UTC, with or without fractions)."""
    if value is None:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"Invalid timestamp {value!r}") from None
