"""Admission overhead: InProcessAdmission vs RedisAdmission (loopback) in one run.

Each operation is one ``reserve`` + one ``settle`` against a key and its tenant, both
with RPM, TPM and budget limits set (the most work admission ever does per request).
Rounds alternate which implementation goes first so noise on a shared machine hits
both. Prints reserve+settle per second and p50/p99 latency in µs at concurrency 1,
throughput at concurrency 32, and the Redis/in-process ratios.

    .venv/bin/python benchmarks/quota_overhead.py              # ~30 s, needs local Redis
    .venv/bin/python benchmarks/quota_overhead.py --scale 0.2  # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field

import uvloop
from redis.asyncio import Redis

from heshi.gateway.quota import Admission, InProcessAdmission, Limits, RedisAdmission, Scope

BIG = Limits(rpm=10**9, tpm=10**12, budget_tokens=10**15)  # never refuses: measure the cost
SCOPES = [Scope("key", "key_bench", BIG), Scope("tenant", "acme", BIG)]
RESERVED, USED = 1000, 600


@dataclass
class Result:
    """Samples of one implementation, across rounds."""

    latencies_us: list[float] = field(default_factory=list)
    serial_ops_per_s: list[float] = field(default_factory=list)
    concurrent_ops_per_s: list[float] = field(default_factory=list)


async def one_op(admission: Admission) -> None:
    """What the gateway does per admitted request."""
    reservation = await admission.reserve(SCOPES, RESERVED)
    await admission.settle(reservation, USED)


async def serial(admission: Admission, n: int, out: Result) -> None:
    """Concurrency 1: per-operation latency and operations per second."""
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await one_op(admission)
        out.latencies_us.append((time.perf_counter_ns() - t0) / 1000)
    out.serial_ops_per_s.append(n / (time.perf_counter() - start))


async def concurrent(admission: Admission, n: int, workers: int, out: Result) -> None:
    """``workers`` tasks each doing ``n // workers`` operations back to back."""

    async def worker() -> None:
        for _ in range(n // workers):
            await one_op(admission)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    out.concurrent_ops_per_s.append((n // workers) * workers / (time.perf_counter() - start))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def run(url: str, n: int, rounds: int, workers: int) -> None:
    """Alternate implementations round by round; print the summary."""
    prefix = f"heshi-bench-{uuid.uuid4().hex}"
    memory = InProcessAdmission()
    shared = RedisAdmission.from_url(url, prefix=prefix)
    results = {"in-process": Result(), "redis": Result()}
    impls: dict[str, Admission] = {"in-process": memory, "redis": shared}
    for admission in impls.values():  # warm up: script load, connections, caches
        await serial(admission, 200, Result())
    for r in range(rounds):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for name in order:
            await serial(impls[name], n, results[name])
            await concurrent(impls[name], n, workers, results[name])
    await shared.close()
    cleanup = Redis.from_url(url)
    keys = [k async for k in cleanup.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await cleanup.delete(*keys)
    await cleanup.aclose()
    report(results, n, rounds, workers)


def report(results: dict[str, Result], n: int, rounds: int, workers: int) -> None:
    """Print one line per implementation and the ratios."""
    print(f"reserve+settle, key + tenant scopes with rpm/tpm/budget; {rounds} rounds x {n} ops")
    print(f"{'impl':<11}{'ops/s c=1':>12}{'p50 µs':>10}{'p99 µs':>10}{f'ops/s c={workers}':>14}")
    rows = {}
    for name, res in results.items():
        rows[name] = (
            statistics.median(res.serial_ops_per_s),
            pct(res.latencies_us, 50),
            pct(res.latencies_us, 99),
            statistics.median(res.concurrent_ops_per_s),
        )
        ops1, p50, p99, opsc = rows[name]
        print(f"{name:<11}{ops1:>12,.0f}{p50:>10.1f}{p99:>10.1f}{opsc:>14,.0f}")
    mem, red = rows["in-process"], rows["redis"]
    print(
        f"ratio redis/in-process: p50 {red[1] / mem[1]:.1f}x, p99 {red[2] / mem[2]:.1f}x; "
        f"in-process/redis throughput: c=1 {mem[0] / red[0]:.1f}x, c={workers} "
        f"{mem[3] / red[3]:.1f}x"
    )


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    n = max(args.workers, int(5000 * args.scale))
    uvloop.run(run(args.redis_url, n, args.rounds, args.workers))


if __name__ == "__main__":
    main()
