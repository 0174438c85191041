"""Runs each benchmark line, pairing our path with its baseline round by round in one run; prints one table.

Every server and load generator is its own process (a GIL each). A line's ratio is the median of the
per-round ratios ours/baseline, so drift on a busy machine hits both sides of a pair alike.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from bench.harness import ROOT, SMOKE, Profile, Row
from bench.lines import LINES


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
