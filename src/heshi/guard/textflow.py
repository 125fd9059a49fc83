"""Where the guard finds text in requests and responses, and how it screens streams.

``prompt_texts`` lists every text of a request body a chat template renders, each with a
setter so the stage can replace it (masked terms, PII). ``TextFlow`` restores placeholders
and screens one text field of successive stream chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from heshi.engines.base import JSON
from heshi.errors import InvalidRequest
from heshi.guard.pseudonym import StreamRestorer
from heshi.guard.safety import StreamScreener

if TYPE_CHECKING:  # the stage imports this module
    from heshi.guard.stage import Inbound


def _set_item(container: Any, where: Any, value: str) -> None:
    container[where] = value


def prompt_texts(body: JSON) -> list[tuple[Callable[[str], None], str]]:
    """(setter, text) for every text of a chat or completion body that a chat template
    renders: message content (string or text parts), reasoning content, tool-call
    arguments, the completion prompt (string or list of strings) and its suffix."""
    out: list[tuple[Callable[[str], None], str]] = []
    for message in body.get("messages") or ():
        out.extend(_message_texts(message))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        out.append((partial(_set_item, body, "prompt"), prompt))
    elif isinstance(prompt, list):
        for i, item in enumerate(prompt):
            if isinstance(item, str):
                out.append((partial(_set_item, prompt, i), item))
    if isinstance(body.get("suffix"), str):
        out.append((partial(_set_item, body, "suffix"), body["suffix"]))
    return out


def _message_texts(message: JSON) -> list[tuple[Callable[[str], None], str]]:
    out: list[tuple[Callable[[str], None], str]] = []
    content = message.get("content")
    if isinstance(content, str):
        out.append((partial(_set_item, message, "content"), content))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append((partial(_set_item, part, "text"), part["text"]))
    if isinstance(message.get("reasoning_content"), str):
        out.append((partial(_set_item, message, "reasoning_content"), message["reasoning_content"]))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            out.append((partial(_set_item, function, "arguments"), function["arguments"]))
    return out


def refuse_unscreenable(body: JSON) -> None:
    """Requests the guard cannot screen are refused while it is on (400)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and any(not isinstance(p, str) for p in prompt):
        raise InvalidRequest(
            "启用合规防护时不接受 token ID 形式的 prompt / token-ID prompts are not accepted "
            "while the guard is on: send text",
            param="prompt",
        )
    if isinstance(prompt, list) and len(prompt) > 1:
        raise InvalidRequest(
            "启用合规防护时每个请求只能有一个 prompt / one prompt per request while the guard "
            "is on",
            param="prompt",
        )
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest(
            "启用合规防护时不提供 logprobs / logprobs are not available while the guard is on "
            "(they would show screened tokens)",
            param="logprobs",
        )


def is_final(chunk: JSON) -> bool:
    choices = chunk.get("choices") or []
    return bool(choices) and choices[0].get("finish_reason") is not None


def answer_field(choice: JSON) -> tuple[JSON, str]:
    """Where a choice keeps its answer text: ``message.content`` (chat), ``delta.content``
    (chat stream) or ``text`` (completions), as (holder, key)."""
    for key in ("message", "delta"):
        if isinstance(choice.get(key), dict):
            return choice[key], "content"
    return choice, "text"


def text_of(chunk: JSON) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    holder, name = answer_field(choices[0])
    value = holder.get(name)
    return value if isinstance(value, str) else ""


def content_template(chunk: JSON) -> JSON | None:
    return chunk if chunk.get("choices") else None


def with_text(template: JSON, text: str, *, final: bool) -> JSON:
    choice = dict(template["choices"][0])
    if isinstance(choice.get("delta"), dict):
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    choice["finish_reason"] = "stop" if final else None
    return {**template, "choices": [choice]}


class TextFlow:
    """Restores placeholders and screens the text of successive chunks."""

    def __init__(self, inbound: Inbound, field_name: str = "", record: bool = True) -> None:
        self._field = field_name  # "" = the answer text (delta.content or text)
        self._record = record
        self._inbound = inbound
        self._restorer = StreamRestorer(inbound.pseudonyms) if inbound.pseudonyms else None
        engine = inbound.engine if inbound.config.outbound else None
        self._screener = StreamScreener(engine) if engine is not None else None
        self.blocked = False

    def _through(self, text: str, final: bool) -> str:
        if self._restorer is not None:
            text = self._restorer.feed(text) + (self._restorer.flush() if final else "")
        if self._screener is None:
            return text
        out, verdict = self._screener.feed(text)
        self._inbound.out_hits.extend(verdict.hits)
        if final:
            tail, last = self._screener.flush()
            out += tail
            self._inbound.out_hits.extend(last.hits)
            verdict = last if last.blocked else verdict
        self.blocked = verdict.blocked
        return out

    def apply(self, chunk: JSON) -> JSON:
        choices = chunk.get("choices") or []
        if not choices:
            return chunk  # a usage-only chunk
        choice = choices[0]
        choice.pop("logprobs", None)  # tokens the screen never saw
        holder, name = answer_field(choice)
        if self._field:
            name = self._field
            if not isinstance(holder.get(name), str) and choice.get("finish_reason") is None:
                return chunk  # no reasoning in this chunk
        value = holder.get(name)
        text = value if isinstance(value, str) else ""
        final = choice.get("finish_reason") is not None
        out = self._through(text, final)
        if self.blocked and self._inbound.engine is not None:
            content_holder, content_name = answer_field(choice)
            holder.pop(name, None)
            content_holder[content_name] = self._inbound.engine.refusal
            choice["finish_reason"] = "content_filter"
        elif text or out or (final and not self._field):
            holder[name] = out
        if self._record and isinstance(holder.get(name), str):
            self._inbound.output.append(holder[name])
        return chunk
