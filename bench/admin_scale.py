"""The admin service at scale: a ListContacts page, an export and an import with 1,000,000 contacts against 10,000,
on SQLite and PostgreSQL, through a real gateway in this process.

    .venv/bin/python -m bench.admin_scale            # 10,000 and 1,000,000 contacts (about 5 minutes)
    .venv/bin/python -m bench.admin_scale 1000 5000  # other sizes

Contacts: 90 % active, 5 % bounced, 3 % unsubscribed, 2 % complained, their updated_at spread over the sizes' seconds
in an order unrelated to their ids. Each page figure is the median of 200 calls of page_size 100 starting at keys
spread over the whole order.
"""

import datetime
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import grpc
import psycopg2

from bench.harness import POSTGRES_SERVER_URL
from gateway.admin import listing
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as public_pb
from gateway.core.config import Settings
from gateway.process.gateway import create_server
from gateway.store.models import MODELS, Contact, database, open_database

DATABASE = "mailgw_admin_scale"
BASE = datetime.datetime(2026, 1, 1)
STATUS_SQL = (
    "CASE WHEN i % 100 < 90 THEN 'active' WHEN i % 100 < 95 THEN 'bounced' "
    "WHEN i % 100 < 98 THEN 'unsubscribed' ELSE 'complained' END"
)
PG_STATUS_SQL = STATUS_SQL.replace("%", "%%")  # psycopg2's placeholders start with %
CALLS = 200
SUPPRESSED = [public_pb.ContactStatus.Value(f"CONTACT_STATUS_{n}") for n in ("UNSUBSCRIBED", "BOUNCED", "COMPLAINED")]


def fill(url: str, size: int) -> None:
    db = open_database(url)
    with db.connection_context():
        db.drop_tables(MODELS)
        db.create_tables(MODELS)
        if url.startswith("sqlite"):
            db.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO contact (contact_id, email, status, reason, soft_bounces, created_at, updated_at) "
                f"SELECT printf('c%021d', i), 'user' || i || '@example.org', {STATUS_SQL}, '', 0, "
                "'2026-01-01 00:00:00', datetime('2026-01-01', '+' || ((i * 7919) % ?) || ' seconds') FROM n",
                (size, size),
            )
        else:
            db.execute_sql(
                "INSERT INTO contact (contact_id, email, status, reason, soft_bounces, created_at, updated_at) "
                f"SELECT 'c' || lpad(i::text, 21, '0'), 'user' || i || '@example.org', {PG_STATUS_SQL}, "
                "'', 0, '2026-01-01', timestamp '2026-01-01' + ((i::bigint * 7919) %% %s) * interval '1 second' "
                "FROM generate_series(1, %s) AS i",
                (size, size),
            )
        db.execute_sql("ANALYZE")
    database.close_all()


def page_ms(stub, size: int, statuses: list[int], since: datetime.datetime | None = None) -> float:
    """Median milliseconds of a ListContacts page of 100, starting at keys spread over the whole order."""
    contact_filter = pb.ContactFilter(statuses=statuses)
    domain_filter = listing.ContactFilter(
        frozenset(listing.ContactStatus(pb_status_name(s)) for s in statuses), updated_after=since
    )
    if since:
        contact_filter.updated_after.FromDatetime(since)
    timings = []
    for call in range(CALLS):
        position = BASE + datetime.timedelta(seconds=(call * size) // CALLS)
        if since:
            position = max(position, since)
        micros = listing._micros(position)
        token = listing.encode_page_token(b"contacts", domain_filter.fingerprint(), micros, 0)
        request = pb.ListContactsRequest(filter=contact_filter, page_size=100, page_token=token)
        started = time.perf_counter()
        stub.ListContacts(request, timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def pb_status_name(value: int) -> str:
    return public_pb.ContactStatus.Name(value).removeprefix("CONTACT_STATUS_").lower()


def export_seconds(stub) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(len(chunk.contacts) for chunk in stub.ExportContacts(pb.ExportContactsRequest(), timeout=3600))
    return count, time.perf_counter() - started


def import_rate(stub, rows: int = 10_000) -> float:
    """Rows per second importing `rows` new bounced contacts in batches of 1,000."""
    started = time.perf_counter()
    for offset in range(0, rows, 1000):
        batch = [
            pb.ImportContactRow(email=f"imported{offset + i}@example.org", status=public_pb.CONTACT_STATUS_BOUNCED)
            for i in range(1000)
        ]
        stub.ImportContacts(pb.ImportContactsRequest(rows=batch), timeout=600)
    return rows / (time.perf_counter() - started)


def measure(backend: str, url: str, size: int) -> dict:
    fill(url, size)
    settings = replace(Settings(), database_url=url, grpc_addr="127.0.0.1:0", dispatch_workers=0,
                       admin_allow_unauthenticated=True)  # fmt: skip
    gateway = create_server(settings)
    gateway.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = pb_grpc.MailGatewayAdminServiceStub(channel)
            recent = BASE + datetime.timedelta(seconds=size * 0.99)
            figures = {
                "page, all": page_ms(stub, size, []),
                "page, bounced": page_ms(stub, size, [public_pb.CONTACT_STATUS_BOUNCED]),
                "page, 3 suppressed statuses": page_ms(stub, size, SUPPRESSED),
                "page, changed in the last 1 %": page_ms(stub, size, [], since=recent),
            }
            count, seconds = export_seconds(stub)
            figures["export, contacts/s"] = count / seconds
            figures["export, s"] = seconds
            figures["import, rows/s"] = import_rate(stub)
    finally:
        gateway.stop(None)
        database.close_all()
    with open_database(url).connection_context():
        assert Contact.select().count() == size + 10_000
    database.close_all()
    return figures


def main(sizes: list[int]) -> None:
    admin = psycopg2.connect(POSTGRES_SERVER_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    postgres_url = POSTGRES_SERVER_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend, url in (("SQLite", f"sqlite:///{tmp}/scale.db"), ("PostgreSQL", postgres_url)):
                for size in sizes:
                    for name, value in measure(backend, url, size).items():
                        print(f"{backend:<10} {size:>9,} contacts  {name:<32} {value:>10,.2f}", flush=True)
    finally:
        database.close_all()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    os.environ.pop("MAILGW_ADMIN_CALLERS", None)
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 1_000_000])
