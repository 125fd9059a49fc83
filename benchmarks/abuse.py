"""Abuse: each attack of issue 9 run against ``heshi serve``, next to an unattacked baseline.

One run starts the fast mock upstream (``mock_upstream.py``), a slow streaming upstream
(this file: one SSE token every ``--token-ms``), and ``heshi serve --no-local`` in front
of both, with keys. A prober sends one small chat request every 20 ms (a fresh connection
each time, as a new client would) and times it; the gateway's RSS is sampled every 50 ms.
Each attack runs with the prober going, and the table compares its window with the
baseline window measured first, in the same run:

- ``chunked-512MiB-nokey`` / ``chunked-512MiB-key``: a 512 MiB chunked upload, without a
  key and with one (the gateway must stop reading: RSS growth ≤ 64 MiB);
- ``idle-1100``: 1,100 connections that never send a byte, the gateway started with the
  common open-file limit of 1,024 (normal p99 ≤ 2× baseline);
- ``slowloris-500`` and ``stalled-body-500``: headers a byte a second; bodies that stop;
- ``deep-json``: 200 requests with tool schemas nested 300 deep (400s, never a 500);
- ``mid-body-aborts``: 1,000 uploads cut mid-body (ERROR lines in the gateway log: 0);
- ``bypass``: budget attacks — 10 streams of 5,000-character prompts abandoned after the
  first chunk, 10 more the upstream cuts, and 100 concurrent requests without
  ``max_tokens`` — reporting tokens served but not charged (target 0) and whether the
  budget was overrun.

    .venv/bin/python benchmarks/abuse.py [--json out.json]

All traffic is on 127.0.0.1; nothing here reaches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import resource
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

import mock_upstream
from gateway_overhead import (
    LOOPBACK,
    Service,
    _heshi_cli,
    _parse_json_object,
    child_env,
    free_port,
    rss_kib,
    serving_pid,
    wait_healthy,
)
from heshi.engines.sizing import estimate_prompt_tokens

REPO = Path(__file__).resolve().parent.parent
SLOW_MODEL = "qwen-slow"
NORMAL = orjson.dumps(
    {
        "model": mock_upstream.MODEL,
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 16,
    }
)
TARGET_RSS_MIB = 64
TARGET_P99_RATIO = 2.0


# --------------------------------------------------------------------------- slow upstream


class SlowUpstream:
    """An SSE upstream that streams one token every ``token_s`` and counts what it served:
    the prompt characters it received and the tokens it managed to write before the
    connection closed (its own bill, to compare with what the gateway charged)."""

    def __init__(self, token_s: float) -> None:
        self.token_s = token_s
        self.served: list[dict[str, int]] = []
        self.cut_after: int | None = None  # drop the connection after this many tokens
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, LOOPBACK, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = orjson.loads(await reader.readexactly(length)) if length else {}
                if head.startswith(b"GET"):
                    data = orjson.dumps({"object": "list", "data": [{"id": SLOW_MODEL}]})
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(data) + data
                    )
                    await writer.drain()
                    continue
                await self._stream(body, writer)
                return
        writer.close()

    async def _stream(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages") or ())
        record = {"prompt_chars": prompt, "tokens": 0}
        self.served.append(record)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        limit = int(body.get("max_tokens") or 4000)
        try:
            for i in range(limit):
                if self.cut_after is not None and i == self.cut_after:
                    writer.transport.abort()
                    return
                chunk = {
                    "id": "s",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": SLOW_MODEL,
                    "choices": [{"index": 0, "delta": {"content": "字"}, "finish_reason": None}],
                }
                writer.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                await writer.drain()
                record["tokens"] += 1
                await asyncio.sleep(self.token_s)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": limit,
                "total_tokens": prompt + limit,
            }
            final = {
                "id": "s",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": SLOW_MODEL,
                "choices": [],
                "usage": usage,
            }
            writer.write(b"data: " + orjson.dumps(final) + b"\n\ndata: [DONE]\n\n")
            await writer.drain()
        finally:
            writer.close()


# --------------------------------------------------------------------------- the gateway


@dataclass
class Gateway:
    port: int
    pid: int
    service: Service
    home: Path
    config: Path
    keys: dict[str, str] = field(default_factory=dict)


def start_gateway(
    python: str, mock_port: int, slow_port: int, tmp: Path, stack: contextlib.ExitStack, nofile: int
) -> Gateway:
    """``heshi serve`` in front of both upstreams, under an open-file limit of ``nofile``."""
    home = tmp / "home"
    home.mkdir()
    config = tmp / "heshi.yaml"
    mock = {"base_url": f"http://{LOOPBACK}:{mock_port}/v1", "models": [mock_upstream.MODEL]}
    slow = {
        "base_url": f"http://{LOOPBACK}:{slow_port}/v1",
        "models": [SLOW_MODEL],
        "max_output_tokens": 100,
        "timeout": 30,
    }
    settings = {
        "home": str(home),
        "engine": {"enabled": False},
        "backends": {"mock": mock, "slow": slow},
        "server": {"max_body_bytes": 8 * 1024 * 1024},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = child_env({"HESHI_HOME": str(home)})
    keys = {}
    # Budgets that hold ten abandoned (or cut) long prompts and one more reservation only
    # if each of the ten was charged its prompt: the eleventh must then be refused.
    prompt = estimate_prompt_tokens(long_body())
    ten = str(10 * prompt + prompt + 100 - 1)
    budgets = (
        ("probe", []),
        ("abandoned", ["--budget-tokens", ten]),
        ("upstream-cut", ["--budget-tokens", ten]),
        ("greedy", ["--budget-tokens", "10300"]),
    )
    for name, limits in budgets:
        done = _heshi_cli(
            python,
            [
                "keys",
                "create",
                "--tenant",
                name,
                "--name",
                name,
                *limits,
                "--json",
                "--config",
                str(config),
            ],
            env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"heshi keys create failed:\n{done.stdout}{done.stderr}")
        keys[name] = _parse_json_object(done.stdout)["key"]
    port = free_port()
    argv = [
        python,
        "-m",
        "heshi",
        "serve",
        "--config",
        str(config),
        "--no-local",
        "--port",
        str(port),
        "--log-level",
        "info",
    ]
    limit = f"ulimit -n {nofile} && exec " + " ".join(argv)
    service = Service("heshi", ["bash", "-c", limit], env, tmp / "heshi.log")
    stack.callback(service.stop)
    wait_healthy(service, port, "/healthz", timeout=60)
    pid = serving_pid(service.proc.pid, port)
    return Gateway(port, pid, service, home, config, keys)


# --------------------------------------------------------------------------- probes


class Prober:
    """Times one normal request every ``every`` seconds on a fresh connection, and
    samples the gateway's RSS, until stopped; one window per attack."""

    def __init__(self, gw: Gateway, every: float = 0.02) -> None:
        self.gw = gw
        self.every = every
        self.latencies: list[float] = []
        self.failures = 0
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Prober:
        self._threads = [
            threading.Thread(target=self._probe, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _probe(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.gw.keys['probe']}",
            "Content-Type": "application/json",
        }
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(LOOPBACK, self.gw.port, timeout=10)
                conn.request("POST", "/v1/chat/completions", NORMAL, headers)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    self.latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failures += 1
            except OSError:
                self.failures += 1
            self._stop.wait(self.every)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.rss.append(rss_kib(self.gw.pid))
            self._stop.wait(0.05)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
        return {
            "probes": len(lat),
            "failed": self.failures,
            "p50_ms": round(q(0.5), 2),
            "p99_ms": round(q(0.99), 2),
            "rss_mib_max": round(max(self.rss, default=0) / 1024, 1),
            "rss_mib_start": round((self.rss[0] if self.rss else 0) / 1024, 1),
        }


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=30)


# --------------------------------------------------------------------------- attacks


def chunked_upload(gw: Gateway, with_key: bool, total: int = 512 * 1024 * 1024) -> dict[str, Any]:
    piece = b"x" * 262144
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    auth = f"Authorization: Bearer {gw.keys['probe']}\r\n".encode() if with_key else b""
    sent = 0
    with connect(gw.port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
            b"chunked\r\nContent-Type: application/json\r\n" + auth + b"\r\n"
        )
        with contextlib.suppress(OSError):
            while sent < total:
                sock.sendall(frame)
                sent += len(piece)
        status = b""
        with contextlib.suppress(OSError):
            status = sock.recv(64).split(b"\r\n")[0]
    return {"sent_mib": round(sent / 2**20, 1), "status": status.decode(errors="replace")}


def idle_sockets(gw: Gateway, n: int, hold: float) -> dict[str, Any]:
    held, refused = [], 0
    for _ in range(n):
        try:
            held.append(connect(gw.port))
        except OSError:
            refused += 1
    time.sleep(hold)
    closed = 0
    for sock in held:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        sock.close()
    return {"opened": len(held), "refused": refused, "closed_by_gateway": closed}


def slowloris(gw: Gateway, n: int, seconds: float) -> dict[str, Any]:
    socks = [connect(gw.port) for _ in range(n)]
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    closed = 0
    for i in range(int(seconds)):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(request[i : i + 1])
        time.sleep(1)
    for sock in socks:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            closed += sock.recv(1) == b""
        sock.close()
    return {"connections": n, "closed_by_gateway": closed}


def stalled_bodies(gw: Gateway, n: int, hold: float) -> dict[str, Any]:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Authorization: Bearer " + gw.keys["probe"].encode() + b'\r\n\r\n{"model"'
    )
    socks = []
    for _ in range(n):
        sock = connect(gw.port)
        sock.sendall(head)
        socks.append(sock)
    time.sleep(hold)
    closed = 0
    for sock in socks:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            closed += sock.recv(1) == b""
        sock.close()
    return {"connections": n, "closed_by_gateway": closed}


def deep_json(gw: Gateway, n: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        schema = {"type": "object", "properties": {"x": schema}}
    body = orjson.loads(NORMAL) | {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    }
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {gw.keys['probe']}", "Content-Type": "application/json"}
    for _ in range(n):
        conn = http.client.HTTPConnection(LOOPBACK, gw.port, timeout=30)
        # the standard library's encoder: orjson refuses to write 300 levels
        conn.request("POST", "/v1/chat/completions", json.dumps(body).encode(), headers)
        status = conn.getresponse().status
        statuses[status] = statuses.get(status, 0) + 1
        conn.close()
    return {"statuses": statuses}


def mid_body_aborts(gw: Gateway, n: int) -> dict[str, Any]:
    before = gw.service.log.read_text(errors="replace")
    for _ in range(n):
        with connect(gw.port) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                b'100000\r\nContent-Type: application/json\r\n\r\n{"model":'
            )
    time.sleep(1)
    log = gw.service.log.read_text(errors="replace")[len(before) :]
    return {
        "aborts": n,
        "log_lines": len(log.splitlines()),
        "error_lines": sum(" ERROR " in ln or "Traceback" in ln for ln in log.splitlines()),
    }


# --------------------------------------------------------------------------- bypass


def ledger(gw: Gateway) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(str(gw.home / "heshi.db"))) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY id")]


def wait_rows(gw: Gateway, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(rows := ledger(gw)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


def long_body() -> dict[str, Any]:
    """A streamed request with a 5,000-character prompt to the slow upstream."""
    return {
        "model": SLOW_MODEL,
        "messages": [{"role": "user", "content": "你" * 5000}],
        "max_tokens": 100,
        "stream": True,
    }


def bypass(gw: Gateway, slow: SlowUpstream) -> dict[str, Any]:
    """Tokens the slow upstream served that the gateway did not charge, per attack."""
    body = long_body()
    out: dict[str, Any] = {}
    for attack, cut in (("abandoned", None), ("upstream-cut", 1)):
        headers = {"Authorization": f"Bearer {gw.keys[attack]}", "Content-Type": "application/json"}
        slow.served.clear()
        slow.cut_after = cut
        start = len(ledger(gw))
        for _ in range(10):
            conn = http.client.HTTPConnection(LOOPBACK, gw.port, timeout=30)
            conn.request("POST", "/v1/chat/completions", orjson.dumps(body), headers)
            resp = conn.getresponse()
            resp.read1(64) if attack == "abandoned" else resp.read()
            conn.close()  # abandoned: hang up after the first bytes
        time.sleep(2 * slow.token_s + 0.5)
        rows = wait_rows(gw, start + 10)[start:]
        served = sum(r["prompt_chars"] + r["tokens"] for r in slow.served)
        charged = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
        eleventh = http.client.HTTPConnection(LOOPBACK, gw.port, timeout=30)
        eleventh.request("POST", "/v1/chat/completions", orjson.dumps(body), headers)
        status = eleventh.getresponse().status
        eleventh.close()
        out[attack] = {
            "served": served,
            "charged": charged,
            "bypass": max(0, served - charged),
            "eleventh_status": status,
            "statuses": sorted({r["status"] for r in rows}),
        }
        time.sleep(1)
    slow.cut_after = None
    out["no-max-tokens"] = greedy(gw, slow)
    return out


def greedy(gw: Gateway, slow: SlowUpstream) -> dict[str, Any]:
    """100 concurrent requests without max_tokens against a 10,300-token budget; the
    slow upstream writes 4,000 tokens to a request that does not limit it."""
    slow.served.clear()
    key = gw.keys["greedy"]
    body = orjson.dumps(
        {
            "model": SLOW_MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": "写一篇长文"}],
        }
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = len(ledger(gw))
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection(LOOPBACK, gw.port, timeout=120)
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    rows = wait_rows(gw, start + 100)[start:]
    charged = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    served = sum(r["prompt_chars"] + r["tokens"] for r in slow.served)
    return {
        "admitted": statuses.count(200),
        "refused": statuses.count(429),
        "served": served,
        "charged": charged,
        "budget": 10300,
        "overrun": max(0, charged - 10300),
        "bypass": max(0, served - charged),
    }


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's own sockets
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack, mock_upstream.running(sys.executable) as mock:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heshi-abuse-")))
        slow = SlowUpstream(args.token_ms / 1000)
        gw = start_gateway(args.heshi_python, mock.port, slow.port, tmp, stack, args.nofile)
        attacks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("baseline", lambda: (time.sleep(args.window), {})[1]),
            ("chunked-512MiB-nokey", lambda: chunked_upload(gw, with_key=False)),
            ("chunked-512MiB-key", lambda: chunked_upload(gw, with_key=True)),
            ("idle-1100", lambda: idle_sockets(gw, 1100, args.window)),
            # held past the gateway's header (10 s) and body (30 s) timeouts
            ("slowloris-500", lambda: slowloris(gw, 500, 12)),
            ("stalled-body-500", lambda: stalled_bodies(gw, 500, 32)),
            ("deep-json", lambda: deep_json(gw, 200)),
            ("mid-body-aborts", lambda: mid_body_aborts(gw, 1000)),
        ]
        for name, attack in attacks:
            time.sleep(1)
            with Prober(gw) as probe:
                outcome = attack()
            results[name] = {"outcome": outcome, **probe.summary()}
            print(f"{name:22} {json.dumps(results[name], ensure_ascii=False)}", flush=True)
        results["bypass"] = {"outcome": bypass(gw, slow)}
        print(f"{'bypass':22} {json.dumps(results['bypass'], ensure_ascii=False)}", flush=True)
    return results


def report(results: dict[str, Any]) -> None:
    base = results["baseline"]
    print(
        "\n| attack | normal p50 ms | normal p99 ms | p99 / baseline | failed probes "
        "| RSS max MiB (start) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if "p99_ms" not in r:
            continue
        ratio = r["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
        print(
            f"| {name} | {r['p50_ms']} | {r['p99_ms']} | {ratio:.2f} | {r['failed']} "
            f"| {r['rss_mib_max']} ({r['rss_mib_start']}) |"
        )
    chunk = results["chunked-512MiB-key"]
    growth = (
        max(results["chunked-512MiB-nokey"]["rss_mib_max"], chunk["rss_mib_max"])
        - (base["rss_mib_max"])
    )
    idle = results["idle-1100"]["p99_ms"] / base["p99_ms"]
    by = results["bypass"]["outcome"]
    bypassed = sum(v["bypass"] for v in by.values()) + by["no-max-tokens"]["overrun"]
    print(
        f"\nRSS growth under the 512 MiB chunked bodies: {growth:.1f} MiB "
        f"(target ≤ {TARGET_RSS_MIB}) {'✅' if growth <= TARGET_RSS_MIB else '❌'}"
    )
    print(
        f"normal p99 with 1,100 idle sockets: {idle:.2f}× baseline "
        f"(target ≤ {TARGET_P99_RATIO}×) {'✅' if idle <= TARGET_P99_RATIO else '❌'}"
    )
    print(f"budget bypass: {bypassed} tokens (target 0) {'✅' if bypassed == 0 else '❌'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--window", type=float, default=12.0, help="seconds each held attack lasts")
    p.add_argument("--token-ms", type=float, default=50.0, help="slow upstream: ms per token")
    p.add_argument("--nofile", type=int, default=1024, help="the gateway's open-file limit")
    p.add_argument("--heshi-python", default=str(REPO / ".venv" / "bin" / "python"))
    args = p.parse_args()
    started = time.time()
    results = run(args)
    report(results)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": sys.version.split()[0],
        "seconds": round(time.time() - started),
    }
    print(f"\n{meta}")
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
