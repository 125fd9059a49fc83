"""``/v1/rerank`` in the shape Jina's and Cohere's APIs use (and Dify, RAGFlow and
LangChain speak): a query and documents in, the documents' indices ordered by relevance
out.

A reranker model (a cross-encoder GGUF loaded with ``pooling: rank``: bge-reranker,
Qwen3-Reranker) scores each (query, document) pair itself. Any embedding model reranks
too, as a bi-encoder: the cosine similarity of the query's and each document's vectors.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from heshi.engines.base import JSON


def documents_text(body: JSON) -> list[str]:
    """The documents' texts (a document is a string or ``{"text": …}``)."""
    out = []
    for doc in body.get("documents") or ():
        out.append(doc if isinstance(doc, str) else str(doc.get("text", "")))
    return out


def rerank_answer(body: JSON, scores: list[float], tokens: int) -> JSON:
    """The Jina/Cohere answer for ``scores`` (one per document, in input order)."""
    texts = documents_text(body)
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    top_n = body.get("top_n")
    if isinstance(top_n, int):
        order = order[:top_n]
    keep_text = body.get("return_documents", True) is not False
    results = []
    for i in order:
        result: JSON = {"index": i, "relevance_score": scores[i]}
        if keep_text:
            result["document"] = {"text": texts[i]}
        results.append(result)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "object": "rerank",
        "created": int(time.time()),
        "model": body.get("model"),
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def rerank_by_embeddings(embed: Callable[[JSON], Awaitable[JSON]], body: JSON) -> JSON:
    """Rerank with an embedding model: cosine similarity of query and document vectors
    (in ``[-1, 1]``; higher is more relevant)."""
    texts = documents_text(body)
    answer = await embed({"model": body.get("model"), "input": [str(body["query"]), *texts]})
    vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]
    query, docs = vectors[0], vectors[1:]
    scores = [_cosine(query, doc) for doc in docs]
    usage = answer.get("usage") or {}
    return rerank_answer(body, scores, int(usage.get("prompt_tokens") or 0))


def from_llamacpp(body: JSON, raw: Any) -> JSON:
    """The Jina/Cohere answer from llama.cpp's ``/rerank`` result (a cross-encoder's
    scores; llama.cpp may already have cut and ordered them)."""
    results = raw.get("results") if isinstance(raw, dict) else raw
    scores = [0.0] * len(documents_text(body))
    for item in results or ():
        scores[int(item["index"])] = float(item.get("relevance_score", item.get("score", 0.0)))
    usage = raw.get("usage") if isinstance(raw, dict) else None
    tokens = int((usage or {}).get("prompt_tokens") or (usage or {}).get("total_tokens") or 0)
    return rerank_answer(body, scores, tokens)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
