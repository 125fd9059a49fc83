"""Does the planner's TTFT p95 under load match a real engine? Measured against predicted.

``heshi plan`` predicts the p95 time to first token of N users who each keep one request
in flight (``heshi.plan.queueing``: the finite-source queue over one prefill and the
answer's decode time). This runs exactly that load on the embedded engine through
``heshi serve``: N clients in a closed loop, each sending a fresh prompt (no shared
prefix, ``cache_prompt`` off) as soon as its last answer ends. From the same run it takes
the two inputs the planner uses — one prompt's prefill alone, and the answer's decode
time at N streams — and compares the measured TTFT p95 with the queue model and with the
rule it replaced (two prefills under any load).

    .venv/bin/python benchmarks/plan_queueing.py --users 2,4 --rounds 12 \
        --json benchmarks/results/plan_queueing-DATE.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from engine_efficiency import KB_DOCS, serve, stream  # noqa: E402
from heshi.plan.queueing import ttft_quantile  # noqa: E402
from local_engine import default_model, machine  # noqa: E402

PROMPT_CHARS = 260  # ≈ 200 tokens of the gold documents
ANSWER_TOKENS = 48  # the mean answer length


def _texts() -> list[str]:
    out = []
    for doc in sorted(KB_DOCS.iterdir()):
        text = doc.read_text(encoding="utf-8")
        out += [text[i : i + PROMPT_CHARS] for i in range(0, len(text) - PROMPT_CHARS, 400)]
    return out


TEXTS = _texts()


def body(n: int, fixed: bool) -> dict[str, Any]:
    """A prompt no other request shares a prefix with (the number comes first), and an
    answer of ``ANSWER_TOKENS`` tokens — or, as in real chat, of a length drawn from an
    exponential distribution with that mean (seeded by ``n``: every run asks the same)."""
    text = TEXTS[n % len(TEXTS)]
    ask = f"第 {n} 号资料：\n{text}\n\n请详细复述这段资料的全部内容。"
    length = ANSWER_TOKENS if fixed else random.Random(n).expovariate(1 / ANSWER_TOKENS)
    return {
        "messages": [{"role": "user", "content": ask}],
        "max_tokens": max(2, min(round(length), 6 * ANSWER_TOKENS)),
        "cache_prompt": False,
    }


async def closed_loop(
    url: str, users: int, rounds: int, start: int, fixed: bool
) -> list[dict[str, Any]]:
    """``users`` clients, each sending its next request when the last one ends."""
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=600) as client:

        async def user(u: int) -> None:
            for r in range(rounds):
                row = await stream(client, url, body(start + u * rounds + r, fixed))
                kept = {k: v for k, v in row.items() if k != "text"}
                rows.append({"user": u, "round": r, **kept})

        await asyncio.gather(*(user(u) for u in range(users)))
    return rows


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--users", default="2,4", help="closed-loop client counts")
    parser.add_argument("--rounds", type=int, default=12, help="requests per client")
    parser.add_argument("--alone", type=int, default=5, help="requests alone, for the prefill")
    parser.add_argument(
        "--fixed-answers", action="store_true",
        help=f"every answer {ANSWER_TOKENS} tokens (default: exponential lengths, that mean)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.users.split(",")]
    model = args.model or default_model()
    lengths = "fixed" if args.fixed_answers else "exponential"
    res: dict[str, Any] = {"machine": machine(), "threads": args.threads, "model": model.name,
                           "answer_tokens": ANSWER_TOKENS, "answer_lengths": lengths,
                           "runs": []}  # fmt: skip
    engine = {"parallel": max(counts), "ctx": 1024 * max(counts)}
    running, url = serve(model, args.threads, engine)
    began = time.time()
    with running:
        alone = asyncio.run(closed_loop(url, 1, args.alone + 1, 0, True))[1:]  # the first warms up
        prefill = statistics.median(r["ttft_s"] for r in alone)
        res["alone"] = {"prefill_s": prefill, "prompt_tokens": alone[0]["prompt_tokens"],
                        "rows": alone}  # fmt: skip
        print(f"alone: prefill {prefill:.2f} s ({alone[0]['prompt_tokens']} tokens)", flush=True)
        for n in counts:
            rows = asyncio.run(closed_loop(url, n, args.rounds, 1000 * n, args.fixed_answers))
            steady = [r for r in rows if r["round"] > 0]  # the first round arrives at once
            decode = statistics.mean(r["total_s"] - r["ttft_s"] for r in steady)
            measured = p95([r["ttft_s"] for r in steady])
            model_p95 = ttft_quantile(n, prefill, decode)
            old = 2 * prefill
            run = {
                "users": n, "samples": len(steady), "decode_s": decode,
                "ttft_p50_s": statistics.median(r["ttft_s"] for r in steady),
                "ttft_p95_s": measured, "queue_model_p95_s": model_p95,
                "two_prefills_s": old, "queue_model_error": model_p95 / measured - 1,
                "two_prefills_error": old / measured - 1, "rows": rows,
            }  # fmt: skip
            res["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "rows"}), flush=True)
    res["seconds"] = time.time() - began
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
