"""The safety classifier's second reader: character n-grams.

The e5 embedding (:mod:`heshi.guard.classifier`) reads what a request is about; words
that give a request away — 炸药, 代开发票, 人肉 — and their spellings are what character
n-grams see. The two err on different prompts, and their mean separates should-refuse
from should-answer prompts better than either (docs/decisions.md, "Safety classifier").

A text is first folded as the lexicon folds it — NFKC, case-folded, traditional
characters to simplified, zero-width characters and the separators an evader puts inside a
word (炸*药, 炸-药) dropped — and every other punctuation or whitespace run made one space,
removed between two Chinese characters: how a request is punctuated, spaced or written
(，or ,; 帮我 总结) says nothing about what it asks. It is then cut into its 1- to
3-character n-grams; each known n-gram weighs ``(1 + ln count) · idf``, the vector is
scaled to unit length, and a logistic regression on it gives the probability that the
request is unsafe. Only the first and last ``EMBEDDED_CHARS // 2`` characters of a long
text are read, as for the embedding. Vocabulary, idf and weights ship in the classifier's
weights file; :func:`fit_ngrams` trains them (:mod:`heshi.guard.train`).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heshi.guard.variants import traditional_to_simplified

SIZES = (1, 3)  # the shortest and longest n-gram
MIN_DOCUMENTS = 2  # an n-gram in fewer training prompts is not learned from
MAX_NGRAMS = 1_000_000  # a weights file with more rows is refused (memory)
MAX_WEIGHT = 1_000.0  # |weight|, |bias| and idf above this are not a trained model
# separators an evader puts inside a word: dropped, so 炸*药 reads as 炸药
_JOINERS = frozenset("-_.·•*|/\\~'\"`^+=・")
_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")
_SPACE = re.compile(r" {2,}")


@functools.lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    """One character as the n-grams see it: "" (dropped), " " (a break) or its fold."""
    if ch in _JOINERS or unicodedata.category(ch) == "Cf":
        return ""
    folded = unicodedata.normalize("NFKC", ch).casefold()
    if len(folded) != 1:
        return folded.strip() if folded.strip() else " "
    category = unicodedata.category(folded)
    if folded in _JOINERS:
        return ""
    if category[0] in "PZ" or category == "Cc":
        return " "
    return traditional_to_simplified().get(folded, folded)


def normalized(text: str) -> str:
    """``text`` as the n-gram reader reads it (see the module's docstring)."""
    flat = "".join(_fold(ch) for ch in text)
    return _SPACE.sub(" ", _CJK_GAP.sub("", _SPACE.sub(" ", flat))).strip()


def grams(text: str, sizes: tuple[int, int] = SIZES) -> Counter[str]:
    """The character n-grams of ``text`` (normalized) with their counts."""
    flat = normalized(text)
    low, high = sizes
    return Counter(flat[i : i + n] for n in range(low, high + 1) for i in range(len(flat) - n + 1))


@dataclass(frozen=True)
class NgramModel:
    """n-gram → (index); idf and weight per index; bias of the logistic regression."""

    index: dict[str, int]
    idf: np.ndarray
    weights: np.ndarray
    bias: float
    sizes: tuple[int, int] = SIZES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NgramModel:
        rows = data["vocabulary"]  # [[gram, idf, weight], ...]
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_NGRAMS:
            raise ValueError(f"the vocabulary must hold 1 to {MAX_NGRAMS:,} n-grams")
        sizes = [float(n) for n in data.get("sizes", SIZES)]
        if len(sizes) != 2 or not 1 <= sizes[0] <= sizes[1] <= 8:
            raise ValueError(f"sizes must be two lengths from 1 to 8, got {sizes}")
        low, high = int(sizes[0]), int(sizes[1])
        index = {str(row[0]): i for i, row in enumerate(rows)}
        idf = np.asarray([float(row[1]) for row in rows], dtype=np.float64)
        weights = np.asarray([float(row[2]) for row in rows], dtype=np.float64)
        bias = float(data["bias"])
        if len(index) != len(rows) or not all(low <= len(g) <= high for g in index):
            raise ValueError("repeated n-grams, or n-grams longer or shorter than sizes")
        numbers = np.append(np.concatenate([idf, weights]), bias)
        if not (np.isfinite(numbers).all() and (np.abs(numbers) <= MAX_WEIGHT).all()):
            raise ValueError(f"numbers that are not finite or exceed {MAX_WEIGHT:g}")
        if not (idf > 0).all():
            raise ValueError("an idf that is not positive")
        return cls(index, idf, weights, bias, (low, high))

    def as_json(self) -> dict[str, Any]:
        order = sorted(self.index, key=self.index.__getitem__)
        idf, weights = self.idf, self.weights
        rows = [[g, round(float(idf[i]), 4), round(float(weights[i]), 5)]
                for g in order for i in (self.index[g],)]  # fmt: skip
        return {"sizes": list(self.sizes), "bias": round(self.bias, 5), "vocabulary": rows}

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's known n-grams (indices) and their unit-length tf-idf values."""
        found = [(self.index[g], c) for g, c in grams(text, self.sizes).items() if g in self.index]
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids = np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))
        tf = np.fromiter((1.0 + math.log(c) for _, c in found), dtype=np.float64)
        values = tf * self.idf[ids]
        return ids, values / np.linalg.norm(values)

    def unsafe(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's probability of being a request to refuse (a long text read by its
        start and end)."""
        out = np.empty(len(texts))
        for k, text in enumerate(texts):
            ids, values = self.vector(bounded(text))
            out[k] = _sigmoid(float(values @ self.weights[ids]) + self.bias)
        return out


EMBEDDED_CHARS = 400  # what of a long text is read: its start and its end


def bounded(text: str) -> str:
    """The first and last ``EMBEDDED_CHARS // 2`` characters of a long text."""
    half = EMBEDDED_CHARS // 2
    return text if len(text) <= EMBEDDED_CHARS else text[:half] + "\n" + text[-half:]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def fit_ngrams(
    texts: Sequence[str], unsafe: np.ndarray, *, l2: float = 1e-4, steps: int = 3000
) -> NgramModel:
    """A logistic regression on the texts' n-grams; ``unsafe`` is 1 for a prompt to
    refuse. Both classes weigh the same whatever their counts; L2-regularised, fitted by
    full-batch gradient descent with momentum (the problem is convex)."""
    counted = [grams(t) for t in texts]
    documents: Counter[str] = Counter()
    for c in counted:
        documents.update(c.keys())
    vocabulary = sorted(g for g, n in documents.items() if n >= MIN_DOCUMENTS)
    index = {g: i for i, g in enumerate(vocabulary)}
    n = len(texts)
    idf = np.asarray([math.log((1 + n) / (1 + documents[g])) + 1.0 for g in vocabulary])
    model = NgramModel(index, idf, np.zeros(len(vocabulary)), 0.0)
    rows = [model.vector(t) for t in texts]
    ids = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    owner = np.repeat(np.arange(n), [len(r[0]) for r in rows])
    y = np.asarray(unsafe, dtype=np.float64)
    positives = max(float(y.sum()), 1.0)
    sample = np.where(y > 0, 0.5 * n / positives, 0.5 * n / max(n - positives, 1.0)) / n
    w = np.zeros(len(vocabulary))
    b = 0.0
    velocity_w = np.zeros_like(w)
    velocity_b = 0.0
    rate, momentum = 2.0, 0.9
    for _ in range(steps):
        z = np.bincount(owner, weights=values * w[ids], minlength=n) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        g = (p - y) * sample
        grad_w = np.bincount(ids, weights=values * g[owner], minlength=len(w)) + l2 * w
        velocity_w = momentum * velocity_w - rate * grad_w
        velocity_b = momentum * velocity_b - rate * float(g.sum())
        w += velocity_w
        b += velocity_b
    return NgramModel(index, idf, w, b)
