"""SES's account-level suppression list through boto3's sesv2 client (the credential chain, the region,
AWS_ENDPOINT_URL_SESV2): listing it page by page, putting an address on it, deleting one. Every error is classified by
the one failure table (core/failures.py)."""

import datetime
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gateway.core.failures import MAYBE_SENT, RETRY, RETRY_BASE_SECONDS, Failure, classify_ses_error, retry_delay
from gateway.ses.transport import CLIENT_CONFIG, aws_session

log = logging.getLogger(__name__)

REASONS = ("BOUNCE", "COMPLAINT")  # all SES has; we ask for both explicitly
PAGE_SIZE = 1000
PAGE_ATTEMPTS = 4  # a page SES throttled or did not answer is asked again (1 s, 2 s, 4 s between), then the pass ends


@dataclass(frozen=True)
class SuppressedDestination:
    """One entry of SES's list, as ListSuppressedDestinations gives it."""

    address: str
    reason: str  # BOUNCE | COMPLAINT
    last_update_time: datetime.datetime | None  # naive UTC


class SuppressionCallFailed(Exception):
    """SES did not do what a suppression-list call asked; `failure` is the classified error."""

    def __init__(self, operation: str, failure: Failure):
        super().__init__(f"{operation}: {failure}")
        self.operation = operation
        self.failure = failure


class SesSuppressionList:
    """The account-level list (no TenantName: the account's own)."""

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        *,
        stopping: threading.Event | None = None,
        page_size: int = PAGE_SIZE,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
    ):
        self._client = (session or aws_session()).client("sesv2", config=CLIENT_CONFIG)
        self._stopping = stopping or threading.Event()  # ends the waits between attempts at a page
        self._page_size = page_size
        self.retry_base_seconds = retry_base_seconds  # the backoff of a page, and of an intent (suppression/sync.py)

    def pages(self, *, added_after: datetime.datetime | None = None) -> Iterator[list[SuppressedDestination]]:
        """Every entry with reason BOUNCE or COMPLAINT (added after `added_after`, naive UTC, when given), a page at
        a time; SuppressionCallFailed when a page cannot be had."""
        request: dict = {"Reasons": list(REASONS), "PageSize": self._page_size}
        if added_after is not None:
            request["StartDate"] = added_after.replace(tzinfo=datetime.UTC)
        while True:
            answer = self._listed(request)
            yield [entry for entry in map(_entry, answer.get("SuppressedDestinationSummaries") or []) if entry]
            if not answer.get("NextToken"):
                return
            request["NextToken"] = answer["NextToken"]

    def _listed(self, request: dict) -> dict:
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            try:
                return self._client.list_suppressed_destinations(**request)
            except (ClientError, BotoCoreError) as exc:
                failure = classify_ses_error(exc)
            # Listing only reads: a page that was not answered may be asked for again at once.
            again = failure.outcome in (RETRY, MAYBE_SENT) and failure.reason != "SES_INVALID_NEXT_TOKEN"
            backoff = retry_delay(attempt, self.retry_base_seconds)
            if not again or attempt == PAGE_ATTEMPTS or self._stopping.wait(backoff):
                raise SuppressionCallFailed("ListSuppressedDestinations", failure)
        raise AssertionError("unreachable")

    def put(self, address: str, reason: str) -> None:
        """Put (or keep) the address on the list under `reason`; SES answers the same to a repeat."""
        try:
            self._client.put_suppressed_destination(EmailAddress=address, Reason=reason)
        except (ClientError, BotoCoreError) as exc:
            raise SuppressionCallFailed("PutSuppressedDestination", classify_ses_error(exc)) from None

    def delete(self, address: str) -> bool:
        """Take the address off the list: True when it was on it, False when SES did not list it."""
        try:
            self._client.delete_suppressed_destination(EmailAddress=address)
        except ClientError as exc:
            # Not a failure: the address is off the list, which is what the call was for.
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return False
            raise SuppressionCallFailed("DeleteSuppressedDestination", classify_ses_error(exc)) from None
        except BotoCoreError as exc:
            raise SuppressionCallFailed("DeleteSuppressedDestination", classify_ses_error(exc)) from None
        return True


def _entry(summary) -> SuppressedDestination | None:
    """A summary as botocore parsed it; None (logged) for one we cannot read, which is never a reason to stop."""
    address, reason, updated = (summary.get(k) for k in ("EmailAddress", "Reason", "LastUpdateTime"))
    if not isinstance(address, str) or reason not in REASONS:
        log.warning("SES listed a suppressed destination we cannot read (reason %r): skipped", reason)
        return None
    if isinstance(updated, datetime.datetime):
        updated = updated.astimezone(datetime.UTC).replace(tzinfo=None)
    else:
        updated = None
    return SuppressedDestination(address, reason, updated)
