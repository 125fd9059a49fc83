"""Two (or more) classifier weights side by side on every bank: the guard stages of each.

    .venv/bin/python benchmarks/safety_weights.py --weights A.json B.json
                                                  [--bank FILE...] [--dump FILE...]
                                                  [--judge-url URL] [--cache FILE]

``--bank`` defaults to every bank in ``benchmarks/data``.

For each bank and each weights file: the classifier's ROC AUC, and the guard's stages at
the shipped bands — the lexicon, the confident band (``block_above``), and the band judge
(``judge.above`` up to ``block_above``, blocking at ``judge.min_probability``) — as
refused / over-refused; and how many should-answer prompts fall below ``policy.above``
(they get the plain policy, not the 31 risks).

The judge's probability of 有害 depends only on the prompt, so it is read from earlier
dumps (``benchmarks/safety.py --dump``) by prompt id; a prompt that falls in some
weights' band and has none is judged through ``--judge-url`` (a gateway serving the
model, guard off, as for ``safety.py``) and appended to ``--cache``, which later runs
read as a dump. Without ``--judge-url`` such a prompt counts as not blocked and is
reported as unjudged. Nothing is chosen here (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from heshi.config import GuardConfig
from heshi.errors import HeshiError
from heshi.guard.classifier import SafetyClassifier
from heshi.guard.evaluate import Question, load_bank
from heshi.guard.safety import Lexicon, SafetyEngine
from safety import auc, judge_all

BANKS = sorted((Path(__file__).parent / "data").glob("safety_bank_*.jsonl"))


def cached(paths: list[Path]) -> dict[str, float]:
    """Prompt id → the judge's probability, from dumps (later files win)."""
    found: dict[str, float] = {}
    for path in paths:
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("judge") is not None:
                found[row["id"]] = float(row["judge"])
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, nargs="+", required=True)
    p.add_argument("--bank", type=Path, nargs="+", default=BANKS)
    p.add_argument("--dump", type=Path, nargs="*", default=[])
    p.add_argument("--judge-url")
    p.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct")
    p.add_argument("--cache", type=Path, help="where judgements made here are appended")
    args = p.parse_args()
    for dump in args.dump:  # a mistyped dump would have every band prompt judged again
        if not dump.is_file():
            p.error(f"找不到文件 / no such file: {dump}")
    try:
        run(args)
    except HeshiError as exc:  # an unreadable bank or weights file
        p.error(str(exc))


def run(args: argparse.Namespace) -> None:
    shipped = GuardConfig()
    above, sure = shipped.classifier.judge.above, shipped.classifier.block_above or 1.0
    least, plain = shipped.classifier.judge.min_probability, shipped.policy.above or 0.0
    probs = cached([*args.dump, *([args.cache] if args.cache and args.cache.is_file() else [])])
    engine = SafetyEngine(Lexicon.seed())
    models = [SafetyClassifier.load(w) for w in args.weights]
    print(f"bands: judge {above}–{sure}, judge blocks at p ≥ {least}, policy from {plain}")
    for path in args.bank:
        bank: list[Question] = load_bank(path)
        positive = np.asarray([q.expect == "refuse" for q in bank])
        lexicon = np.asarray([engine.check(q.prompt).blocked for q in bank])
        scores = [np.asarray([v.unsafe for v in m.read([q.prompt for q in bank])]) for m in models]
        need = sorted(
            {i for s in scores for i, x in enumerate(s) if above <= x < sure}
            - {i for i, q in enumerate(bank) if q.id in probs}
        )
        if need and args.judge_url:
            found = asyncio.run(judge_all(args.judge_url, args.judge_model, bank, need))
            rows = [{"id": bank[i].id, "judge": found[i]} for i in need]
            probs |= {r["id"]: r["judge"] for r in rows}
            if args.cache:
                with args.cache.open("a", encoding="utf-8") as out:
                    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        judge = np.asarray([probs.get(q.id, 0.0) for q in bank])
        print(f"\n{path.name}: {positive.sum()} should-refuse, {(~positive).sum()} should-answer")
        for weights, s in zip(args.weights, scores, strict=True):
            band = (s >= above) & (s < sure)
            refused = lexicon | (s >= sure) | (band & (judge >= least))
            missing = sum(1 for i in np.flatnonzero(band) if bank[i].id not in probs)
            both = positive.any() and (~positive).any()
            print(
                f"  {weights.name:<28} AUC {auc(s, positive) if both else float('nan'):.4f}  "
                f"stages {refused[positive].mean() if positive.any() else float('nan'):.3f}"
                f"/{refused[~positive].mean():.3f}  "
                f"(confident {int((s >= sure)[~positive].sum())}, judge "
                f"{int((band & (judge >= least))[~positive].sum())} of {int(band[~positive].sum())}"
                f" answer prompts in band; plain policy {int((s < plain)[~positive].sum())})"
                + (f"  unjudged {missing}" if missing else "")
            )


if __name__ == "__main__":
    main()
