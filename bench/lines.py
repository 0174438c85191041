"""The benchmark lines: each runs our path and its baseline, round by round, and returns table rows."""

import json
import random
import statistics
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.events import rows as events
from bench.harness import (
    Profile,
    Row,
    bench_postgres_url,
    cpu_seconds,
    free_port,
    gateway,
    load,
    load_server,
    peak_rss_mb,
    process,
)
from bench.lanes import rows as lanes
from bench.message import rows as message
from bench.reputation import measure as reputation_window

SUPPRESSED = "bounced@example.org"
SEND_METHOD = "/mailgateway.v1.MailGatewayService/SendEmail"
ECHO_METHOD = "/bench.v1.EchoService/Echo"
NO_SES = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # lines that never reach SES: anything that tries fails fast
UNPACED = {"MAILGW_SEND_RATE": "1000000"}  # the budget is still taken and returned, it just never makes anyone wait


def send_request_bytes(to: str) -> bytes:
    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb

    body = "Your receipt for order 1042.\n" * 20  # about 600 bytes, a typical transactional mail
    request = pb.SendEmailRequest(to=to, subject="Your receipt", text_body=body, tags={"category": "receipt"})
    return request.SerializeToString()


def grpc_rows(name: str, ours: list[dict], echo: list[dict], throughput: str, p99: str) -> list[Row]:
    return [
        Row(name, "throughput", "RPC/s", [r["rps"] for r in ours], [r["rps"] for r in echo], throughput),
        Row(name, "p50 latency", "ms", [r["p50_ms"] for r in ours], [r["p50_ms"] for r in echo]),
        Row(name, "p99 latency", "ms", [r["p99_ms"] for r in ours], [r["p99_ms"] for r in echo], p99),
        Row(name, "gateway CPU per call", "ms", [r["server_cpu_ms_per_call"] for r in ours]),
    ]


def guard_blocked(profile: Profile, tmp: Path) -> list[Row]:
    """Line 1 (and 6): SendEmail to a suppressed recipient vs a bare grpcio echo; peak RSS of the gateway."""
    from gateway.store.contacts import change_status
    from gateway.store.models import ContactStatus, database, open_database

    url = f"sqlite:///{tmp}/guard.db"
    open_database(url)
    with database.connection_context():
        change_status(ContactStatus.BOUNCED, source="bench", email=SUPPRESSED)
    database.close_all()
    request = tmp / "blocked.bin"
    request.write_bytes(send_request_bytes(SUPPRESSED))
    echo, ours = [], []
    with process(["-m", "bench.peers", "echo-grpc", str(profile.concurrency)], {}) as (_, echo_port):
        env = NO_SES | {"MAILGW_GRPC_WORKERS": str(profile.concurrency)}
        with gateway(url, env) as (server, address):
            for _ in range(profile.rounds):
                ours.append(
                    load_server(server, address, request, profile, method=SEND_METHOD, expect="FAILED_PRECONDITION")
                )
                echo.append(load("grpc", f"127.0.0.1:{echo_port}", request, profile, method=ECHO_METHOD))
            rss = peak_rss_mb(server.pid)
    name = "1 guard-blocked SendEmail vs grpcio echo"
    return grpc_rows(name, ours, echo, ">= 0.75x", "<= 1.5x") + [
        Row("6 gateway peak RSS under load 1", "peak RSS", "MB", [rss], target="<= 150")
    ]


def accepted_send(profile: Profile, tmp: Path) -> list[Row]:
    """Line 2: SendEmail to an active recipient, queued (MAILGW_DISPATCH_WORKERS=0: accepting only) vs the echo."""
    request = tmp / "accepted.bin"
    request.write_bytes(send_request_bytes("reader@example.org"))
    echo, ours = [], []
    with process(["-m", "bench.peers", "echo-grpc", str(profile.concurrency)], {}) as (_, echo_port):
        env = NO_SES | {"MAILGW_GRPC_WORKERS": str(profile.concurrency), "MAILGW_DISPATCH_WORKERS": "0"}
        with gateway(f"sqlite:///{tmp}/accept.db", env) as (server, address):
            for _ in range(profile.rounds):
                ours.append(load_server(server, address, request, profile, method=SEND_METHOD))
                echo.append(load("grpc", f"127.0.0.1:{echo_port}", request, profile, method=ECHO_METHOD))
    return grpc_rows("2 accepted SendEmail (queued) vs grpcio echo", ours, echo, ">= 0.5x", "<= 2x")


def raw_message(to: str) -> tuple[str, bytes]:
    """The payload the queue keeps for a typical message, and the raw MIME the dispatcher makes of it."""
    from gateway.sending.compose import compose, unsubscribe_url
    from gateway.sending.outgoing import outgoing_email

    email = outgoing_email(
        to=to,
        subject="Your receipt",
        text_body="Your receipt for order 1042.\n" * 20,
        html_body="",
        from_address="",
        reply_to="",
        tags={"category": "receipt"},
        default_from="Bench <bench@example.com>",
    )
    return email.to_payload(), compose(email, unsubscribe_url("https://mail.example.com", "x" * 22))


def fill_queue(url: str, count: int) -> None:
    """`count` queued messages to `count` active contacts, due now, written as SendEmail would have (one statement
    each for the contacts and the messages)."""
    from gateway.core.ids import new_message_id
    from gateway.store.database import utcnow
    from gateway.store.models import Contact, Message, database, insert_missing_lanes, open_database

    open_database(url)
    payloads = [raw_message(f"reader{i}@example.org")[0] for i in range(count)]
    now = utcnow()
    with database.connection_context(), database.atomic():
        Message.delete().execute()
        Contact.delete().execute()
        Contact.insert_many(
            [{"contact_id": f"c{i:021d}", "email": f"reader{i}@example.org"} for i in range(count)]
        ).execute()
        ids = dict(Contact.select(Contact.email, Contact.id).tuples())
        rows = [
            {
                "message_id": new_message_id(),
                "contact": ids[f"reader{i}@example.org"],
                "payload": payloads[i],
                "due_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        for start in range(0, count, 500):
            Message.insert_many(rows[start : start + 500]).execute()
        insert_missing_lanes(database)  # one line, one lane: as SendEmail's first message would have made it
    database.close_all()


def arrivals(ses_url: str) -> list[float]:
    request = urllib.request.Request(f"{ses_url}/_bench/arrivals", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def dispatch(profile: Profile, tmp: Path) -> list[Row]:
    """Line 3 (and 6): messages delivered per second from a full queue to an SES stand-in that answers at once, vs a
    bare loop of boto3 send_email with the same raw message and as many threads; CPU per message for both."""
    url = f"sqlite:///{tmp}/dispatch.db"
    to = "reader0@example.org"
    bare_call = tmp / "send_email.json"
    bare_call.write_text(
        json.dumps(
            {
                "FromEmailAddress": "bench@example.com",
                "Destination": {"ToAddresses": [to]},
                "Content": {"Raw": {"Data": raw_message(to)[1].decode()}},
                "ConfigurationSetName": "my-leads-now-config",
                "EmailTags": [{"Name": "category", "Value": "receipt"}, {"Name": "contact_id", "Value": "x" * 22}],
            }
        )
    )
    workers = profile.dispatch_workers
    ours, cpu_ours, bare, rss = [], [], [], []
    with ExitStack() as stack:
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env = UNPACED | {"AWS_ENDPOINT_URL_SESV2": ses_url, "MAILGW_DISPATCH_WORKERS": str(workers)}
        for _ in range(profile.rounds):
            fill_queue(url, 0)
            with gateway(url, env) as (server, _address):
                arrivals(ses_url)
                before = cpu_seconds(server.pid)
                fill_queue(url, profile.dispatch_messages)
                times = wait_for_arrivals(ses_url, profile.dispatch_messages)
                spent = cpu_seconds(server.pid) - before
                rss.append(peak_rss_mb(server.pid))
            ours.append((len(times) - 1) / (times[-1] - times[0]))
            cpu_ours.append(spent * 1000 / len(times))
            bare.append(load("boto3", ses_url, bare_call, profile, concurrency=workers))
    name = f"3 dispatch from a full queue vs bare boto3 send_email ({workers} threads)"
    return [
        Row(name, "throughput", "msg/s", ours, [r["rps"] for r in bare], ">= 0.85x"),
        Row(name, "CPU per message", "ms", cpu_ours, [r["cpu_ms_per_call"] for r in bare]),
        Row("6 gateway peak RSS under the dispatch load", "peak RSS", "MB", [max(rss)], target="<= 150"),
    ]


def wait_for_arrivals(ses_url: str, count: int, timeout: float = 120.0) -> list[float]:
    times: list[float] = []
    deadline = time.monotonic() + timeout
    while len(times) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(times)} of {count} messages reached the SES stand-in")
        time.sleep(0.05)
        times += arrivals(ses_url)
    return sorted(times)


def sns_ingest(profile: Profile, tmp: Path) -> list[Row]:
    """Line 4: signed bounces through POST /sns (certificate cached, SQLite) vs a bare JSON-parsing handler."""
    from support import ses_samples
    from support.sns_signing import TOPIC_ARN, SigningCertificate, signed_envelope

    signer = SigningCertificate()
    pem = tmp / "sns.pem"
    pem.write_bytes(signer.pem)
    ours, bare = [], []
    with ExitStack() as stack:
        _, cert_port = stack.enter_context(process(["-m", "bench.peers", "cert-host", str(pem)], {}))
        _, echo_port = stack.enter_context(process(["-m", "bench.peers", "echo-http"], {}))
        port = free_port()
        env = {
            "MAILGW_DATABASE_URL": f"sqlite:///{tmp}/sns.db",
            "MAILGW_HTTP_ADDR": f"127.0.0.1:{port}",
            "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
            "AWS_ENDPOINT_URL_SNS": f"http://127.0.0.1:{cert_port}",
            "MAILGW_LOG_LEVEL": "WARNING",
        }
        healthz = f"http://127.0.0.1:{port}/healthz"
        stack.enter_context(
            process(["-m", "feedback_http"], env, ready=lambda: urllib.request.urlopen(healthz, timeout=1))
        )
        for round_ in range(profile.rounds + 1):  # round 0 warms the certificate cache and is not counted
            count = 1 if round_ == 0 else profile.sns_messages
            bodies = tmp / "sns.jsonl"
            with bodies.open("w") as out:
                for i in range(count):
                    event = ses_samples.bounce_event(
                        "Permanent", "General", [ses_samples.bounced_recipient(f"r{round_}-{i}@example.org")]
                    )
                    out.write(json.dumps(signed_envelope(signer, message=ses_samples.message(event))) + "\n")
            options = {"concurrency": profile.sns_concurrency}
            result = load("http", f"http://127.0.0.1:{port}/sns", bodies, profile, **options)
            baseline = load("http", f"http://127.0.0.1:{echo_port}/sns", bodies, profile, **options)
            if round_:
                ours.append(result)
                bare.append(baseline)
    name = f"4 SNS ingest vs bare aiohttp JSON handler (concurrency {profile.sns_concurrency})"
    return [
        Row(name, "throughput", "msg/s", [r["rps"] for r in ours], [r["rps"] for r in bare], ">= 0.2x"),
        Row(name, "throughput (absolute)", "msg/s", [r["rps"] for r in ours], target=">= 1,000"),
        Row(name, "p99 latency", "ms", [r["p99_ms"] for r in ours], [r["p99_ms"] for r in bare]),
    ]


def scale(profile: Profile, tmp: Path) -> list[Row]:
    """Line 5: the guard's lookup with few vs many contacts, and a claim from a queue holding many settled messages
    vs an empty one; SQLite and PostgreSQL."""
    rows = []
    small, large = profile.scale_sizes
    for backend, url in (("SQLite", f"sqlite:///{tmp}/scale.db"), ("PostgreSQL", bench_postgres_url())):
        lookups = {size: [] for size in profile.scale_sizes}
        claims = {0: [], large: []}
        for size in profile.scale_sizes:
            fill_contacts(url, size)
            for _ in range(profile.rounds):
                lookups[size].append(guard_lookup_ms(url, size, profile.scale_lookups))
        for settled in claims:
            fill_settled(url, settled)
            for _ in range(profile.rounds):
                claims[settled].append(claim_ms(url, profile.claims))
        rows.append(
            Row(f"5 guard lookup, {large:,} vs {small:,} contacts ({backend})", "median lookup", "ms",
                lookups[large], lookups[small], "<= 1.2x")
        )  # fmt: skip
        rows.append(
            Row(f"5 claim, {large:,} settled messages vs none ({backend})", "median claim", "ms",
                claims[large], claims[0], "<= 1.2x")
        )  # fmt: skip
        # The reputation guard's window (bench/reputation.py): the newest `small` sends, over a table of `large`.
        windows = reputation_window(url, large, profile.rounds, max(5, profile.claims // 20), window=small)
        rows.append(
            Row(f"5 reputation window of {small:,} sends, {large:,} settled messages vs one window's ({backend})",
                "median query", "ms", *windows, "<= 1.5x")
        )  # fmt: skip
    return rows


def fill_contacts(url: str, size: int) -> None:
    """`size` active contacts user<i>@example.org, inserted by the database itself (seconds for a million)."""
    from gateway.store.models import MODELS, database, open_database

    db = open_database(url)
    with db.connection_context():
        db.drop_tables(MODELS)
        db.create_tables(MODELS)
        if url.startswith("sqlite"):
            db.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO contact (contact_id, email, status, reason, soft_bounces, created_at, updated_at) "
                "SELECT printf('c%021d', i), 'user' || i || '@example.org', 'active', '', 0, "
                "datetime('now'), datetime('now') FROM n",
                (size,),
            )
        else:
            db.execute_sql(
                "INSERT INTO contact (contact_id, email, status, reason, soft_bounces, created_at, updated_at) "
                "SELECT 'c' || lpad(i::text, 21, '0'), 'user' || i || '@example.org', 'active', '', 0, now(), now() "
                "FROM generate_series(1, %s) AS i",
                (size,),
            )
        db.execute_sql("ANALYZE")
    database.close_all()


def fill_settled(url: str, count: int) -> None:
    """`count` settled (sent) messages to user1 in the queue table, besides nothing queued."""
    from gateway.store.models import Message, database, open_database

    db = open_database(url)
    with db.connection_context():
        Message.delete().execute()
        if url.startswith("sqlite"):
            db.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO message (message_id, contact_id, caller, state, attempts, resends, due_at, "
                "error_reason, error_code, error_detail, created_at, updated_at, settled_at) "
                "SELECT 'settled-' || i, 1, '', 'sent', 1, 0, datetime('now'), '', '', '', datetime('now'), "
                "datetime('now'), datetime('now') FROM n",
                (count,),
            )
        elif count:
            db.execute_sql(
                "INSERT INTO message (message_id, contact_id, caller, state, attempts, resends, due_at, "
                "error_reason, error_code, error_detail, created_at, updated_at, settled_at) "
                "SELECT 'settled-' || i, 1, '', 'sent', 1, 0, now(), '', '', '', now(), now(), now() "
                "FROM generate_series(1, %s) AS i",
                (count,),
            )
        db.execute_sql("ANALYZE")
    database.close_all()


def guard_lookup_ms(url: str, size: int, lookups: int) -> float:
    """Median latency of guard.admit for random existing recipients, on one pooled connection."""
    from gateway.sending import guard
    from gateway.store.models import database, open_database

    open_database(url)
    keys = [f"user{random.randint(1, size)}@example.org" for _ in range(lookups)]
    timings = []
    with database.connection_context():
        for key in keys:
            started = time.perf_counter()
            guard.admit(key)
            timings.append(time.perf_counter() - started)
    database.close_all()
    return statistics.median(timings) * 1000


def claim_ms(url: str, claims: int) -> float:
    """Median latency of claiming a batch of 16 due messages (then giving them back), on one pooled connection."""
    from gateway.sending.order import Order
    from gateway.store import queue
    from gateway.store.models import Message, database, open_database

    open_database(url)
    timings = []
    with database.connection_context():
        payload = raw_message("user1@example.org")[0]
        for _ in range(16):
            queue.enqueue(contact_pk=1, caller="", request_id=None, request_hash=None, payload=payload)
        for _ in range(claims):
            started = time.perf_counter()
            claimed = Order(lambda caller: 1.0).claim(16, lease_seconds=60, worker="bench")
            timings.append(time.perf_counter() - started)
            queue.release([message.pk for message in claimed])
        Message.delete().where(Message.state == "queued").execute()
    database.close_all()
    return statistics.median(timings) * 1000


LINES = {
    "guard": guard_blocked,
    "accept": accepted_send,
    "dispatch": dispatch,
    "sns": sns_ingest,
    "scale": scale,
    "lanes": lanes,
    "events": events,
    "message": message,
}
