"""The prompts of a safety bank that the shipped classifier scores in a range, as a bank.

    .venv/bin/python benchmarks/safety_below.py BANK OUT [--from LOW] [--below HIGH]
                                                [--expect refuse|answer] [--plain]
                                                [--fiction]

How the answering policy's gate (``guard.policy.above``) was measured: the should-answer
prompts scored below 0.2 run through ``heshi eval safety`` with the policy and without
it (docs/benchmarks.md). ``--plain``: only the prompts the shipped guard sends on with
its short prompt for plainly safe requests (below 0.2, nothing found by any stage) —
the prompts ``guard.policy.plain`` changes. ``--fiction``: only requests for fiction
(``heshi.guard.fiction.is_fiction``). Prints how many prompts were written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from heshi.config import GuardConfig, HeshiConfig
from heshi.guard.classifier import SafetyClassifier
from heshi.guard.evaluate import load_bank
from heshi.guard.fiction import is_fiction
from heshi.guard.policy import PLAIN_POLICY
from heshi.guard.stage import GuardStage


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose prompt the shipped guard passes with the short prompt (as a request
    of that one user message)."""
    stage = GuardStage(HeshiConfig(guard=GuardConfig(enabled=True)))
    kept = []
    for row in rows:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": row["prompt"]}]}
        blocked = asyncio.run(stage.inbound(None, None, body)).blocked
        if not blocked and body["messages"][0] == {"role": "system", "content": PLAIN_POLICY}:
            kept.append(row)
    return kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bank", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--from", dest="low", type=float, default=0.0)
    p.add_argument("--below", type=float, default=0.2)
    p.add_argument("--expect", choices=("refuse", "answer"))
    p.add_argument("--plain", action="store_true", help="only prompts given the short prompt")
    p.add_argument("--fiction", action="store_true", help="only requests for fiction")
    args = p.parse_args()
    load_bank(args.bank)  # the bank's own checks: a broken bank fails here, with its line
    rows = [json.loads(line) for line in args.bank.read_text("utf-8").splitlines() if line]
    rows = [r for r in rows if args.expect in (None, r["expect"])]
    rows = [r for r in rows if is_fiction(r["prompt"]) or not args.fiction]
    scores = SafetyClassifier.load().read([r["prompt"] for r in rows])
    kept = [r for r, v in zip(rows, scores, strict=True) if args.low <= v.unsafe < args.below]
    if args.plain:
        kept = plain(kept)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    args.out.write_text("".join(lines), "utf-8")
    print(f"{len(kept)} of {len(rows)} prompts → {args.out}")


if __name__ == "__main__":
    main()
