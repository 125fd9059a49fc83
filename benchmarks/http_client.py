"""httpx.AsyncClient vs aiohttp.ClientSession as the gateway's upstream client.

Starts the loopback mock upstream (``mock_upstream.py``: raw asyncio HTTP/1.1 with
keep-alive, in a child process so it gets its own core) with a JSON and an SSE
endpoint, then drives it with both clients in the same run, alternating which goes
first each round so noise on a shared machine cancels out. Prints requests/s and
p50/p99 latency at concurrency 1 and 32, and the aiohttp/httpx ratios.

    .venv/bin/python benchmarks/http_client.py            # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/http_client.py --scale 0.2  # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx
import orjson
import uvloop

import mock_upstream
from mock_upstream import SSE_EVENTS

CHAT_BODY = orjson.dumps(
    {
        "model": "qwen2.5-7b-instruct",
        "messages": [
            {"role": "system", "content": "你是一个乐于助人的客服助手。"},
            {"role": "user", "content": "请问我的快递什么时候能到？单号 SF1234567890。"},
        ],
        "max_tokens": 128,
    }
)

# --------------------------------------------------------------------------- clients


def _count_events(raw: bytes) -> int:
    """The same minimal SSE handling for both clients: split events, parse each JSON."""
    n = 0
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: {"):
            orjson.loads(event[6:])
            n += 1
    return n


Call = Callable[[], Awaitable[None]]


def _httpx_calls(client: httpx.AsyncClient, base: str) -> dict[str, Call]:
    async def json_call() -> None:
        r = await client.post(f"{base}/v1/chat/completions", content=CHAT_BODY)
        orjson.loads(r.content)

    async def sse_call() -> None:
        raw = b""
        async with client.stream("POST", f"{base}/v1/stream", content=CHAT_BODY) as r:
            async for piece in r.aiter_raw():
                raw += piece
        assert _count_events(raw) == SSE_EVENTS

    return {"json": json_call, "sse": sse_call}


def _aiohttp_calls(session: aiohttp.ClientSession, base: str) -> dict[str, Call]:
    async def json_call() -> None:
        async with session.post(f"{base}/v1/chat/completions", data=CHAT_BODY) as r:
            orjson.loads(await r.read())

    async def sse_call() -> None:
        raw = b""
        async with session.post(f"{base}/v1/stream", data=CHAT_BODY) as r:
            async for piece in r.content.iter_any():
                raw += piece
        assert _count_events(raw) == SSE_EVENTS

    return {"json": json_call, "sse": sse_call}


@dataclass
class Sample:
    rps: float
    latencies: list[float]


async def _drive(call: Call, concurrency: int, total: int) -> Sample:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Sample(total / (time.perf_counter() - start), latencies)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(port: int, rounds: int, scale: float) -> None:
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with (
        httpx.AsyncClient(limits=limits, timeout=30) as hx,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as ah,
    ):
        clients = {"httpx": _httpx_calls(hx, base), "aiohttp": _aiohttp_calls(ah, base)}
        for calls in clients.values():  # warm pools and code paths
            for call in calls.values():
                await _drive(call, 32, 64)
        print(f"{'workload':<8}{'conc':>5}  {'client':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        for workload, base_n in (("json", 1500), ("sse", 500)):
            for conc in (1, 32):
                total = max(conc * 4, int(base_n * scale * (4 if conc > 1 else 1)))
                samples: dict[str, list[Sample]] = {"httpx": [], "aiohttp": []}
                for rnd in range(rounds):
                    order = list(clients) if rnd % 2 == 0 else list(reversed(clients))
                    for name in order:
                        samples[name].append(await _drive(clients[name][workload], conc, total))
                _report(workload, conc, samples)


def _report(workload: str, conc: int, samples: dict[str, list[Sample]]) -> None:
    rows = {}
    for name, runs in samples.items():
        lat = [x for s in runs for x in s.latencies]
        rows[name] = (
            statistics.median(s.rps for s in runs),
            _pct(lat, 0.50) * 1000,
            _pct(lat, 0.99) * 1000,
        )
        rps, p50, p99 = rows[name]
        print(f"{workload:<8}{conc:>5}  {name:<8}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}")
    hx, ah = rows["httpx"], rows["aiohttp"]
    print(
        f"{'':<15}ratio aiohttp/httpx: req/s x{ah[0] / hx[0]:.2f}, "
        f"p50 x{ah[1] / hx[1]:.2f}, p99 x{ah[2] / hx[2]:.2f}"
    )


def main() -> None:
    """Run the side-by-side benchmark against the mock upstream (``mock_upstream.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    args = parser.parse_args()
    with mock_upstream.running() as upstream:
        print(
            f"python {sys.version.split()[0]}, httpx {httpx.__version__}, "
            f"aiohttp {aiohttp.__version__}, uvloop client+server, {os.cpu_count()} cores, "
            f"loadavg before {os.getloadavg()[0]:.2f}"
        )
        uvloop.run(_bench(upstream.port, args.rounds, args.scale))
        print(f"loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
