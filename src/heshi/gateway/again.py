"""Asking again when the model declined a request the guard read as safe.

A small model samples a decline now and then for an ordinary request (外卖少送了一杯饮料 →
抱歉，我无法提供外卖服务). When the guard marked the request (``Inbound.again``, see
:func:`heshi.guard.policy.may_ask_again`) and the answer opens with a decline
(:func:`heshi.guard.refusal.is_refusal`), the same request is asked again — up to
``policy.retries`` more times while the answers decline — and the last answer is the one
sent. Each further call is the caller's, admitted and metered as an internal request (its
own ledger row); the answer's ``usage`` counts every call.

A stream holds its text back until its first sentence is complete (or ``OPENING_CHARS``,
or its end) — the time to the first token grows by that sentence — and, on a decline,
closes the upstream and sends the last answer whole, in the stream's format.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable

from heshi.engines.base import JSON
from heshi.errors import HeshiError
from heshi.gateway.exchange import Exchange
from heshi.guard.refusal import OPENING_CHARS, is_refusal
from heshi.guard.textflow import is_final, text_of, with_text

log = logging.getLogger("heshi.guard")

Again = Callable[[Exchange], Awaitable[JSON]]  # the request asked once more, whole

# A stream's opening is judged once a sentence ends after this many characters: a decline
# says so in its first sentence (作为AI助手，我不能提供…。 / I'm sorry, but I can't…).
_FIRST_SENTENCE = re.compile(r"\S.{7,}?(?:[。！？!?\n]|\.(?=\s|$))", re.DOTALL)


def declined(result: JSON) -> bool:
    """Whether the one choice of a chat answer is a decline (not a tool call)."""
    choices = result.get("choices") or []
    if len(choices) != 1 or not isinstance(choices[0], dict):
        return False
    message = choices[0].get("message")
    if not isinstance(message, dict) or message.get("tool_calls"):
        return False
    content = message.get("content")
    return isinstance(content, str) and is_refusal(content)


async def answer_again(x: Exchange, result: JSON, again: Again, retries: int = 1) -> None:
    """Replace ``result``'s declined answer, in place, by asking again — up to ``retries``
    more times while the answers decline; the last answer is sent and ``usage`` counts
    every call. A call that fails leaves the answer before it as it was."""
    last = await _asked(x, again, retries)
    if last is not None:
        result["choices"] = last["choices"]
        result["usage"] = _summed(result.get("usage"), last.get("usage"))


async def _asked(x: Exchange, again: Again, retries: int) -> JSON | None:
    """The request asked again until an answer does not decline or ``retries`` calls were
    made: the last answer, its ``usage`` the sum of these calls'; None when the first of
    them failed. ``x-heshi-asked-again`` says how many calls were made (a failed one too:
    it has its ledger row); none once the client of a whole answer has left."""
    last: JSON | None = None
    spent: JSON | None = None
    for n in range(1, retries + 1):
        if x.control.gone:
            break
        x.headers["x-heshi-asked-again"] = str(n)
        try:
            answer = await again(x)
        except HeshiError as exc:  # over budget, no backend: the answer before stands
            log.warning("再问一次失败 / asking again failed for %s: %s", x.request_id, exc)
            break
        choices = answer.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            break
        spent = _summed(spent, answer.get("usage"))
        last = {**answer, "usage": spent}
        if not declined(answer):
            break
    return last


def _summed(first: object, second: object) -> JSON | None:
    """Two calls' usage added up; where one has none, the other's."""
    if not isinstance(first, dict) or not isinstance(second, dict):
        for usage in (second, first):
            if isinstance(usage, dict):
                return usage
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {
        k: int(first.get(k) or 0) + int(second.get(k) or 0)
        for k in keys
        if isinstance(first.get(k), int) or isinstance(second.get(k), int)
    }


def _opening_only(chunk: JSON) -> bool:
    """A chunk of answer text (or none) for one choice: no tool call, no reasoning."""
    choices = chunk.get("choices") or []
    if len(choices) > 1:
        return False
    delta = choices[0].get("delta") if choices else {}
    if not isinstance(delta, dict):
        return False
    return not (delta.get("tool_calls") or delta.get("reasoning_content"))


async def stream_again(
    x: Exchange, chunks: AsyncGenerator[JSON, None], again: Again, retries: int = 1
) -> AsyncGenerator[JSON, None]:
    """``chunks``, or — when their opening declines — the answer of asking again (up to
    ``retries`` more times while the answers decline) as chunks."""
    held: list[JSON] = []
    text = ""
    finished = exhausted = False
    try:
        async for chunk in chunks:
            held.append(chunk)
            if not _opening_only(chunk):
                break  # a tool call or reasoning: not a plain decline; let it through
            text += text_of(chunk)
            finished = is_final(chunk)
            if finished or len(text) >= OPENING_CHARS or _FIRST_SENTENCE.search(text):
                break
        else:
            exhausted = True
        template = next((c for c in held if c.get("choices")), None)
        if template is not None and _opening_only(held[-1]) and is_refusal(text):
            rest = [chunk async for chunk in chunks] if finished else []  # its usage
            await chunks.aclose()  # the slot is freed before the second call needs one
            prompt, completion = x.charged()  # what the first call's ledger row will say
            usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                     "total_tokens": prompt + completion}  # fmt: skip
            second = await _asked(x, again, retries)
            if second is not None:
                second["usage"] = _summed(usage, second.get("usage"))
                for chunk in _as_chunks(template, second):
                    yield chunk
                return
            # the first answer stands; cut at its opening, it ends there
            held += rest if finished else [with_text(template, "", final=True)]
            exhausted = True
        for chunk in held:
            yield chunk
        if not exhausted:
            async for chunk in chunks:
                yield chunk
    finally:
        await chunks.aclose()


def _as_chunks(template: JSON, result: JSON) -> list[JSON]:
    """A whole chat answer as a stream's chunks: its text (its tool calls and reasoning
    with it), its end, its usage."""
    choice = result["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    content = message.get("content")
    body = with_text(template, content if isinstance(content, str) else "", final=False)
    delta = body["choices"][0].get("delta")
    if isinstance(delta, dict):
        if isinstance(message.get("reasoning_content"), str):
            delta["reasoning_content"] = message["reasoning_content"]
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(calls) if isinstance(call, dict)
            ]
    end = with_text(template, "", final=True)
    end["choices"][0]["finish_reason"] = choice.get("finish_reason") or "stop"
    out = [body, end]
    if isinstance(result.get("usage"), dict):
        out.append({**{k: v for k, v in template.items() if k != "choices"}, "choices": [],
                    "usage": result["usage"]})  # fmt: skip
    return out
