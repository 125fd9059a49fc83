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

from heshi.engines.base import JSON, content_text

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
        parts.append(content_text(message.get("content"), "\n"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(parts)


def invented_values(arguments: str, conversation: str) -> list[str]:
    """The values in a call's ``arguments`` holding an identifier — five or more digits —
    that the conversation never gave: an order, account or phone number the model made up
    rather than took from the user or a tool result. A value that is only dates and times
    (2026-12-28, 15:00-18:00) holds none; a value whose every number the conversation
    holds (free text quoting the user: "B座12楼1208工位") is not made up; otherwise its
    digits, however separated (138_0013_8000, ORD-2026-05-0001), must occur together in
    the conversation. Integers of nine or more digits count too (an account number
    written as a JSON number); shorter ones are amounts."""
    try:
        values = list(_strings(orjson.loads(arguments)))
    except orjson.JSONDecodeError:
        return []
    runs = [re.sub(r"\D", "", r) for r in _NUMBER_RUN.findall(conversation)]
    said = "\n".join(runs)
    flat = re.sub(r"\s", "", conversation).lower()
    invented = []
    for value in values:
        digits = re.sub(r"\D", "", value)
        if len(digits) < _MIN_ID_DIGITS or not re.search(r"\d", _DATE_OR_TIME.sub("", value)):
            continue
        if re.sub(r"\s", "", value).lower() in flat or any(digits in run for run in runs):
            continue
        pieces = [p for p in re.findall(r"\d+", value) if len(p) > 1]
        if pieces and all(p in said for p in pieces):
            continue
        invented.append(value)
    return invented


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**8:
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
