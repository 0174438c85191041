"""What every benchmark line uses: the profile, table rows, child processes (servers, peers, load generators) and
the readings taken from /proc (CPU time, peak RSS)."""

import json
import os
import statistics
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from support.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
# A server where this user may create databases: the benchmarks use a database of their own, mailgw_bench.
POSTGRES_SERVER_URL = os.environ.get("MAILGW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DATABASE = "mailgw_bench"


@dataclass(frozen=True)
class Profile:
    rounds: int = 5
    duration: float = 3.0
    warmup: float = 0.5
    concurrency: int = 16
    dispatch_messages: int = 3000
    dispatch_workers: int = 16
    sns_messages: int = 3000
    sns_concurrency: int = 32
    scale_sizes: tuple[int, int] = (10_000, 1_000_000)
    scale_lookups: int = 5000
    claims: int = 400


SMOKE = Profile(
    rounds=1,
    duration=0.3,
    warmup=0.1,
    concurrency=4,
    dispatch_messages=40,
    dispatch_workers=4,
    sns_messages=20,
    sns_concurrency=4,
    scale_sizes=(500, 1000),
    scale_lookups=100,
    claims=20,
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
            wait_until(ready, child, timeout=30, interval=0.1)
        yield child, port
    finally:
        child.terminate()
        child.wait(30)


@contextmanager
def gateway(database_url: str, env: dict[str, str]):
    """`python -m gateway` on a free port with `env`; yields (Popen, address) once its health check answers."""
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
    with process(["-m", "gateway"], AWS_ENV | settings | env, ready=ready) as (child, _):
        yield child, address
    channel.close()


@contextmanager
def sidecar(database_url: str, cert_port: int):
    """`python -m feedback_http` on a free port, taking our test topic's notifications signed by the certificate the
    cert-host peer on `cert_port` serves; yields its base URL once /healthz answers."""
    from support.processes import free_port
    from support.sns_signing import TOPIC_ARN

    base = f"http://127.0.0.1:{free_port()}"
    settings = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_HTTP_ADDR": base.removeprefix("http://"),
        "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
        "AWS_ENDPOINT_URL_SNS": f"http://127.0.0.1:{cert_port}",
        "MAILGW_LOG_LEVEL": "WARNING",
    }
    ready = lambda: urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: E731
    with process(["-m", "feedback_http"], settings, ready=ready):
        yield base


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
    result = load("grpc", address, request, profile, **options)
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
