"""The ``auto`` model's rule: score a request, send it to the small or the large tier.

The rule is deliberately simple so an operator can predict it from the request alone.
Each line adds one point; the request goes to ``large`` when the score reaches
``threshold`` (default 2), otherwise to ``small``:

==============  ==========================================================================
``long``        all message text (system, user, assistant; or ``prompt``) is at least
                ``long_prompt_chars`` characters (default 2000)
``very-long``   … and at least 4 × ``long_prompt_chars``: one more point, so a long
                document alone reaches the default threshold (small models have small
                contexts and lose the thread on long inputs)
``deep``        the conversation has at least ``deep_conversation_turns`` user turns
``<category>``  one point per cue category found in the **user** turns (system prompts
                are the same on every request of an app and would make every request
                "hard"; assistant text only echoes): built-in ``reasoning``, ``math``,
                ``code`` — see :data:`BUILTIN_CUES`
``tools`` /     the request offers ``tools`` (or legacy ``functions``), or asks for
``schema``      ``response_format`` ``json_schema`` / ``json_object``
==============  ==========================================================================

Cues are written ``category:word``. A word is matched as a case-insensitive substring;
a word written ``/like this/`` is a case-sensitive regular expression. ``routing.auto.cues``
replaces the built-in list entirely (copy :data:`BUILTIN_CUES` to extend it); an entry
without a ``category:`` prefix counts under ``custom``.

The decision and its reasons go into the ``x-heshi-route`` header, e.g.
``auto->large(score=3:math,code,long)`` or ``auto->small(score=0)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from heshi.config import AutoRouteConfig
from heshi.engines.base import JSON
from heshi.errors import ConfigError

BUILTIN_CUES: tuple[str, ...] = (
    # reasoning: asking for a why, a proof, an analysis or a comparison
    *(
        f"reasoning:{w}"
        for w in (
            "为什么",
            "推理",
            "证明",
            "分析",
            "论证",
            "原因",
            "逻辑",
            "推导",
            "权衡",
            "优缺点",
            "利弊",
            "比较一下",
            "一步一步",
            "逐步",
            "step by step",
            "reason",
            "prove",
            "analy",
            "explain why",
            "trade-off",
            "pros and cons",
        )
    ),
    # math: named topics, symbols, and digits next to "=" or an operator ("3x + 5 = 20")
    *(
        f"math:{w}"
        for w in (
            "计算",
            "方程",
            "积分",
            "概率",
            "数学",
            "导数",
            "微分",
            "矩阵",
            "求解",
            "solve",
            "equation",
            "integral",
            "derivative",
            "probability",
            "calculate",
            "∫",
            "∑",
            "√",
            r"/\d\s*=|=\s*\d|\d\s*[+*×÷^]\s*\d/",
        )
    ),
    # code: programming words, code fences, and Python / SQL keywords in code position
    *(
        f"code:{w}"
        for w in (
            "代码",
            "函数",
            "编程",
            "算法",
            "报错",
            "调试",
            "正则",
            "bug",
            "```",
            "python",
            "java",
            "sql",
            "import ",
            "traceback",
            r"/\bdef\s+\w+\s*\(/",
            r"/\bclass\s+\w+\s*[:({]/",
            r"/\bSELECT\s+[\w*]/",
        )
    ),
)
_CATEGORY = re.compile(r"^([a-z][a-z0-9_-]*):(.+)$", re.DOTALL)
_VERY_LONG_FACTOR = 4


@dataclass(frozen=True, slots=True)
class Decision:
    """Which tier ``auto`` picked, with the score and the reasons that made it."""

    tier: str  # "small" or "large"
    name: str  # the public model name of that tier
    score: int
    reasons: tuple[str, ...]

    def header(self) -> str:
        """The ``x-heshi-route`` segment, e.g. ``auto->large(score=3:math,code,long)``."""
        why = ":" + ",".join(self.reasons) if self.reasons else ""
        return f"auto->{self.tier}(score={self.score}{why})"


class ComplexityRule:
    """The compiled rule for one ``routing.auto`` configuration."""

    def __init__(self, config: AutoRouteConfig) -> None:
        self.config = config
        self._cues = compile_cues(BUILTIN_CUES if config.cues is None else config.cues)

    def decide(self, body: JSON) -> Decision:
        """Score ``body`` (a chat or completion request) and pick a tier. Pure CPU."""
        cfg = self.config
        reasons: list[str] = []
        score = 0
        total = 0
        user_turns = 0
        found: set[str] = set()
        for role, text in _texts(body):
            total += len(text)
            if role != "user":
                continue
            user_turns += 1
            for category, pattern in self._cues:
                if category not in found and pattern.search(text):
                    found.add(category)
        for category, _ in self._cues:  # in configured order, so the header is stable
            if category in found and category not in reasons:
                reasons.append(category)
        score += len(reasons)
        if total >= cfg.long_prompt_chars:
            reasons.append("long")
            score += 1
            if total >= _VERY_LONG_FACTOR * cfg.long_prompt_chars:
                reasons.append("very-long")
                score += 1
        if user_turns >= cfg.deep_conversation_turns:
            reasons.append("deep")
            score += 1
        if structured := _structured(body):
            reasons.append(structured)
            score += 1
        if score >= cfg.threshold:
            return Decision("large", cfg.large, score, tuple(reasons))
        return Decision("small", cfg.small, score, tuple(reasons))


def compile_cues(cues: Sequence[str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """One alternation per category, so each category costs one scan of the text."""
    words: dict[str, list[str]] = {}
    for cue in cues:
        match = _CATEGORY.match(cue)
        category, word = (match.group(1), match.group(2)) if match else ("custom", cue)
        if len(word) > 2 and word.startswith("/") and word.endswith("/"):
            expr = word[1:-1]
            try:
                re.compile(expr)
            except re.error as exc:
                raise ConfigError(
                    f"routing.auto.cues 中的正则 {word!r} 无效：{exc} / "
                    f"routing.auto.cues: regular expression {word!r} is invalid: {exc}"
                ) from exc
            words.setdefault(category, []).append(f"(?-i:{expr})")
        elif word:
            words.setdefault(category, []).append(re.escape(word))
    return tuple(
        (category, re.compile("|".join(parts), re.IGNORECASE)) for category, parts in words.items()
    )


def _texts(body: JSON) -> Iterator[tuple[str, str]]:
    """(role, text) for every message content part, or ("user", prompt) for completions."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                role = str(message.get("role", ""))
                yield from ((role, text) for text in _content(message.get("content")))
        return
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        yield "user", prompt
    elif isinstance(prompt, list):
        yield from (("user", p) for p in prompt if isinstance(p, str))


def _content(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):  # [{"type": "text", "text": …}, {"type": "image_url"…}]
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _structured(body: JSON) -> str | None:
    if body.get("tools") or body.get("functions"):
        return "tools"
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        return "schema"
    return None
