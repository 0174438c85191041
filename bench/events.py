"""Line 8, events back to the callers.

Lag: messages sent through the last gateway, then their hard bounces posted as signed SNS notifications to the
sidecar (its own process) one after another; a WatchEvents stream on the first gateway (another process) notes when
each BOUNCED record arrives. The lag is that arrival against the moment the sidecar answered 200 (after its commit),
on one monotonic clock; on SQLite (one gateway) and on PostgreSQL (two gateways on one database). The same BOUNCED
records reach a webhook receiver on loopback (MAILGW_WEBHOOK_URLS, every gateway configured, one delivering): its
lag is the POST's arrival against the same moment.

Load: 1,000 records a second written into the event log (ten callers, a hundred each) while each caller watches
with one stream; the gateway's resident memory after the first ten seconds and at the end, and the records the
watchers received per second. `python -m bench.events [--seconds N]`.
"""

import argparse
import json
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.harness import Profile, Row, bench_postgres_url, gateway, process, sidecar
from bench.lanes import emptied_postgres, percentile, sends

CALLERS = [f"caller{n}" for n in range(10)]
TOKENS = {name: f"{name}-bench-token-0123456789" for name in CALLERS}
LOAD_RATE = 1000  # records a second, all callers together
LAG_CALLER, LAG_TOKEN, WEBHOOK_SECRET = "bench", "bench-token-0123456789", "bench-webhook-secret-0123456789"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lag_run(database_url: str, gateways: int, *, count: int, tmp: Path) -> dict:
    import grpc

    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
    from support import ses_samples
    from support.processes import wait_until
    from support.sns_signing import SigningCertificate, signed_envelope
    from support.webhook_receiver import Receiver

    signer = SigningCertificate()
    pem = tmp / "sns.pem"
    pem.write_bytes(signer.pem)
    arrived: dict[str, float] = {}
    done: dict[str, float] = {}
    receiver = Receiver().start()
    credentials = [("authorization", f"Bearer {LAG_TOKEN}")]
    with ExitStack() as stack:
        stack.callback(receiver.stop)
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        _, cert_port = stack.enter_context(process(["-m", "bench.peers", "cert-host", str(pem)], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env = {"AWS_ENDPOINT_URL_SESV2": ses_url, "MAILGW_SEND_RATE": "500"}
        env |= {
            "MAILGW_AUTH_TOKENS": f"{LAG_CALLER}={LAG_TOKEN}",
            "MAILGW_WEBHOOK_URLS": f"{LAG_CALLER}={receiver.url}",
            "MAILGW_WEBHOOK_SECRETS": f"{LAG_CALLER}={WEBHOOK_SECRET}",
        }
        addresses = [stack.enter_context(gateway(database_url, env))[1] for _ in range(gateways)]
        sidecar_url = stack.enter_context(sidecar(database_url, cert_port))
        watcher = pb_grpc.MailGatewayServiceStub(stack.enter_context(grpc.insecure_channel(addresses[0])))
        sender = pb_grpc.MailGatewayServiceStub(stack.enter_context(grpc.insecure_channel(addresses[-1])))
        for n in range(count):
            request = pb.SendEmailRequest(to=f"r{n}@example.org", subject="Hi", text_body="x")
            sender.SendEmail(request, metadata=credentials, timeout=30)
        wait_until(lambda: len(sends(ses_url)) >= count, timeout=60)
        stream = watcher.WatchEvents(
            pb.WatchEventsRequest(types=[pb.EVENT_TYPE_BOUNCED]), metadata=credentials, timeout=600
        )
        next(stream)  # caught up

        def watch() -> None:
            try:
                for event in stream:
                    if event.type == pb.EVENT_TYPE_BOUNCED:
                        arrived[event.message_id] = time.monotonic()
            except grpc.RpcError:
                pass  # cancelled at the end

        reader = threading.Thread(target=watch)
        reader.start()
        for sent in sends(ses_url):
            tags = {"contact_id": sent["tags"]["contact_id"], "message_id": sent["tags"]["message_id"]}
            event = ses_samples.bounce_event(
                "Permanent",
                "General",
                [ses_samples.bounced_recipient(f"r{len(done)}@example.org")],
                message_id=sent["ses_id"],
                tags={name: [value] for name, value in tags.items()},
            )
            body = json.dumps(signed_envelope(signer, message=ses_samples.message(event))).encode()
            request = urllib.request.Request(f"{sidecar_url}/sns", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=10):
                done[tags["message_id"]] = time.monotonic()
            time.sleep(0.02)  # 50 a second: one bounce's lag, not a queue's
        wait_until(lambda: len(arrived) >= len(done), timeout=30)
        wait_until(lambda: len(posted(receiver)) >= len(done), timeout=30)
        stream.cancel()
        reader.join(10)
    lags = [arrived[m] - at for m, at in done.items() if m in arrived]
    hooked = posted(receiver)
    webhook_lags = [hooked[m] - at for m, at in done.items() if m in hooked]
    return {
        "p50_ms": percentile(lags, 0.5) * 1000,
        "p99_ms": percentile(lags, 0.99) * 1000,
        "events": len(lags),
        "webhook_p50_ms": percentile(webhook_lags, 0.5) * 1000,
        "webhook_p99_ms": percentile(webhook_lags, 0.99) * 1000,
        "webhook_events": len(webhook_lags),
    }


def posted(receiver) -> dict[str, float]:
    """When each message's BOUNCED record first reached the receiver in an acknowledged POST."""
    first: dict[str, float] = {}
    for post in list(receiver.posts):
        for event in post.events if 200 <= post.status < 300 else ():
            if event["type"] == "EVENT_TYPE_BOUNCED":
                first.setdefault(event["messageId"], post.arrived)
    return first


def load_run(database_url: str, *, seconds: float) -> dict:
    """Records written straight into the log at LOAD_RATE (what the gateway and the sidecar would append), ten
    streams reading them; the gateway's RSS after 10 s (or a fifth of the run) and at the end."""
    import grpc

    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
    from gateway.store.database import database, unit_of_work, utcnow
    from gateway.store.models import EventRecord, open_database

    received = dict.fromkeys(CALLERS, 0)
    env = {"MAILGW_AUTH_TOKENS": ",".join(f"{n}={t}" for n, t in TOKENS.items()), "MAILGW_DISPATCH_WORKERS": "0"}
    env |= {"MAILGW_GRPC_WORKERS": "24", "MAILGW_MAX_WATCHERS": "12"}
    with ExitStack() as stack:
        child, address = stack.enter_context(gateway(database_url, env))
        stub = pb_grpc.MailGatewayServiceStub(stack.enter_context(grpc.insecure_channel(address)))
        streams = []
        for name in CALLERS:
            stream = stub.WatchEvents(pb.WatchEventsRequest(), metadata=[("authorization", f"Bearer {TOKENS[name]}")])
            next(stream)
            streams.append((name, stream))

        def read(name: str, stream) -> None:
            try:
                for event in stream:
                    received[name] += event.type != pb.EVENT_TYPE_UNSPECIFIED
            except grpc.RpcError:
                pass

        readers = [threading.Thread(target=read, args=pair) for pair in streams]
        for reader in readers:
            reader.start()
        open_database(database_url, existing=True)
        started, written, settle = time.monotonic(), 0, min(10.0, seconds / 5)
        first_rss = None
        while time.monotonic() < started + seconds:
            tick = time.monotonic()
            rows = [
                {"caller": CALLERS[(written + n) % len(CALLERS)], "type": "delivered", "message_id": f"m{written + n}"}
                for n in range(LOAD_RATE // 10)
            ]
            with unit_of_work(), database.atomic():
                EventRecord.insert_many([row | {"time": utcnow(), "created_at": utcnow()} for row in rows]).execute()
            written += len(rows)
            if first_rss is None and tick >= started + settle:
                first_rss = rss_mb(child.pid)
                counted_from, received_then = tick, sum(received.values())
            time.sleep(max(0.0, tick + 0.1 - time.monotonic()))
        ended = time.monotonic()
        last_rss = rss_mb(child.pid)
        received_at_end = sum(received.values())
        for _, stream in streams:
            stream.cancel()
        for reader in readers:
            reader.join(10)
        database.close_all()
    return {
        "rss_growth": last_rss / first_rss,
        "rss_mb": last_rss,
        "delivered_per_second": (received_at_end - received_then) / (ended - counted_from),
        "written": written,
    }


def backlog_run(database_url: str, *, count: int, failures: int = 5) -> dict:
    """A caller's webhook endpoint answers 503 `failures` times (5: until the gateway has paused it, ~15 s at
    production timings), while `count` records wait; then 200: how long after that the whole backlog was
    acknowledged (the next try, as the backoff allows, then batches of 100 back to back)."""
    from gateway.store.database import database, unit_of_work, utcnow
    from gateway.store.models import EventRecord, WebhookCursor, open_database
    from support.processes import wait_until
    from support.webhook_receiver import Receiver

    receiver = Receiver(otherwise=503).start()
    env = {
        "MAILGW_AUTH_TOKENS": f"{LAG_CALLER}={LAG_TOKEN}",
        "MAILGW_WEBHOOK_URLS": f"{LAG_CALLER}={receiver.url}",
        "MAILGW_WEBHOOK_SECRETS": f"{LAG_CALLER}={WEBHOOK_SECRET}",
        "MAILGW_DISPATCH_WORKERS": "0",
    }
    try:
        with gateway(database_url, env):
            open_database(database_url, existing=True)

            def taken() -> bool:
                with unit_of_work():
                    return WebhookCursor.select().where(WebhookCursor.caller == LAG_CALLER).exists()

            wait_until(taken, timeout=30)
            with unit_of_work(), database.atomic():
                rows = [
                    {"caller": LAG_CALLER, "type": "delivered", "message_id": f"m{n}", "time": utcnow()}
                    | {"created_at": utcnow()}
                    for n in range(count)
                ]
                for start in range(0, count, 1000):
                    EventRecord.insert_many(rows[start : start + 1000]).execute()
            wait_until(lambda: len(receiver.posts) >= failures, timeout=60)
            receiver.otherwise = 200
            back = time.monotonic()
            wait_until(lambda: len(receiver.acknowledged()) >= count, timeout=120, interval=0.2)
            done = max(post.arrived for post in receiver.posts)
            database.close_all()
    finally:
        receiver.stop()
    return {"seconds": done - back, "records": len(receiver.acknowledged()), "posts": len(receiver.posts)}


def rows(profile: Profile, tmp: Path) -> list[Row]:
    """Line 8, on both databases."""
    count = 200 if profile.rounds > 1 else 20
    seconds = 60.0 if profile.rounds > 1 else 5.0
    postgres_url = bench_postgres_url()
    lags = [("SQLite, 1 gateway", lag_run(f"sqlite:///{tmp}/events.db", 1, count=count, tmp=tmp))]
    emptied_postgres(postgres_url)
    lags.append(("PostgreSQL, 2 gateways", lag_run(postgres_url, 2, count=count, tmp=tmp)))
    load = load_run(f"sqlite:///{tmp}/events-load.db", seconds=seconds)
    backlog_count, failures = (10_000, 5) if profile.rounds > 1 else (500, 2)
    backlog = backlog_run(f"sqlite:///{tmp}/events-backlog.db", count=backlog_count, failures=failures)
    table = []
    for where, figures in lags:
        line = f"8 event lag, the sidecar's commit to a watcher on another gateway process ({where})"
        table += [
            Row(line, "p50 lag", "ms", [figures["p50_ms"]]),
            Row(line, "p99 lag", "ms", [figures["p99_ms"]], target="<= 500"),
        ]
    for where, figures in lags:
        line = f"8 webhook lag, the sidecar's commit to a signed POST's arrival at a loopback receiver ({where})"
        table += [
            Row(line, "p50 lag", "ms", [figures["webhook_p50_ms"]]),
            Row(line, "p99 lag", "ms", [figures["webhook_p99_ms"]], target="<= 1000"),
        ]
    line = f"8 webhook backlog of {backlog_count:,} records, the endpoint back after {failures} failures (SQLite)"
    table.append(Row(line, "all acknowledged after its return", "s", [backlog["seconds"]], target="<= 60"))
    line = f"8 event stream, {LOAD_RATE:,} records/s to 10 watchers for {seconds:g} s (SQLite)"
    delivered = f">= {LOAD_RATE * 0.95:g}"
    table += [
        Row(line, "gateway RSS at the end / after warm-up", "", [load["rss_growth"]], target="<= 1.1"),
        Row(line, "records delivered per second", "/s", [load["delivered_per_second"]], target=delivered),
    ]
    return table


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgw-events-") as tmp:
        print(json.dumps(lag_run(f"sqlite:///{tmp}/events.db", 1, count=args.count, tmp=Path(tmp)), indent=2))
        print(json.dumps(load_run(f"sqlite:///{tmp}/load.db", seconds=args.seconds), indent=2))


if __name__ == "__main__":
    main()
