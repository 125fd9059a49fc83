"""Several local models in one gateway: the ``local`` backend as a set of engines, one per
model, each with its own slots and context, loaded and unloaded while the gateway runs.

Requests name their model (``body["model"]``, the model's own name); the set hands each
to that model's engine. ``heshi ps`` reads :meth:`LocalModels.status`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from heshi.engines.base import JSON, ServedModel, TokenCounting
from heshi.errors import CapabilityMissing, ConfigError, ModelNotFound


class LocalModel(Protocol):
    """What one local model's engine offers (``LlamaCppEngine``, the built-in embedder)."""

    model_name: str

    def served_models(self) -> list[ServedModel]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Loaded:
    """A model in the set, with what loading it cost."""

    engine: Any
    loaded_at: float  # time.time()
    memory_bytes: int | None  # resident memory the process grew by while it loaded


class LocalModels:
    """The ``local`` backend: every local model, by name."""

    name = "local"

    def __init__(self, engines: Mapping[str, Any]) -> None:
        self._models: dict[str, Loaded] = {
            name: Loaded(engine, 0.0, None) for name, engine in engines.items()
        }
        self._lock = asyncio.Lock()
        self._started = False

    # ------------------------------------------------------------------ the set

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, model: str) -> Any:
        """The engine serving ``model`` (``ModelNotFound`` when none does now)."""
        loaded = self._models.get(model)
        if loaded is None:
            raise ModelNotFound(model, list(self._models))
        return loaded.engine

    def served_models(self) -> list[ServedModel]:
        return [m for loaded in self._models.values() for m in loaded.engine.served_models()]

    async def start(self) -> None:
        """Start every model (each records the memory its loading took)."""
        for loaded in self._models.values():
            before = _rss()
            started = time.time()
            await loaded.engine.start()
            if loaded.memory_bytes is None:
                loaded.memory_bytes = _grown(before)
                loaded.loaded_at = started
        self._started = True

    async def close(self) -> None:
        for loaded in self._models.values():
            await loaded.engine.close()
        self._started = False

    async def load(self, engine: Any, check: Callable[[], None] | None = None) -> None:
        """Load one more model; ``ConfigError`` when its name is taken. ``check`` runs
        with the model in the set; when it raises, the model is unloaded again."""
        async with self._lock:
            if engine.model_name in self._models:
                raise ConfigError(
                    f"已加载名为 {engine.model_name} 的模型 / a model named "
                    f"{engine.model_name} is already loaded"
                )
            before = _rss()
            started = time.time()
            await engine.start()
            self._models[engine.model_name] = Loaded(engine, started, _grown(before))
            try:
                if check is not None:
                    check()
            except BaseException:
                del self._models[engine.model_name]
                await engine.close()
                raise

    async def unload(self, model: str, check: Callable[[], None] | None = None) -> None:
        """Stop serving ``model`` and free its memory (requests in flight on it fail).
        ``check`` runs with the model already out of the set; when it raises (something
        still needs the model) the model stays."""
        async with self._lock:
            loaded = self._models.pop(model, None)
            if loaded is None:
                raise ModelNotFound(model, list(self._models))
            try:
                if check is not None:
                    check()
            except BaseException:
                self._models[model] = loaded
                raise
            await loaded.engine.close()

    def status(self) -> list[JSON]:
        """One entry a model: what ``heshi ps`` shows."""
        out = []
        for name, loaded in self._models.items():
            engine = loaded.engine
            served = engine.served_models()[0] if engine.served_models() else None
            stats: dict[str, float] = {}
            stats_of = getattr(engine, "stats", None)
            if callable(stats_of):
                try:
                    stats = stats_of()
                except Exception:  # a model being unloaded has no stats any more
                    stats = {}
            meta = served.meta if served else {}
            out.append(
                {
                    "name": name,
                    "kind": meta.get("kind", "chat"),
                    "path": meta.get("path"),
                    "context_length": served.context_length if served else None,
                    "slots": meta.get("parallel"),
                    "slots_busy": int(stats.get("requests_processing", 0)),
                    "requests_waiting": int(stats.get("requests_deferred", 0)),
                    "tokens_per_second": _rate(stats),
                    "memory_bytes": loaded.memory_bytes,
                    "loaded_at": loaded.loaded_at or None,
                    "thinking": bool(meta.get("thinking")),
                }
            )
        return out

    # ------------------------------------------------------------------ requests

    def _for(self, body: JSON) -> Any:
        return self.get(str(body.get("model")))

    async def chat(self, body: JSON) -> JSON:
        return dict(await self._for(body).chat(body))

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        return self._for(body).stream_chat(body)  # type: ignore[no-any-return]

    async def completion(self, body: JSON) -> JSON:
        return dict(await self._for(body).completion(body))

    def stream_completion(self, body: JSON) -> AsyncIterator[JSON]:
        return self._for(body).stream_completion(body)  # type: ignore[no-any-return]

    async def embeddings(self, body: JSON) -> JSON:
        return dict(await self._for(body).embeddings(body))

    async def rerank(self, body: JSON) -> JSON:
        engine = self._for(body)
        rerank = getattr(engine, "rerank", None)
        if rerank is None:
            raise CapabilityMissing(
                f"模型 '{body.get('model')}' 不能重排序 / model '{body.get('model')}' cannot "
                "rerank",
                param="model",
            )
        return dict(await rerank(body))

    # ------------------------------------------------------------------ token counting

    async def count_prompt_tokens(self, op: str, body: JSON) -> int | None:
        engine = self._models.get(str(body.get("model")))
        if engine is None or not isinstance(engine.engine, TokenCounting):
            return None
        return await engine.engine.count_prompt_tokens(op, body)

    def completion_cap(self, prompt_tokens: int, model: str | None = None) -> int | None:
        engine = self._counting(model)
        return engine.completion_cap(prompt_tokens) if engine else None

    def default_completion(self, prompt_tokens: int, model: str | None = None) -> int:
        engine = self._counting(model)
        return engine.default_completion(prompt_tokens) if engine else 1024

    def _counting(self, model: str | None) -> TokenCounting | None:
        loaded = self._models.get(str(model))
        engine = loaded.engine if loaded else None
        return engine if isinstance(engine, TokenCounting) else None


def _rate(stats: dict[str, float]) -> float | None:
    seconds = stats.get("tokens_predicted_seconds_total") or 0.0
    tokens = stats.get("tokens_predicted_total") or 0.0
    return round(tokens / seconds, 1) if seconds > 0 else None


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _grown(before: int | None) -> int | None:
    after = _rss()
    return None if before is None or after is None else max(0, after - before)
