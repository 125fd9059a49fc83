"""Scaling out and the cost of tracing (issue 17), in one run on this machine.

1. **Tracing cost**: two ``heshi serve`` processes in front of the same fast loopback mock
   upstream (``mock_upstream.py``), one with ``tracing.enabled`` exporting over OTLP/HTTP
   to a local sink (``otlp_sink.py``, its own process), one without; latency at
   concurrency 1 (non-streaming), the gateways' requests interleaved one by one (a slow
   spell of the host falls on both alike); "added" = traced percentile − untraced
   percentile over the same number of requests. Target: added p99 ≤ 0.3 ms. Also
   requests/s at concurrency 8 (wrk) for both, in three turns of rotating order.
2. **Replicas**: requests/s and p99 of one gateway, then of two replicas sharing one
   PostgreSQL ledger and one Redis quota store, at concurrency 8 (wrk, split evenly
   between the replicas when there are two: no proxy in between, which on two cores
   would take a core of its own). On a 2-core machine that also runs the mock and the
   load generator, two replicas cannot be expected to double anything: the point is
   that sharing state costs little, not that cores appear.

    .venv/bin/python benchmarks/scale.py [--quick] [--json results.json] [--baseline REF]

``--baseline REF`` adds a third gateway, traced, running the code of git commit REF (a
worktree, on the same virtualenv): an earlier tracing implementation measured side by
side with this one in the same run.

Needs ``wrk`` (installed with apt-get when missing, as root), PostgreSQL and Redis on
loopback (``HESHI_TEST_PG_URL``/``HESHI_TEST_REDIS_URL``, or the local defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

import gateway_overhead as go
import mock_upstream

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("HESHI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HESHI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET_TRACING_P99_MS = 0.3


@contextlib.contextmanager
def otlp_sink() -> Any:
    """The OTLP/HTTP sink in its own process; yields (url, a callable returning the number
    of export requests it took)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("otlp_sink.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1/traces", proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


@contextlib.contextmanager
def scratch_database() -> Any:
    """A fresh PostgreSQL database for the replicas' shared ledger; dropped after."""
    name = f"heshi_scale_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def worktree(ref: str, tmp: Path) -> Any:
    """A checkout of ``ref`` (removed after)."""
    path = tmp / "baseline-src"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)  # fmt: skip


def c1_latency(
    targets: list[go.Target], n: int, rounds: int
) -> tuple[dict[str, list[float]], list[dict[str, list[float]]]]:
    """Sequential requests (concurrency 1), the targets interleaved request by request
    (each takes each place in turn), so a slow spell of this shared host falls on all of
    them alike instead of on whichever round it hit. Returns the samples of each target
    and each round's [p50, p99] in ms per target."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    per_round: list[dict[str, list[float]]] = []
    for rnd in range(rounds):
        got = go.interleaved_calls(targets, n, 200 if rnd == 0 else 0, False)
        line = "  ".join(
            f"{name} p50 {go.pct(v, 0.5) * 1e3:.3f} p99 {go.pct(v, 0.99) * 1e3:.3f}"
            for name, v in got.items()
        )
        print(f"  round {rnd + 1} (ms): {line}", flush=True)
        for name, values in got.items():
            samples[name] += values
        per_round.append({k: [go.pct(v, 0.5) * 1e3, go.pct(v, 0.99) * 1e3] for k, v in got.items()})
    return samples, per_round


def wrk_together(
    wrk: str, targets: list[go.Target], concurrency: int, seconds: int, tmp: Path
) -> dict[str, Any]:
    """wrk against every target at once, the concurrency split between them."""
    share = max(1, concurrency // len(targets))
    results: dict[str, go.WrkResult] = {}

    def one(target: go.Target) -> None:
        script = go.wrk_script(target, tmp)
        results[target.name] = go.run_wrk(wrk, target, script, share, seconds)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(r.rps for r in results.values())
    return {
        "rps": total,
        "p99_ms": max(r.p99_ms for r in results.values()),
        "errors": sum(r.errors for r in results.values()),
        "per_target": {name: r.__dict__ | {"rps": r.rps} for name, r in results.items()},
    }


def saturated(wrk: str, targets: list[go.Target], seconds: int, tmp: Path) -> dict[str, Any]:
    """Requests/s of each target alone at concurrency 8: three turns each, the order
    rotating, ``seconds`` in all per target; the median turn counts."""
    turns: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for turn in range(3):
        for target in go.rotated(targets, turn):
            turns[target.name].append(wrk_together(wrk, [target], 8, max(2, seconds // 3), tmp))
    out = {}
    for name, results in turns.items():
        results.sort(key=lambda r: r["rps"])
        out[name] = results[1] | {"turns_rps": [r["rps"] for r in results]}
        print(f"  {name}: req/s at c=8 per turn " + ", ".join(
            f"{r['rps']:.0f}" for r in results), flush=True)  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    p.add_argument("--json", type=Path)
    p.add_argument("--baseline", help="git ref whose traced gateway runs beside this one")
    args = p.parse_args()
    n, rounds, seconds = (500, 2, 5) if args.quick else (3000, 4, 15)
    python = str(REPO / ".venv" / "bin" / "python")
    wrk = go.ensure_wrk()
    out: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "requests_per_round": n,
        "rounds": rounds,
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heshi-scale-")))
        mock = stack.enter_context(mock_upstream.running(sys.executable))
        url, sink = stack.enter_context(otlp_sink())
        print("[1/2] tracing: off vs on (OTLP to a local sink), concurrency 1", flush=True)
        off = go.start_heshi(python, mock.port, tmp, stack, name="untraced")
        on = go.start_heshi(
            python,
            mock.port,
            tmp,
            stack,
            extra_settings={"tracing": {"enabled": True, "endpoint": url}},
            name="traced",
        )
        targets = [off, on]
        if args.baseline:
            source = stack.enter_context(worktree(args.baseline, tmp))
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = str(source / "src")  # the children import REF's code
            try:
                targets.append(
                    go.start_heshi(python, mock.port, tmp, stack, name="baseline",
                                   extra_settings={"tracing": {"enabled": True, "endpoint": url}})
                )  # fmt: skip
            finally:
                if old is None:
                    del os.environ["PYTHONPATH"]
                else:
                    os.environ["PYTHONPATH"] = old
        samples, rounds_ms = c1_latency(targets, n, rounds)
        added = {
            q: (go.pct(samples["traced"], q) - go.pct(samples["untraced"], q)) * 1e3
            for q in (0.5, 0.99)
        }
        load = saturated(wrk, targets, seconds, tmp)
        on.service.stop()  # type: ignore[union-attr]  # flushes the last spans
        off.service.stop()  # type: ignore[union-attr]
        out["tracing"] = {
            "untraced_p50_ms": go.pct(samples["untraced"], 0.5) * 1e3,
            "untraced_p99_ms": go.pct(samples["untraced"], 0.99) * 1e3,
            "traced_p50_ms": go.pct(samples["traced"], 0.5) * 1e3,
            "traced_p99_ms": go.pct(samples["traced"], 0.99) * 1e3,
            "added_p50_ms": added[0.5],
            "added_p99_ms": added[0.99],
            "rps_c8": {name: r["rps"] for name, r in load.items()},
            "rps_c8_turns": {name: r["turns_rps"] for name, r in load.items()},
            "rounds_ms": rounds_ms,
        }
        if args.baseline:
            base, none = samples["baseline"], samples["untraced"]
            out["tracing"]["baseline"] = {
                "ref": args.baseline,
                "added_p50_ms": (go.pct(base, 0.5) - go.pct(none, 0.5)) * 1e3,
                "added_p99_ms": (go.pct(base, 0.99) - go.pct(none, 0.99)) * 1e3,
            }
            b = out["tracing"]["baseline"]
            print(
                f"  baseline {args.baseline}: added p50 {b['added_p50_ms']:+.3f} ms, p99 "
                f"{b['added_p99_ms']:+.3f} ms; req/s at c=8 {load['baseline']['rps']:.0f}",
                flush=True,
            )
        print(
            f"  added by tracing: p50 {added[0.5]:+.3f} ms, p99 {added[0.99]:+.3f} ms "
            f"(target ≤ {TARGET_TRACING_P99_MS} ms) "
            f"{'✅' if added[0.99] <= TARGET_TRACING_P99_MS else '❌'}; req/s at c=8: "
            f"{load['untraced']['rps']:.0f} untraced, {load['traced']['rps']:.0f} traced",
            flush=True,
        )
        print("[2/2] replicas sharing PostgreSQL and Redis, concurrency 8", flush=True)
        database = stack.enter_context(scratch_database())
        shared = {"store": {"url": database, "redis_url": REDIS_URL,
                            "redis_prefix": f"scale{secrets.token_hex(3)}"}}  # fmt: skip
        first = go.start_heshi(python, mock.port, tmp, stack, name="replica1",
                               extra_settings=shared)  # fmt: skip
        one = wrk_together(wrk, [first], 8, seconds, tmp)
        second = go.start_heshi(python, mock.port, tmp, stack, name="replica2",
                                extra_settings=shared)  # fmt: skip
        second.headers = first.headers  # one key for both: quotas are shared
        two = wrk_together(wrk, [first, second], 8, seconds, tmp)
        out["replicas"] = {"1": one, "2": two, "ratio": two["rps"] / one["rps"]}
        print(
            f"  1 replica {one['rps']:.0f} req/s (p99 {one['p99_ms']:.1f} ms); 2 replicas "
            f"{two['rps']:.0f} req/s (p99 {two['p99_ms']:.1f} ms): ×{two['rps'] / one['rps']:.2f}",
            flush=True,
        )
        del sink
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
