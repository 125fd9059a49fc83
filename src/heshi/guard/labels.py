"""AIGC labels on gateway responses (GB 45438-2025; the label itself: ``heshi.guard.aigc``).

Every generated answer gets the explicit label in its text (``aigc.explicit``: at the
start or end; ``off`` for API callers that show their own notice) — except answers a
program reads rather than a person: tool calls, and answers held to a format
(``response_format`` json_object / json_schema, a ``grammar``), which text appended to
them would break — and every answer the implicit label
``{"AIGC": {...}}``: as a top-level ``AIGC`` field of the response body and an
``x-aigc-label`` header for plain responses; for streams, ``x-aigc-produce-id`` in the
headers and one last chunk with the ``AIGC`` object (its ReservedCode1 is an HMAC over the
whole streamed text, known only at the end).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypedDict

from heshi.config import AigcConfig
from heshi.engines.base import JSON
from heshi.errors import ConfigError
from heshi.guard.aigc import (
    ImplicitLabel,
    check_wording,
    explicit_label,
    key_bytes,
    new_produce_id,
    producer_code,
    reserved_code,
)
from heshi.guard.textflow import answer_field, with_text


class Labeller:
    """Labels for one gateway (producer code and key resolved once, at startup)."""

    def __init__(self, config: AigcConfig) -> None:
        self.config = config
        if not config.uscc:
            raise ConfigError("aigc.enabled 需要 aigc.uscc / aigc.enabled needs aigc.uscc")
        self.producer = producer_code(config.uscc, model_code=config.model_code)
        check_wording(config.wording)
        key = os.environ.get(config.key_env, "")
        if not key:
            raise ConfigError(
                f"未设置 AIGC 签名密钥环境变量 {config.key_env} / the AIGC signing key env var "
                f"{config.key_env} is not set"
            )
        key_bytes(key)  # too short a key fails here, not on every response
        self._key = key

    def label(self, content: str, produce_id: str | None = None) -> ImplicitLabel:
        pid = produce_id or new_produce_id()
        code = reserved_code(content, self._key, label="1", producer=self.producer, produce_id=pid)
        return ImplicitLabel(self.producer, pid, label="1", reserved_code1=code)

    def label_result(self, result: JSON, *, structured: bool = False) -> ImplicitLabel | None:
        """Explicit label into each choice's text (not into tool calls, nor anywhere when
        the answer is ``structured`` data), implicit label into the body; that label.

        A refusal the guard wrote (``content_filter``) is not generated content: no label.
        """
        choices = result.get("choices") or []
        if choices and all(c.get("finish_reason") == "content_filter" for c in choices):
            return None
        texts = []
        for choice in result.get("choices") or ():
            holder, name = answer_field(choice)
            if not isinstance(holder.get(name), str):
                continue
            if not structured and not holder.get("tool_calls"):
                holder[name] = explicit_label(
                    holder[name], self.config.explicit, self.config.wording
                )
            texts.append(holder[name])
        implicit = self.label("".join(texts))
        result.update(implicit.as_json())
        return implicit

    async def label_stream(
        self, produce_id: str, chunks: AsyncIterator[JSON], *, structured: bool = False
    ) -> AsyncGenerator[JSON, None]:
        """The chunks with the explicit label at the start or end (not after tool calls,
        nor in ``structured`` answers) and a last ``AIGC`` chunk (the source is closed
        however the stream ends)."""
        try:
            async for chunk in self._labelled(produce_id, chunks, structured):
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def _labelled(
        self, produce_id: str, chunks: AsyncIterator[JSON], structured: bool
    ) -> AsyncIterator[JSON]:
        position, wording = self.config.explicit, self.config.wording
        if structured:
            position = "off"
        started, ended, refused, called = False, False, False, False
        text: list[str] = []
        template: JSON | None = None
        async for chunk in chunks:
            choices = chunk.get("choices") or []
            if choices:
                template = chunk
                choice = choices[0]
                refused = refused or choice.get("finish_reason") == "content_filter"
                delta = choice.get("delta")
                if isinstance(delta, dict) and delta.get("tool_calls"):
                    called = True  # a tool call is not for a person to read: no label after it
                holder, name = answer_field(choice)
                value = holder.get(name) if isinstance(holder.get(name), str) else None
                if position == "start" and not started and value:
                    holder[name] = explicit_label(value, "start", wording)
                    started = True
                final = choice.get("finish_reason") is not None
                if position == "end" and final and not (ended or refused or called):
                    holder[name] = (holder.get(name) or "") + f"\n\n{wording}"
                    ended = True
                if isinstance(holder.get(name), str):
                    text.append(holder[name])
            yield chunk
        base = {k: template[k] for k in ("id", "object", "created", "model")} if template else {}
        if position == "end" and not (ended or refused or called) and template is not None:
            # The upstream ended without a finish chunk: the label goes in one of its own.
            label = with_text({**base, "choices": template["choices"]}, f"\n\n{wording}",
                              final=False)  # fmt: skip
            text.append(f"\n\n{wording}")
            yield label
        implicit = self.label("".join(text), produce_id)
        yield dict(label_chunk(base, implicit))


class LabelChunk(TypedDict, total=False):
    """The last chunk of a labelled stream: no choices, the implicit label (``AIGC``)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[JSON]
    AIGC: dict[str, str]


def label_chunk(base: JSON, implicit: ImplicitLabel) -> LabelChunk:
    """The stream's last chunk carrying ``implicit``, with ``base``'s id, object, time
    and model (empty when the stream had no chunk to copy them from)."""
    chunk: LabelChunk = {"choices": [], "AIGC": implicit.as_json()["AIGC"]}
    for name in ("id", "object", "created", "model"):
        if name in base:
            chunk[name] = base[name]
    return chunk
