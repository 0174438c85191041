"""Reading contacts for operators: filters, pages by key in a stable order, a contact's history, a consistent export.

Contacts are listed in the order of their last change, (updated_at, id), so each page is one range of an index
(models.Contact) however many contacts there are, and contacts added or changed while an operator pages never
shift the pages: a page token holds the key of the last contact listed, not an offset.
"""

import base64
import binascii
import datetime
import hashlib
import heapq
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import peewee

from gateway.core.errors import InvalidRequest
from gateway.store.database import database, is_postgres
from gateway.store.models import Contact, ContactStatus, StatusChange

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
EXPORT_CHUNK = 1000  # contacts per streamed message and per query
EPOCH = datetime.datetime(1970, 1, 1)
CONTACT_COLUMNS = (
    Contact.id,
    Contact.email,
    Contact.contact_id,
    Contact.status,
    Contact.reason,
    Contact.created_at,
    Contact.updated_at,
)


@dataclass(frozen=True)
class ContactRow:
    """A contact as listed: its row id (the second half of the order's key) and what an operator reads."""

    pk: int
    email: str
    contact_id: str
    status: ContactStatus
    reason: str
    created_at: datetime.datetime
    updated_at: datetime.datetime

    @property
    def key(self) -> tuple[datetime.datetime, int]:
        return self.updated_at, self.pk


@dataclass(frozen=True)
class ContactFilter:
    """Which contacts to list or export: some statuses (none: any) and a half-open range of updated_at (naive UTC)."""

    statuses: frozenset[ContactStatus] = frozenset()
    updated_after: datetime.datetime | None = None
    updated_before: datetime.datetime | None = None

    def __post_init__(self):
        if self.updated_after and self.updated_before and self.updated_after >= self.updated_before:
            raise InvalidRequest({"filter.updated_before": "must be later than filter.updated_after"})

    def fingerprint(self) -> bytes:
        """The same for equal filters: a page token is good only for the filter of the listing that made it."""
        times = [_micros(moment) if moment else None for moment in (self.updated_after, self.updated_before)]
        return repr((sorted(self.statuses), times)).encode()


@dataclass(frozen=True)
class Page:
    """One page of a listing and the token of the next one ("" on the last page)."""

    items: list
    next_page_token: str


def page_size(requested: int) -> int:
    """AIP-158: 0 means the default; above the maximum means the maximum; below 0 is an error."""
    if requested < 0:
        raise InvalidRequest({"page_size": "must not be negative"})
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def contacts_page(contact_filter: ContactFilter, page_token: str, size: int) -> Page:
    """The contacts after the token's key (from the start without one), oldest change first."""
    after = None
    if page_token:
        micros, pk = decode_page_token(page_token, b"contacts", contact_filter.fingerprint())
        after = (EPOCH + datetime.timedelta(microseconds=micros), pk)
    rows = _contacts_after(contact_filter, after, size + 1)
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        last_updated, last_pk = rows[-1].key
        token = encode_page_token(b"contacts", contact_filter.fingerprint(), _micros(last_updated), last_pk)
    return Page(rows, token)


def export_contacts(contact_filter: ContactFilter) -> Iterator[int | list[ContactRow]]:
    """The number of contacts, then every contact in chunks, in the order of contacts_page, read from one snapshot
    of the database: a contact changed during the export is exported once, as it was when the export began."""
    with _read_snapshot():
        yield _matching(contact_filter).count()
        after = None
        while rows := _contacts_after(contact_filter, after, EXPORT_CHUNK):
            yield rows
            after = rows[-1].key


def history_page(contact_pk: int, page_token: str, size: int) -> Page:
    """A contact's status changes, newest first (by row id: a contact's changes are serialised by its row lock, so
    ids follow the order in which they were made, whatever the clocks of the processes that made them)."""
    query = StatusChange.select().where(StatusChange.contact == contact_pk)
    if page_token:
        _, before = decode_page_token(page_token, b"history", str(contact_pk).encode())
        query = query.where(StatusChange.id < before)
    changes = list(query.order_by(StatusChange.id.desc()).limit(size + 1))
    token = ""
    if len(changes) > size:
        changes = changes[:size]
        token = encode_page_token(b"history", str(contact_pk).encode(), 0, changes[-1].id)
    return Page(changes, token)


def _matching(
    contact_filter: ContactFilter, status: ContactStatus | None = None, *, lower_bound: bool = True
) -> peewee.ModelSelect:
    query = Contact.select(*CONTACT_COLUMNS)
    if status is not None:
        query = query.where(Contact.status == status)
    elif contact_filter.statuses:
        query = query.where(Contact.status.in_(sorted(contact_filter.statuses)))
    if contact_filter.updated_after is not None and lower_bound:
        query = query.where(Contact.updated_at >= contact_filter.updated_after)
    if contact_filter.updated_before is not None:
        query = query.where(Contact.updated_at < contact_filter.updated_before)
    return query


def _contacts_after(contact_filter: ContactFilter, after: tuple | None, limit: int) -> list[ContactRow]:
    """At most `limit` contacts after the key `after`, in key order. With several statuses, one query per status
    (each reads one range of the (status, updated_at, id) index) merged here: a single query over `status IN (…)`
    would have to sort every matching contact to find the first few."""
    # updated_after joins the page's key in one lower bound ((t, 0) is below every contact changed at t): given
    # both as two conditions, PostgreSQL took the range for a hundred times narrower than it is and sorted every
    # contact in it (76 ms at 1,000,000 contacts) instead of reading the first ones in index order.
    start = (contact_filter.updated_after, 0) if contact_filter.updated_after is not None else None
    lower = max((key for key in (after, start) if key is not None), default=None)
    statuses = sorted(contact_filter.statuses) or [None]
    queries = []
    for status in statuses:
        query = _matching(contact_filter, status, lower_bound=False)
        if lower is not None:
            query = query.where(peewee.Tuple(Contact.updated_at, Contact.id) > peewee.Tuple(*lower))
        queries.append(ContactRow(*row) for row in query.order_by(Contact.updated_at, Contact.id).limit(limit).tuples())
    return list(itertools.islice(heapq.merge(*queries, key=lambda row: row.key), limit))


def _read_snapshot():
    """A read-only transaction that sees the database as it was when it began: PostgreSQL's REPEATABLE READ; on
    SQLite a deferred transaction, which in WAL mode reads one snapshot and never blocks a writer."""
    if is_postgres():
        return database.atomic(isolation_level="REPEATABLE READ READ ONLY")
    return database.atomic(lock_type="DEFERRED")


def _micros(moment: datetime.datetime | None) -> int:
    return (moment - EPOCH) // datetime.timedelta(microseconds=1) if moment else 0


# A token is the listing's last key and a checksum over it and the listing (kind and filter), URL-safe base64. It
# is opaque to callers, and an edited, truncated or foreign token is refused rather than read as another position;
# it is not a secret (an admin may list every contact anyway), so it needs no key shared by the replicas.
_TOKEN = struct.Struct(">Bqq")  # version, microseconds since the epoch, row id
_TOKEN_VERSION = 1
_CHECKSUM_BYTES = 8
MAX_PAGE_TOKEN = 64


def encode_page_token(kind: bytes, scope: bytes, micros: int, pk: int) -> str:
    body = _TOKEN.pack(_TOKEN_VERSION, micros, pk)
    return base64.urlsafe_b64encode(body + _checksum(kind, scope, body)).rstrip(b"=").decode()


MAX_MICROS = (datetime.datetime(9999, 12, 31) - EPOCH) // datetime.timedelta(microseconds=1)


def decode_page_token(token: str, kind: bytes, scope: bytes) -> tuple[int, int]:
    """(microseconds, row id) of a token this listing made; InvalidRequest for anything else."""
    invalid = InvalidRequest({"page_token": "not a page token of this listing (with this filter); start without one"})
    if len(token) > MAX_PAGE_TOKEN or not token.isascii():
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    body, checksum = raw[: _TOKEN.size], raw[_TOKEN.size :]
    if len(body) != _TOKEN.size or checksum != _checksum(kind, scope, body):
        raise invalid
    version, micros, pk = _TOKEN.unpack(body)
    if version != _TOKEN_VERSION or not 0 <= micros <= MAX_MICROS:  # a time it can hold: the checksum has no key
        raise invalid
    return micros, pk


def _checksum(kind: bytes, scope: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"mailgw page token\0" + kind + b"\0" + scope + b"\0" + body).digest()[:_CHECKSUM_BYTES]
