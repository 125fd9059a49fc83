"""Whether a tool call's identifiers come from the conversation.

A small model asked to call a tool it has no arguments for makes them up: an order number
copied from a description's example, a phone number like 13800138000. Under
``tool_choice: auto`` the engine refuses such a call (``engine.tool_call_grounding``) and
answers in words instead.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from heshi.engines.base import JSON

# An identifier: five or more digits (order, account, card, phone, employee numbers).
_MIN_ID_DIGITS = 5
# dates (2026-12-28, 2026/12) and times (14:30, 09:00:00): never identifiers
_DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:19|20)\d\d[-/.](?:1[0-2]|0?[1-9])(?:[-/.](?:3[01]|[12]\d|0?[1-9]))?(?!\d)"
    r"|(?<!\d)(?:2[0-3]|[01]?\d)[:：][0-5]\d(?:[:：][0-5]\d)?(?!\d)"
)
_NUMBER_RUN = re.compile(r"\d(?:[\d\s\-./]*\d)?")


def conversation_text(body: JSON) -> str:
    """Everything the conversation says (messages and earlier calls' arguments), not the
    tool descriptions: where a call's identifiers must come from."""
    parts: list[str] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(parts)


def invented_values(arguments: str, conversation: str) -> list[str]:
    """The values in a call's ``arguments`` holding an identifier — a run of five or more
    digits, not a date — that appears nowhere in ``conversation``: an order, account or
    phone number the model made up rather than took from the user or a tool result. A
    value is judged by each of its digit runs, so free text that quotes the user ("B座12楼
    1208工位") or a time slot ("15:00-18:00") is not taken for an identifier."""
    try:
        values = list(_strings(orjson.loads(arguments)))
    except orjson.JSONDecodeError:
        return []
    runs = [re.sub(r"\D", "", r) for r in _NUMBER_RUN.findall(conversation)]
    flat = re.sub(r"\s", "", conversation).lower()
    invented = []
    for value in values:
        if re.sub(r"\s", "", value).lower() in flat:
            continue
        for run in _NUMBER_RUN.findall(_DATE_OR_TIME.sub(" ", value)):
            digits = re.sub(r"\D", "", run)
            if len(digits) >= _MIN_ID_DIGITS and not any(digits in said for said in runs):
                invented.append(value)
                break
    return invented


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
