"""Lanes under a bulk backlog: two bulk callers of equal weight queue a backlog while `auth` sends one CRITICAL message
a second and `billing` two TRANSACTIONAL a second, all through real gateway processes at MAILGW_SEND_RATE to the SES
stand-in; on SQLite (one gateway) and on PostgreSQL (two gateways on one database). Then tenants: `stale` bounces
one send in ten (signed SNS notifications through the sidecar) beside `fresh`, which does not.

Measured at the stand-in over the timed window: accept-to-SES p99 per priority (SendEmail's return to the request's
arrival, one monotonic clock), each bulk caller's share of the bulk sends, the SES rate against the limit, and
messages sent twice. `python -m bench.lanes [--seconds N] [--backlog N]`; `make bench` runs it as line 7.
"""

import argparse
import collections
import json
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.harness import Profile, Row, bench_postgres_url, gateway, process, sidecar

RATE = 50.0
NAN = float("nan")
TOKENS = {name: f"{name}-bench-token-0123456789" for name in ("auth", "billing", "newsletter", "digest")}
POLICY = """
[callers.auth]
max_priority = "critical"
[callers.billing]
max_priority = "transactional"
[callers.newsletter]
max_priority = "bulk"
[callers.digest]
max_priority = "bulk"
"""


def sends(ses_url: str) -> list[dict]:
    with urllib.request.urlopen(f"{ses_url}/_bench/sends", timeout=30) as response:
        return json.loads(response.read())


def emptied_postgres(url: str) -> None:
    import psycopg2

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


def run(database_url: str, gateways: int, *, seconds: float, backlog: int, tmp: Path) -> dict:
    """One run: the figures of the timed window."""
    import grpc

    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc

    policy = tmp / "callers.toml"
    policy.write_text(POLICY)
    env = {
        "MAILGW_SEND_RATE": str(RATE),
        "MAILGW_AUTH_TOKENS": ",".join(f"{name}={token}" for name, token in TOKENS.items()),
        "MAILGW_CALLER_POLICY_FILE": str(policy),
        "MAILGW_DISPATCH_WORKERS": "8",
    }
    accepted: dict[str, float] = {}  # message id -> when SendEmail returned
    asked: dict[str, tuple[str, int]] = {}  # message id -> (caller, the priority it asked for)
    with ExitStack() as stack:
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env["AWS_ENDPOINT_URL_SESV2"] = ses_url
        addresses = [stack.enter_context(gateway(database_url, env))[1] for _ in range(gateways)]
        channels = [stack.enter_context(grpc.insecure_channel(address)) for address in addresses]
        stubs = [pb_grpc.MailGatewayServiceStub(channel) for channel in channels]

        def send(caller: str, number: int, priority: int) -> None:
            request = pb.SendEmailRequest(
                to=f"{caller}{number}@example.org",
                subject="Bench",
                text_body="Hello",
                priority=priority,
                tags={"caller": caller},
            )
            stub = stubs[number % len(stubs)]
            answer = stub.SendEmail(request, metadata=[("authorization", f"Bearer {TOKENS[caller]}")], timeout=30)
            accepted[answer.message_id] = time.monotonic()
            asked[answer.message_id] = (caller, priority)

        def queue_backlog(caller: str) -> None:
            for number in range(backlog):
                send(caller, number, pb.PRIORITY_BULK)

        fillers = [threading.Thread(target=queue_backlog, args=(caller,)) for caller in ("newsletter", "digest")]
        for filler in fillers:
            filler.start()
        for filler in fillers:
            filler.join()

        started = time.monotonic()

        def steady(caller: str, per_second: int, priority: int) -> None:
            for tick in range(int(seconds * per_second)):
                due = started + tick / per_second
                time.sleep(max(0.0, due - time.monotonic()))
                send(caller, tick, priority)

        senders = [
            threading.Thread(target=steady, args=("auth", 1, pb.PRIORITY_CRITICAL)),
            threading.Thread(target=steady, args=("billing", 2, pb.PRIORITY_TRANSACTIONAL)),
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        time.sleep(3)  # the last critical and transactional messages reach SES
        ended = started + seconds
        arrived = sends(ses_url)

    counts = collections.Counter(sent["tags"]["message_id"] for sent in arrived)
    latency = collections.defaultdict(list)
    window = [sent for sent in arrived if started <= sent["at"] < ended]
    bulk: collections.Counter = collections.Counter()
    for sent in arrived:
        message_id = sent["tags"]["message_id"]
        caller, priority = asked.get(message_id, ("?", 0))
        if priority == pb.PRIORITY_BULK:
            bulk[caller] += started <= sent["at"] < ended
        elif message_id in accepted:
            latency[pb.Priority.Name(priority)].append(sent["at"] - accepted[message_id])
    return {
        "critical_p99": percentile(latency["PRIORITY_CRITICAL"], 0.99),
        "transactional_p99": percentile(latency["PRIORITY_TRANSACTIONAL"], 0.99),
        "critical_sent": len(latency["PRIORITY_CRITICAL"]),
        "transactional_sent": len(latency["PRIORITY_TRANSACTIONAL"]),
        "newsletter_share": bulk["newsletter"] / max(1, sum(bulk.values())),
        "digest_share": bulk["digest"] / max(1, sum(bulk.values())),
        "rate": len(window) / seconds,
        "sent_twice": sum(1 for count in counts.values() if count > 1),
    }


def tenants_run(database_url: str, gateways: int, *, after: float, deadline: float, tmp: Path) -> dict:
    """Tenant `fresh` sends 20 messages a second and `stale` 5, all transactional; one in ten of stale's sends
    bounces, as a signed SNS notification through the sidecar. When stale was paused, and what the account's bounce
    rate was then; fresh's rate before the pause and over `after` seconds from one second after it. Sending stops
    `after` + 1 seconds past the pause, or at `deadline` seconds if stale was never paused (then the ratio is NaN)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
    from support import ses_samples
    from support.sns_signing import SigningCertificate, signed_envelope

    signer = SigningCertificate()
    pem = tmp / "sns.pem"
    pem.write_bytes(signer.pem)
    env = {
        "MAILGW_SEND_RATE": str(RATE),
        "MAILGW_DISPATCH_WORKERS": "8",
        "MAILGW_REPUTATION_CHECK_SECONDS": "1",
        "MAILGW_REPUTATION_MIN_SENDS": "20",
        "MAILGW_TENANT_REPUTATION_MIN_SENDS": "20",
    }
    bounced: list[float] = []  # when each bounce was answered 200 by the sidecar
    with ExitStack() as stack:
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        _, cert_port = stack.enter_context(process(["-m", "bench.peers", "cert-host", str(pem)], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env["AWS_ENDPOINT_URL_SESV2"] = ses_url
        addresses = [stack.enter_context(gateway(database_url, env))[1] for _ in range(gateways)]
        sidecar_url = stack.enter_context(sidecar(database_url, cert_port))
        channel = stack.enter_context(grpc.insecure_channel(addresses[0]))
        stubs = [pb_grpc.MailGatewayServiceStub(stack.enter_context(grpc.insecure_channel(a))) for a in addresses]
        health = health_pb2_grpc.HealthStub(channel)
        started = time.monotonic()
        paused_at: list[float] = []
        stop = threading.Event()

        def steady(tenant: str, per_second: int) -> None:
            tick = 0
            while not stop.wait(max(0.0, started + tick / per_second - time.monotonic())):
                tick += 1
                request = pb.SendEmailRequest(to=f"{tenant}{tick}@example.org", subject="Hi", text_body="x")
                request.tenant = tenant
                stubs[tick % len(stubs)].SendEmail(request, timeout=30)

        def bounce_one_in_ten() -> None:
            seen = 0
            while not stop.is_set():
                stale = [s for s in sends(ses_url) if s["tags"].get("tenant") == "stale"]
                for sent in stale[seen:]:
                    seen += 1
                    if seen % 10:
                        continue
                    tags = {"contact_id": sent["tags"]["contact_id"], "message_id": sent["tags"]["message_id"]}
                    address = f"stale{len(bounced)}@example.org"
                    event = ses_samples.bounce_event(
                        "Permanent",
                        "General",
                        [ses_samples.bounced_recipient(address)],
                        message_id=sent["ses_id"],
                        tags={name: [value] for name, value in tags.items()},
                    )
                    body = json.dumps(signed_envelope(signer, message=ses_samples.message(event))).encode()
                    request = urllib.request.Request(f"{sidecar_url}/sns", data=body, method="POST")
                    with urllib.request.urlopen(request, timeout=10):
                        bounced.append(time.monotonic())
                if not paused_at:
                    status = health.Check(health_pb2.HealthCheckRequest(service="mailgateway.v1.TenantReputation"))
                    if status.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        paused_at.append(time.monotonic())
                ends = paused_at[0] + 1 + after if paused_at else started + deadline
                if time.monotonic() >= ends:
                    stop.set()
                time.sleep(0.2)

        threads = [
            threading.Thread(target=steady, args=("fresh", 20)),
            threading.Thread(target=steady, args=("stale", 5)),
            threading.Thread(target=bounce_one_in_ten),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        arrived = sends(ses_url)

    paused = paused_at[0] if paused_at else float("inf")
    before_pause = [s for s in arrived if s["at"] < paused]
    bounces_by_then = sum(1 for at in bounced if at < paused)
    fresh = [s["at"] for s in arrived if s["tags"].get("tenant") == "fresh"]

    def rate(start: float, end: float) -> float:
        return sum(1 for t in fresh if start <= t < end) / max(1e-9, end - start)

    return {
        "paused_after_seconds": paused - started,
        "account_bounce_rate_at_pause": bounces_by_then / max(1, len(before_pause)),
        "stale_sent_after_pause": sum(1 for s in arrived if s["tags"].get("tenant") == "stale" and s["at"] > paused),
        "fresh_rate_ratio": rate(paused + 1, paused + 1 + after) / rate(started + 1, paused) if paused_at else NAN,
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rows(profile: Profile, tmp: Path) -> list[Row]:
    """Line 7, on both databases."""
    seconds = 60.0 if profile.rounds > 1 else 5.0
    backlog = 5000 if profile.rounds > 1 else 200
    results = []
    sqlite = run(f"sqlite:///{tmp}/lanes.db", 1, seconds=seconds, backlog=backlog, tmp=tmp)
    results.append(("SQLite, 1 gateway", sqlite))
    postgres_url = bench_postgres_url()
    emptied_postgres(postgres_url)
    results.append(("PostgreSQL, 2 gateways", run(postgres_url, 2, seconds=seconds, backlog=backlog, tmp=tmp)))
    after = 20.0 if profile.rounds > 1 else 4.0  # fresh's rate is measured over this long after stale's pause
    tenants = [("SQLite, 1 gateway", tenants_run(f"sqlite:///{tmp}/tenants.db", 1, after=after, deadline=60, tmp=tmp))]
    emptied_postgres(postgres_url)
    tenants.append(("PostgreSQL, 2 gateways", tenants_run(postgres_url, 2, after=after, deadline=60, tmp=tmp)))
    table = []
    for where, figures in results:
        line = f"7 lanes at {RATE:g}/s under a {2 * backlog:,}-message bulk backlog ({where})"
        table += [
            Row(line, "critical accept-to-SES p99", "s", [figures["critical_p99"]], target="<= 1"),
            Row(line, "transactional accept-to-SES p99", "s", [figures["transactional_p99"]], target="<= 2"),
            Row(line, "newsletter share of bulk (equal weights)", "", [figures["newsletter_share"]], target=">= 0.45"),
            Row(line, "digest share of bulk (equal weights)", "", [figures["digest_share"]], target=">= 0.45"),
            Row(line, "SES rate / limit, at least", "", [figures["rate"] / RATE], target=">= 0.95"),
            Row(line, "SES rate / limit, at most", "", [figures["rate"] / RATE], target="<= 1.05"),
            Row(line, "messages sent twice", "", [figures["sent_twice"]], target="<= 0"),
        ]
    for where, figures in tenants:
        line = f"7 tenants: stale bounces 10 %, fresh does not ({where})"
        table += [
            Row(line, "stale paused after", "s", [figures["paused_after_seconds"]], target="<= 12"),
            Row(line, "account bounce rate when stale paused", "", [figures["account_bounce_rate_at_pause"]],
                target="<= 0.04"),
            Row(line, "stale's messages sent after its pause", "", [figures["stale_sent_after_pause"]], target="<= 0"),
            Row(line, "fresh's rate after stale's pause / before", "", [figures["fresh_rate_ratio"]], target=">= 0.95"),
        ]  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lanes", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--backlog", type=int, default=5000, help="BULK messages each of the two bulk callers queues")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL with two gateways (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgw-lanes-") as tmp:
        if args.postgres:
            url = bench_postgres_url()
            emptied_postgres(url)
            figures = run(url, 2, seconds=args.seconds, backlog=args.backlog, tmp=Path(tmp))
        else:
            figures = run(f"sqlite:///{tmp}/lanes.db", 1, seconds=args.seconds, backlog=args.backlog, tmp=Path(tmp))
    print(json.dumps(figures, indent=2))
    with tempfile.TemporaryDirectory(prefix="mailgw-lanes-") as tmp:
        url = f"sqlite:///{tmp}/tenants.db"
        print(json.dumps(tenants_run(url, 1, after=args.seconds / 2, deadline=args.seconds, tmp=Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
