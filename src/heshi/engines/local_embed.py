"""Embeddings and rerank on the embedded engine: a model loaded to embed (``embeddings:
true``, pooled as configured) or a cross-encoder reranker (``pooling: rank``)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Protocol

import orjson

from heshi.config import LocalEngineConfig
from heshi.engines.base import JSON
from heshi.engines.local_worker import error_from, is_error
from heshi.engines.rerank import documents_text, from_llamacpp, rerank_by_embeddings
from heshi.errors import CapabilityMissing


class _Engine(Protocol):
    """What these methods use of :class:`~heshi.engines.llamacpp.LlamaCppEngine`."""

    config: LocalEngineConfig
    model_name: str
    _executor: Executor | None  # set by start()

    def _require_server(self) -> Any: ...


class EmbeddingCalls(_Engine):
    """The embedded engine's ``/v1/embeddings`` and ``/v1/rerank``."""

    async def embeddings(self, body: JSON) -> JSON:
        """Embeddings, when the engine was started with ``embeddings: true``."""
        if not self.config.embeddings or self.config.pooling == "rank":
            raise CapabilityMissing(
                f"模型 '{self.model_name}' 未启用向量嵌入 / model '{self.model_name}' "
                "cannot embed: it was started for generation (load it with embeddings: true "
                "— a models: entry of heshi.yaml, or heshi models load --embeddings — to "
                "serve it as an embedding model)"
                if self.config.pooling != "rank"
                else f"模型 '{self.model_name}' 是重排序模型 / model '{self.model_name}' is a "
                "reranker: use /v1/rerank",
                param="model",
            )
        return dict(await self._run("handle_embeddings", body))

    async def rerank(self, body: JSON) -> JSON:
        """``/v1/rerank``: a reranker (``pooling: rank``) scores the pairs itself; an
        embedding model ranks by cosine similarity (:mod:`heshi.engines.rerank`)."""
        if self.config.pooling != "rank":
            if not self.config.embeddings:
                raise CapabilityMissing(
                    f"模型 '{self.model_name}' 不能重排序（需要向量或重排序模型）/ model "
                    f"'{self.model_name}' cannot rerank: load an embedding model "
                    "(embeddings: true) or a reranker (pooling: rank)",
                    param="model",
                )
            return await rerank_by_embeddings(self.embeddings, body)
        payload = {"query": body["query"], "documents": documents_text(body)}
        return from_llamacpp(body, await self._run("handle_rerank", payload))

    async def _run(self, handler: str, payload: JSON) -> Any:
        """One call of llama-server's ``handler`` on the engine's executor; its parsed
        reply, or its error raised."""
        call = getattr(self._require_server(), handler)
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(self._executor, call, orjson.dumps(payload))
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and is_error(parsed):
            raise error_from(parsed)
        return parsed
