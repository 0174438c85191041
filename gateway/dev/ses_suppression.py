"""The account-level suppression list in the SES stand-in (dev/ses_standin.py): ListSuppressedDestinations,
GetSuppressedDestination, PutSuppressedDestination and DeleteSuppressedDestination as the SES v2 API reference and
botocore's sesv2 model give them: paths, query parameters, JSON shapes, error codes."""

import asyncio
import base64
import datetime
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from gateway.dev.ses_answers import error

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
        return error(*scripted) if scripted else None

    async def _list(self, request: web.Request) -> web.Response:
        query = request.query
        params = {name: query.getall(name) for name in query}
        if failed := await self._answer("ListSuppressedDestinations", params):
            return failed
        reasons = tuple(query.getall("Reason", [])) or SUPPRESSION_REASONS
        if any(reason not in SUPPRESSION_REASONS for reason in reasons):
            return error(400, "BadRequestException", f"Invalid reason: {', '.join(reasons)}")
        try:
            size = int(query.get("PageSize", SUPPRESSION_PAGE_SIZE))
            start, end = (_timestamp(query.get(name)) for name in ("StartDate", "EndDate"))
        except ValueError as exc:
            return error(400, "BadRequestException", str(exc))
        if not 1 <= size <= SUPPRESSION_PAGE_SIZE:
            return error(400, "BadRequestException", f"PageSize must be between 1 and {SUPPRESSION_PAGE_SIZE}")
        listing = (reasons, start, end, size)
        offset = 0
        if "NextToken" in query:
            issued = self._tokens.pop(query["NextToken"], None)
            if issued is None or issued[0] != listing:
                return error(400, "InvalidNextTokenException", "The specified NextToken is invalid or expired")
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
            return error(400, "BadRequestException", "The request body is not JSON")
        if failed := await self._answer("PutSuppressedDestination", body):
            return failed
        address, reason = body.get("EmailAddress"), body.get("Reason")
        if not isinstance(address, str) or "@" not in address or reason not in SUPPRESSION_REASONS:
            return error(400, "BadRequestException", "EmailAddress and a Reason of BOUNCE or COMPLAINT are required")
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
            return error(404, "NotFoundException", f"Email address {address} does not exist on your suppression list.")
        summary = {"EmailAddress": address, "Reason": entry.reason, "LastUpdateTime": entry.updated_at}
        return web.json_response({"SuppressedDestination": summary})

    async def _delete(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if failed := await self._answer("DeleteSuppressedDestination", {"EmailAddress": address}):
            return failed
        if self.entries.pop(address, None) is None:
            return error(404, "NotFoundException", f"Email address {address} does not exist on your suppression list.")
        return web.json_response({})


def _timestamp(value: str | None) -> float | None:
    """A query-string timestamp as botocore writes it (ISO 8601, UTC, with or without fractions)."""
    if value is None:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"Invalid timestamp {value!r}") from None
