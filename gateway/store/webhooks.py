"""Each caller's webhook cursor (events/webhooks.py): the last position its endpoint acknowledged, its failures in a
row, and the lease of the one gateway that delivers for it. Every write after `take` names the owner: a gateway
whose lease another took over changes nothing."""

import datetime
from dataclasses import dataclass

from gateway.store import event_log
from gateway.store.database import insert_row
from gateway.store.models import WebhookCursor


@dataclass(frozen=True)
class Cursor:
    """A caller's cursor as its delivering gateway took it."""

    position: int
    failures: int
    failing_since: datetime.datetime | None
    next_attempt_at: datetime.datetime | None


def take(caller: str, owner: str, *, now: datetime.datetime, until: datetime.datetime) -> Cursor | None:
    """The caller's cursor, delivered by `owner` and no other gateway until `until`; None while another's lease lasts.
    A caller seen for the first time starts from the log's end: its webhook gets what happens from now on."""
    insert_row(WebhookCursor, ignore_conflict=True, caller=caller, position=event_log.last_position(), lease_until=now)
    taken = (
        WebhookCursor.update(owner=owner, lease_until=until)
        .where((WebhookCursor.caller == caller) & ((WebhookCursor.owner == owner) | (WebhookCursor.lease_until <= now)))
        .execute()
    )
    if not taken:
        return None
    row = (
        WebhookCursor.select(
            WebhookCursor.position, WebhookCursor.failures, WebhookCursor.failing_since, WebhookCursor.next_attempt_at
        )
        .where(WebhookCursor.caller == caller)
        .tuples()
        .first()
    )
    return Cursor(*row)


def delivered(caller: str, owner: str, *, position: int, now: datetime.datetime) -> bool:
    """The endpoint acknowledged every record up to `position`: its failures forgotten. Whether `owner` still held
    the cursor."""
    return bool(
        WebhookCursor.update(
            position=position, failures=0, failing_since=None, next_attempt_at=None, last_error="", delivered_at=now
        )
        .where((WebhookCursor.caller == caller) & (WebhookCursor.owner == owner))
        .execute()
    )


def failed(
    caller: str, owner: str, *, failures: int, since: datetime.datetime, retry_at: datetime.datetime, error: str
) -> bool:
    """One more answer that was not 2xx: the next attempt not before `retry_at`. Whether `owner` still held it."""
    return (
        WebhookCursor.update(failures=failures, failing_since=since, next_attempt_at=retry_at, last_error=error)
        .where((WebhookCursor.caller == caller) & (WebhookCursor.owner == owner))
        .execute()
        > 0
    )


def release(caller: str, owner: str, *, now: datetime.datetime) -> None:
    """`owner` stops delivering (its process stops): another gateway may take the cursor at once."""
    WebhookCursor.update(owner="", lease_until=now).where(
        (WebhookCursor.caller == caller) & (WebhookCursor.owner == owner)
    ).execute()
