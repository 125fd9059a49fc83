"""Would the band judge do better reading the classifier's score too? Read from dumps.

    .venv/bin/python benchmarks/safety_combine.py DUMP [DUMP...] [--above 0.4] [--block 0.7]

A dump is what ``benchmarks/safety.py --judge-url URL --dump FILE`` writes: each prompt's
classifier score, lexicon verdict and the judge's probability of 有害 (from the band's
bottom up, the confident band included). Two alternatives to the shipped rule (lexicon,
or score ≥ block_above, or in the band with the judge's p ≥ min_probability), each at
every ``min_probability`` from 0.5 to 0.8, per dump:

- **weighted** — in the band, block when logit(p) + w·logit(score) ≥ logit(min_probability):
  the more the classifier suspects a prompt, the less sure the judge must be (w = 0 is
  the shipped rule);
- **veto** — the judge also asked on the confident band, which then blocks unless the
  judge's p is below a small v (the judge may clear the classifier's sure mistakes).

Prints refused / over-refused for each; nothing is chosen here (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

PROBABILITIES = (0.5, 0.6, 0.7, 0.8)
WEIGHTS = (0.0, 1.0, 2.0, 3.0)
VETOES = (0.05, 0.1, 0.2, 0.3)


def logit(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(x / (1 - x)), dtype=float)


def rates(blocked: np.ndarray, positive: np.ndarray) -> str:
    return f"{blocked[positive].mean():.3f}/{blocked[~positive].mean():.3f}"


FIELDS = ("expect", "score", "lexicon", "judge")


def read(parser: argparse.ArgumentParser, path: Path) -> list[dict[str, Any]]:
    """A dump's rows; a missing file or a line without the fields ends with its name."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        parser.error(f"无法读取 / cannot read {path}: {exc.strerror}")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            parser.error(f"{path}:{number}: 不是 JSON / not JSON: {exc.msg}")
        if not isinstance(row, dict) or any(f not in row for f in FIELDS):
            parser.error(f"{path}:{number}: 缺少字段 / needs the fields {', '.join(FIELDS)}")
        rows.append(row)
    if not rows:
        parser.error(f"{path}: 空文件 / no rows")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dump", type=Path, nargs="+")
    p.add_argument("--above", type=float, default=0.4, help="the band's bottom (judge.above)")
    p.add_argument("--block", type=float, default=0.7, help="the confident band (block_above)")
    args = p.parse_args()
    for path in args.dump:
        rows = read(p, path)
        positive = np.asarray([r["expect"] == "refuse" for r in rows])
        score = np.asarray([r["score"] for r in rows])
        lexicon = np.asarray([r["lexicon"] for r in rows])
        judge = np.asarray([r["judge"] if r["judge"] is not None else 0.0 for r in rows])
        band = (score >= args.above) & (score < args.block) & ~lexicon
        sure = lexicon | (score >= args.block)
        print(f"{path.name}: {positive.sum()} should-refuse, {(~positive).sum()} should-answer")
        print("  refused/over-refused at min_probability " + "  ".join(map(str, PROBABILITIES)))
        for w in WEIGHTS:
            cells = [
                rates(sure | (band & (logit(judge) + w * logit(score) >= logit(t))), positive)
                for t in PROBABILITIES
            ]
            print(f"  weighted w={w:<4}" + "  ".join(cells))
        for v in VETOES:
            vetoed = lexicon | ((score >= args.block) & (judge >= v))
            cells = [rates(vetoed | (band & (judge >= t)), positive) for t in PROBABILITIES]
            print(f"  veto v={v:<7}" + "  ".join(cells))


if __name__ == "__main__":
    main()
