"""A blocked message from someone who may be in crisis is not answered with the bare
refusal: the refusal says where to find help.

The guard blocks some messages of people who write about taking their own life (我有点想死,
我有自残的冲动…不知道能跟谁说): the band judge reads them as requests for harm
(docs/benchmarks.md). Whether they were blocked rightly or not, 抱歉，这个问题我无法回答
is the worst answer such a person can get. When the newest user message speaks of suicide
or self-harm, the refusal is followed by ``guard.crisis``: by default the emergency numbers
and 12356, the national psychological assistance hotline the National Health Commission
set up (in service everywhere since 1 May 2025; 人民日报海外版, 2024-12-27).
"""

from __future__ import annotations

import re

from heshi.engines.base import JSON, content_text
from heshi.guard.ngrams import normalized

# read after folding (traditional → simplified, full width, case, separators inside words)
_WORDS = re.compile(
    "自杀|轻生|寻死|想死|不想活|活不下去|活着没意思|活着没有意义|结束(?:自己的)?生命|了结自己|"
    "自残|自伤|自虐|割腕|跳楼|跳河|烧炭|安眠药|"
    r"suicid|kill (?:my|him|her|them)sel(?:f|ves)|end (?:my|his|her) life|self[- ]?harm|"
    r"hurt(?:ing)? myself|want to die"
)


def in_crisis(text: str) -> bool:
    """Whether ``text`` speaks of suicide or self-harm."""
    return bool(_WORDS.search(normalized(text)))


def newest_user_text(body: JSON) -> str:
    """The text of the request's newest user message, or its completion prompt."""
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def refusal_for(refusal: str, crisis: str, body: JSON) -> str:
    """``refusal``, followed by ``crisis`` when the newest user message is about suicide
    or self-harm ("" turns that off)."""
    if crisis and in_crisis(newest_user_text(body)):
        return f"{refusal}\n\n{crisis}"
    return refusal
