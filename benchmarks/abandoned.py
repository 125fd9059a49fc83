"""Clients that give up on a whole (non-streamed) answer: how long the next client waits.

Against each gateway URL in turn: ``--leavers`` clients each ask for a long answer
without streaming (``max_tokens`` ``--tokens``) and hang up after ``--patience``
seconds — a client timeout — then one client asks for a single token and its wait is
timed. A gateway that keeps decoding for the clients that left makes it wait for them;
one that stops their answers serves it at once. The gateways are measured one after
the other (they share the cores) and the ratio of the waits is printed.

    .venv/bin/python benchmarks/abandoned.py --url http://127.0.0.1:8123 \\
        --url http://127.0.0.1:8124 [--model qwen2.5-coder-1.5b-instruct] [--json out.json]

Each URL is a running ``heshi serve --open`` (the first the one under test, the others
baselines, e.g. an older checkout). Before the next gateway is measured the script
waits until this one answers a single token within 2 s again (at most ``--settle`` s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from typing import Any

import httpx

PROMPT = "写一篇两千字的文章，介绍长江沿岸的城市，第{n}部分。"


async def _leave(client: httpx.AsyncClient, url: str, model: str, n: int, args: Any) -> bool:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT.format(n=n)}],
        "max_tokens": args.tokens,
    }
    try:
        await client.post(url + "/v1/chat/completions", json=body, timeout=args.patience)
    except httpx.TimeoutException:
        return True
    return False  # answered before the client's patience ran out


async def _one_token(client: httpx.AsyncClient, url: str, model: str) -> float:
    start = time.perf_counter()
    r = await client.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 1},
        timeout=600,
    )
    r.raise_for_status()
    return time.perf_counter() - start


async def measure(url: str, args: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        left = await asyncio.gather(
            *(_leave(client, url, args.model, n, args) for n in range(args.leavers))
        )
        waited = await _one_token(client, url, args.model)
        # let the engine finish what it still decodes before the next gateway is measured
        settle = time.perf_counter()
        while time.perf_counter() - settle < args.settle:
            if await _one_token(client, url, args.model) < 2.0:
                break
            await asyncio.sleep(1)
    return {"url": url, "clients_that_left": sum(left), "next_client_waited_s": round(waited, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--leavers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--patience", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=120.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    runs = [asyncio.run(measure(url, args)) for url in args.url]
    for run in runs:
        print(
            f"{run['url']}: {run['clients_that_left']}/{args.leavers} clients left; "
            f"the next client waited {run['next_client_waited_s']} s"
        )
    first = runs[0]["next_client_waited_s"]
    for run in runs[1:]:
        ratio = run["next_client_waited_s"] / max(first, 1e-3)
        print(f"{run['url']} made it wait {ratio:.1f}× as long as {runs[0]['url']}")
    out = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "url")},
        "runs": runs,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
