"""Load generators, each run as its own process so client and server never share a GIL.

`python -m bench.load grpc|boto3|http --target … --input FILE --concurrency N --duration S` prints one JSON
object: calls, seconds, rps, p50_ms, p99_ms, cpu_ms_per_call (this client's own CPU), unexpected (failures).
"""

import argparse
import asyncio
import json
import resource
import threading
import time


def summary(latencies: list[float], seconds: float, cpu_seconds: float, unexpected: int) -> dict:
    latencies.sort()
    calls = len(latencies)

    def pct(p):
        return latencies[min(calls - 1, int(p * calls))] * 1000 if calls else 0.0

    return {
        "calls": calls,
        "seconds": seconds,
        "rps": calls / seconds if seconds else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "cpu_ms_per_call": cpu_seconds * 1000 / calls if calls else 0.0,
        "unexpected": unexpected,
    }


def cpu_time() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def grpc_load(target, method, request, expect, concurrency, duration, warmup, channels) -> dict:
    """`channels` separate connections (as from several client services), so SO_REUSEPORT can spread them."""
    import grpc

    options = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    calls = [channel.unary_unary(method) for channel in opened]
    try:
        latencies: list[float] = []
        unexpected = 0
        stop = 0.0

        async def worker(call, measure: bool):
            nonlocal unexpected
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    await call(request, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as err:
                    code = err.code().name
                if measure:
                    latencies.append(time.perf_counter() - started)
                    unexpected += code != expect

        stop = time.perf_counter() + warmup
        await asyncio.gather(*(worker(calls[i % channels], False) for i in range(concurrency)))
        cpu, started = cpu_time(), time.perf_counter()
        stop = started + duration
        await asyncio.gather(*(worker(calls[i % channels], True) for i in range(concurrency)))
        return summary(latencies, time.perf_counter() - started, cpu_time() - cpu, unexpected)
    finally:
        for channel in opened:
            await channel.close()


def boto3_load(endpoint, raw, concurrency, duration, warmup) -> dict:
    """The bare baseline of the full send path: boto3 sesv2 send_email in a loop, one shared client."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(region_name="us-east-1").client(
        "sesv2", endpoint_url=endpoint, config=Config(max_pool_connections=concurrency)
    )
    message = json.loads(raw)
    latencies: list[float] = []
    unexpected = [0]
    stop = [0.0]

    def worker(measure: bool):
        while time.perf_counter() < stop[0]:
            started = time.perf_counter()
            try:
                client.send_email(**message)
            except Exception:
                unexpected[0] += 1
            if measure:
                latencies.append(time.perf_counter() - started)

    def phase(seconds: float, measure: bool):
        stop[0] = time.perf_counter() + seconds
        threads = [threading.Thread(target=worker, args=(measure,)) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    phase(warmup, False)
    cpu, started = cpu_time(), time.perf_counter()
    phase(duration, True)
    return summary(latencies, time.perf_counter() - started, cpu_time() - cpu, unexpected[0])


async def http_load(url, bodies, concurrency) -> dict:
    """POSTs every body once (SNS style, text/plain), `concurrency` at a time; 200 is expected."""
    import aiohttp

    latencies: list[float] = []
    unexpected = 0
    queue = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker():
            nonlocal unexpected
            for body in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
                    await response.read()
                    unexpected += response.status != 200
                latencies.append(time.perf_counter() - started)

        cpu, started = cpu_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return summary(latencies, time.perf_counter() - started, cpu_time() - cpu, unexpected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["grpc", "boto3", "http"])
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--input", required=True, help="request bytes (grpc), send_email JSON (boto3), JSON lines (http)"
    )
    parser.add_argument("--method", default="")
    parser.add_argument("--expect", default="OK")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    data = open(args.input, "rb").read()
    if args.kind == "grpc":
        result = asyncio.run(
            grpc_load(
                args.target, args.method, data, args.expect, args.concurrency, args.duration, args.warmup, args.channels
            )
        )
    elif args.kind == "boto3":
        result = boto3_load(args.target, data, args.concurrency, args.duration, args.warmup)
    else:
        result = asyncio.run(http_load(args.target, data.splitlines(), args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
