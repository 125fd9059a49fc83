"""The most one knowledge-base answer can cost, known before it is answered.

Admission reserves this (tokens, and money at the model's price), so a token or spend
budget holds for ``kb:NAME`` models as for any other: a ``kb:`` request is charged what
its model calls used (the retrieved passages included), and it ignores ``max_tokens``.
The bound is every model call the answer style makes (the judge, then the answer in the
``generate`` style), each with the longest prompt it could be given — the system line,
the earlier turns it would read (from the request, or the stored session), the question,
``kb.chunks`` times the base's longest chunk, and the instructions — plus what they may
generate, plus the answer's text (charged as such when no model was called). Token
counts are :func:`heshi.engines.sizing.text_tokens` upper estimates.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from heshi.apps.kb.answer import (
    ANSWER_ASK,
    CONTEXT,
    DECLINE,
    HANDOFF_TEXT,
    JUDGE_ASK,
    QUOTE_JUDGE_ASK,
    SYSTEM,
    _turns,
)
from heshi.engines.base import JSON, content_text
from heshi.engines.sizing import text_tokens

if TYPE_CHECKING:
    from heshi.apps.kb.answer import KnowledgeBot

# What a chat template adds: per request, and per message (as heshi.engines.sizing counts)
_TEMPLATE, _PER_MESSAGE, _PER_CHUNK = 48, 8, 8  # a chunk's "[n]（heading）" and its gap


async def most_tokens(
    bot: KnowledgeBot,
    kb: str,
    messages: list[JSON],
    *,
    session_id: str | None = None,
    tenant: str | None = None,
) -> int:
    """The most prompt and completion tokens answering ``messages`` from ``kb`` can use."""
    config = bot.config
    base = await asyncio.to_thread(bot.store.get, kb)
    history = _turns(messages[:-1])
    if not history and session_id:
        session = await asyncio.to_thread(bot.sessions.load, session_id, kb, tenant)
        history = session.messages
    earlier = history[-2 * config.history_turns :] if config.history_turns else []
    question = content_text(messages[-1].get("content")) if messages else ""
    index = await asyncio.to_thread(bot.index, kb, base.revision)
    asks = (ANSWER_ASK, JUDGE_ASK, QUOTE_JUDGE_ASK)
    prompt = (
        _TEMPLATE
        + _PER_MESSAGE * (len(earlier) + 2)
        + text_tokens(SYSTEM.format(kb=kb))
        + sum(text_tokens(str(m.get("content") or "")) for m in earlier)
        + text_tokens(CONTEXT.format(materials="", question=question))
        + max(text_tokens(a) for a in asks)
        + config.chunks * (index.longest_chunk_tokens + _PER_CHUNK)
    )
    # the answer's own text, charged as text when no model call reported usage (a quote,
    # a decline, a handoff)
    said = max(
        config.chunks * (index.longest_chunk_tokens + _PER_CHUNK),
        text_tokens(DECLINE),
        *(text_tokens(t) for t in HANDOFF_TEXT.values()),
    )
    judged = bot.judge is not None
    if config.answer_style == "quote":  # the judge, if any; quoting itself calls no model
        return (prompt + 1 if judged else 0) + said
    calls = (2 if judged else 1) * prompt + config.max_answer_tokens + (1 if judged else 0)
    return calls + said
