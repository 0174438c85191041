"""Runs each benchmark line, pairing our path with its baseline round by round in one run; prints one table.

Every server and load generator is its own process (a GIL each). A line's ratio is the median of the
per-round ratios ours/baseline, so drift on a busy machine hits both sides of a pair alike.
"""

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# A server where this user may create databases: the benchmarks use a database of their own, mailgw_bench.
POSTGRES_SERVER_URL = os.environ.get("MAILGW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DATABASE = "mailgw_bench"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
SUPPRESSED = "bounced@example.org"
SEND_METHOD = "/mailgateway.v1.MailGatewayService/SendEmail"


@dataclass(frozen=True)
class Profile:
    rounds: int = 5
    duration: float = 3.0
    warmup: float = 0.5
    concurrency: int = 16
    sns_messages: int = 3000
    sns_concurrency: int = 32
    scale_sizes: tuple[int, int] = (10_000, 1_000_000)
    scale_lookups: int = 5000


SMOKE = Profile(
    rounds=1,
    duration=0.3,
    warmup=0.1,
    concurrency=4,
    sns_messages=20,
    sns_concurrency=4,
    scale_sizes=(500, 1000),
    scale_lookups=100,
)


@dataclass
class Row:
    """One table line: our figures and the baseline's per round, and the target on their ratio (or on ours)."""

    line: str
    metric: str
    unit: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    notes: str = ""

    @property
    def ratios(self) -> list[float]:
        if not self.baseline:
            return []
        return [o / b for o, b in zip(self.ours, self.baseline, strict=True) if b]

    def met(self) -> bool | None:
        if not self.target:
            return None
        op, bound = self.target.split()
        value = statistics.median(self.ratios if bound.endswith("x") else self.ours)
        bound = float(bound.rstrip("x").replace(",", ""))
        return value >= bound if op == ">=" else value <= bound

    def as_dict(self) -> dict:
        return asdict(self) | {"ratio": median(self.ratios), "met": self.met()}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --- processes ---------------------------------------------------------------------------------------------


@contextmanager
def process(args: list[str], env: dict[str, str], ready=None):
    """A child `python …` with our environment plus `env`; yields (Popen, port) once it is ready."""
    child = subprocess.Popen([PY, *args], env=os.environ | env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = None
        if ready is None:  # a bench peer announces its port
            line = child.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"{args} did not start: {line!r}")
            port = int(line.split()[1])
        else:
            deadline = time.monotonic() + 30
            while not _ready(ready):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not become ready")
                time.sleep(0.1)
        yield child, port
    finally:
        child.terminate()
        child.wait(30)


def _ready(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gateway(database_url: str, env: dict[str, str]):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"127.0.0.1:{free_port()}"
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    settings = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": address,
        "MAILGW_DEFAULT_FROM": "Bench <bench@example.com>",
        "MAILGW_LOG_LEVEL": "WARNING",
    }
    ready = lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1)  # noqa: E731
    with process(["-m", "gateway"], AWS_ENV | env | settings, ready=ready) as (child, _):
        yield child, address
    channel.close()


def load(kind: str, target: str, input_path: Path, profile: Profile, **options) -> dict:
    args = [PY, "-m", "bench.load", kind, "--target", target, "--input", str(input_path)]
    args += ["--concurrency", str(options.pop("concurrency", profile.concurrency))]
    args += ["--duration", str(profile.duration), "--warmup", str(profile.warmup)]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    out = subprocess.run(args, cwd=ROOT, env=os.environ | AWS_ENV, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["unexpected"]:
        raise RuntimeError(f"{kind} load against {target}: {result['unexpected']} unexpected answers")
    return result


def load_server(server: subprocess.Popen, address: str, request: Path, profile: Profile, **options) -> dict:
    """gRPC load on the gateway's SendEmail, plus the CPU its processes (all threads) spent per call."""
    pids = process_tree(server.pid)
    before = sum(cpu_seconds(pid) for pid in pids)
    result = load("grpc", address, request, profile, method=SEND_METHOD, **options)
    spent = sum(cpu_seconds(pid) for pid in pids) - before
    return result | {"server_cpu_ms_per_call": spent * 1000 / max(1, result["calls"])}


def process_tree(pid: int) -> list[int]:
    """The process and its children (MAILGW_GRPC_PROCESSES copies)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the lines ---------------------------------------------------------------------------------------------


def send_request_bytes(to: str) -> bytes:
    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb

    body = "Your receipt for order 1042.\n" * 20  # about 600 bytes, a typical transactional mail
    request = pb.SendEmailRequest(to=to, subject="Your receipt", text_body=body, tags={"category": "receipt"})
    return request.SerializeToString()


def guard_blocked(profile: Profile, tmp: Path) -> list[Row]:
    """Line 1 (and 5): SendEmail to a suppressed recipient vs a bare grpcio echo; peak RSS of the gateway."""
    from gateway.store.contacts import change_status
    from gateway.store.models import ContactStatus, database, open_database

    url = f"sqlite:///{tmp}/guard.db"
    open_database(url)
    with database.connection_context():
        change_status(ContactStatus.BOUNCED, source="bench", email=SUPPRESSED)
    database.close_all()
    request = tmp / "blocked.bin"
    request.write_bytes(send_request_bytes(SUPPRESSED))
    echo, ours = [], {1: [], 2: []}
    rss = {}
    with process(["-m", "bench.peers", "echo-grpc", str(profile.concurrency)], {}) as (_, echo_port):
        for copies, results in ours.items():
            env = {"MAILGW_GRPC_WORKERS": str(profile.concurrency), "MAILGW_GRPC_PROCESSES": str(copies)}
            with gateway(url, env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) as (server, address):
                for _ in range(profile.rounds):
                    results.append(load_server(server, address, request, profile, expect="FAILED_PRECONDITION"))
                    if copies == 1:
                        echo_target = f"127.0.0.1:{echo_port}"
                        echo.append(load("grpc", echo_target, request, profile, method="/bench.v1.EchoService/Echo"))
                rss[copies] = max(peak_rss_mb(pid) for pid in process_tree(server.pid))
    rows = []
    for copies, results in ours.items():
        name = f"1 guard-blocked SendEmail, {copies} gateway process{'es' if copies > 1 else ''}, vs grpcio echo"
        rows += [
            Row(name, "throughput", "RPC/s", [r["rps"] for r in results], [r["rps"] for r in echo], ">= 0.75x"),
            Row(name, "p50 latency", "ms", [r["p50_ms"] for r in results], [r["p50_ms"] for r in echo]),
            Row(name, "p99 latency", "ms", [r["p99_ms"] for r in results], [r["p99_ms"] for r in echo], "<= 1.5x"),
            Row(name, "gateway CPU per call", "ms", [r["server_cpu_ms_per_call"] for r in results]),
        ]
    rows.append(Row("5 gateway peak RSS under load 1 (largest process)", "peak RSS", "MB", [rss[1]], target="<= 150"))
    return rows


def full_send(profile: Profile, tmp: Path) -> list[Row]:
    """Line 2: guard + compose + sesv2 send_email to a stand-in that answers at once vs bare boto3 calls."""
    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.sending.compose import compose, unsubscribe_url
    from gateway.sending.outgoing import outgoing_email

    to = "reader@example.org"
    request = tmp / "send.bin"
    request.write_bytes(send_request_bytes(to))
    parsed = pb.SendEmailRequest.FromString(request.read_bytes())
    email = outgoing_email(
        to=to,
        subject=parsed.subject,
        text_body=parsed.text_body,
        html_body="",
        from_address="",
        reply_to="",
        tags=dict(parsed.tags),
        default_from="Bench <bench@example.com>",
    )
    raw = compose(email, unsubscribe_url("https://mail.example.com", "x" * 22))
    bare_call = tmp / "send_email.json"
    bare_call.write_text(
        json.dumps(
            {
                "FromEmailAddress": "bench@example.com",
                "Destination": {"ToAddresses": [to]},
                "Content": {"Raw": {"Data": raw.decode()}},
                "ConfigurationSetName": "my-leads-now-config",
                "EmailTags": [{"Name": "category", "Value": "receipt"}, {"Name": "contact_id", "Value": "x" * 22}],
            }
        )
    )
    ours, bare = [], []
    with ExitStack() as stack:
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env = {"AWS_ENDPOINT_URL_SESV2": ses_url, "MAILGW_GRPC_WORKERS": str(profile.concurrency)}
        server, address = stack.enter_context(gateway(f"sqlite:///{tmp}/send.db", env))
        for _ in range(profile.rounds):
            ours.append(load_server(server, address, request, profile))
            bare.append(load("boto3", ses_url, bare_call, profile))
    name = f"2 full SendEmail vs bare boto3 send_email (concurrency {profile.concurrency})"
    return [
        Row(name, "throughput", "calls/s", [r["rps"] for r in ours], [r["rps"] for r in bare], ">= 0.85x"),
        Row(name, "p99 latency", "ms", [r["p99_ms"] for r in ours], [r["p99_ms"] for r in bare]),
        Row(
            name,
            "client CPU per call",
            "ms",
            [r["cpu_ms_per_call"] for r in ours],
            [r["cpu_ms_per_call"] for r in bare],
            notes="ours: the gRPC client; baseline: boto3 itself",
        ),
        Row(name, "gateway CPU per call", "ms", [r["server_cpu_ms_per_call"] for r in ours]),
    ]


def sns_ingest(profile: Profile, tmp: Path) -> list[Row]:
    """Line 3: signed bounces through POST /sns (certificate cached, SQLite) vs a bare JSON-parsing handler."""
    from tests import ses_samples
    from tests.sns_signing import TOPIC_ARN, SigningCertificate, signed_envelope

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
    name = f"3 SNS ingest vs bare aiohttp JSON handler (concurrency {profile.sns_concurrency})"
    return [
        Row(name, "throughput", "msg/s", [r["rps"] for r in ours], [r["rps"] for r in bare], ">= 0.2x"),
        Row(name, "throughput (absolute)", "msg/s", [r["rps"] for r in ours], target=">= 1,000"),
        Row(name, "p99 latency", "ms", [r["p99_ms"] for r in ours], [r["p99_ms"] for r in bare]),
    ]


def scale(profile: Profile, tmp: Path) -> list[Row]:
    """Line 4: the guard's lookup latency with few vs many contacts, SQLite and PostgreSQL."""
    rows = []
    small, large = profile.scale_sizes
    for backend, url in (("SQLite", f"sqlite:///{tmp}/scale.db"), ("PostgreSQL", bench_postgres_url())):
        latencies = {size: [] for size in profile.scale_sizes}
        for size in profile.scale_sizes:
            fill_contacts(url, size)
            for _ in range(profile.rounds):
                latencies[size].append(guard_lookup_ms(url, size, profile.scale_lookups))
        name = f"4 guard lookup, {large:,} vs {small:,} contacts ({backend})"
        rows.append(Row(name, "median lookup", "ms", latencies[large], latencies[small], "<= 1.2x"))
    return rows


def bench_postgres_url() -> str:
    """A database of the benchmarks' own (created when missing), so a benchmark never touches what tests use."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    connection = psycopg2.connect(POSTGRES_SERVER_URL)
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,))
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    connection.close()
    return urlunsplit(urlsplit(POSTGRES_SERVER_URL)._replace(path=f"/{BENCH_DATABASE}"))


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


# --- report ------------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    packages = ("grpcio", "boto3", "aiohttp", "peewee", "psycopg2-binary")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in packages},
    }


def fmt(values: list[float]) -> str:
    if not values:
        return ""
    mid = statistics.median(values)
    text = f"{mid:,.0f}" if mid >= 100 else f"{mid:.3g}"
    if len(values) > 1:
        text += f" ({min(values):.3g}-{max(values):.3g})" if mid < 100 else f" ({min(values):,.0f}-{max(values):,.0f})"
    return text


def table(rows: list[Row]) -> str:
    lines = ["| line | metric | ours | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met()]
        ratio = fmt(row.ratios) + "x" if row.ratios else ""
        unit = f" {row.unit}"
        baseline = fmt(row.baseline) + unit if row.baseline else ""
        lines.append(
            f"| {row.line} | {row.metric} | {fmt(row.ours)}{unit} | {baseline} | {ratio} | {row.target} | {met} |"
        )
    return "\n".join(lines)


LINES = {"guard": guard_blocked, "send": full_send, "sns": sns_ingest, "scale": scale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to prove the benchmarks still run")
    parser.add_argument("--only", choices=sorted(LINES), action="append", help="run only these lines")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"), help="where to write JSON")
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else Profile()
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mailgw-bench-") as tmp:
        for name in args.only or LINES:
            rows += LINES[name](profile, Path(tmp))
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "profile": asdict(profile),
        "seconds": round(time.monotonic() - started, 1),
        "rows": [row.as_dict() for row in rows],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    info = report["machine"]
    print(f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, Python {info['python']}, {info['platform']}")
    print(f"{profile.rounds} rounds of {profile.duration}s, median (min-max); {report['seconds']}s in all\n")
    print(table(rows))
    return 0
