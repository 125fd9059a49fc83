"""The optional guard-model stage: a safety classifier served by any configured backend.

Qwen3Guard-Gen (e.g. on vLLM behind an alias in ``heshi.yaml``) answers a chat request
with lines such as ``Safety: Unsafe`` / ``Categories: Violent`` (and, when it judges an
assistant turn, ``Refusal: Yes|No``); see https://github.com/QwenLM/Qwen3Guard. The
prompt is judged as a one-turn conversation; a plain answer as prompt + answer. Levels
in ``guard.model.block`` refuse, those in ``guard.model.flag`` are recorded. If the
classifier cannot be reached, ``guard.model.on_error`` decides: ``allow`` (the lexicon
stage still ran) or ``block``.

Categories map to TC260-003 risks so verdicts sit beside the lexicon's in the audit log.
The mapping is Heshi's reading of the two taxonomies.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from heshi.engines.base import JSON, content_text
from heshi.errors import AdmissionUnavailable, QuotaExceeded

CATEGORY_RISKS = {
    "Violent": "A6",
    "Non-violent Illegal Acts": "A8",
    "Sexual Content or Sexual Acts": "A6",
    "PII": "D6",
    "Suicide & Self-Harm": "D1",
    "Unethical Acts": "D7",
    "Politically Sensitive Topics": "A2",
    "Copyright Violation": "C1",
    "Jailbreak": "A8",
}
_SAFETY = re.compile(r"Safety:\s*(Safe|Unsafe|Controversial)", re.IGNORECASE)
_CATEGORIES = re.compile(r"Categories:\s*(.+)", re.IGNORECASE)

Classify = Callable[[list[JSON]], Awaitable[str]]


class Consult(Protocol):
    """Ask the model ``alias`` about ``messages`` on a request's behalf (``options``: more
    fields of the chat body, e.g. ``logprobs``); the answer's first choice."""

    def __call__(
        self, alias: str, messages: list[JSON], options: JSON | None = None
    ) -> Awaitable[JSON]: ...


def choice_text(choice: JSON) -> str:
    """The text of a chat completion's choice (empty when it has none)."""
    message = choice.get("message")
    return content_text(message.get("content")) if isinstance(message, dict) else ""


@dataclass(frozen=True)
class ModelVerdict:
    level: str  # "Safe" | "Controversial" | "Unsafe" | "Error"
    categories: tuple[str, ...]

    def risks(self) -> list[str]:
        return [CATEGORY_RISKS.get(c, "A8") for c in self.categories] or ["A8"]


def parse(text: str) -> ModelVerdict:
    """The verdict in a Qwen3Guard answer; unreadable answers count as ``Error``."""
    safety = _SAFETY.search(text)
    if safety is None:
        return ModelVerdict("Error", ())
    level = safety.group(1).capitalize()
    found = _CATEGORIES.search(text)
    names = [c.strip() for c in found.group(1).split(",")] if found else []
    return ModelVerdict(level, tuple(c for c in names if c and c.lower() != "none"))


async def judge(classify: Classify, prompt: str, answer: str | None = None) -> ModelVerdict:
    """Ask the classifier about a prompt (and the answer to it)."""
    messages: list[JSON] = [{"role": "user", "content": prompt}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    try:
        return parse(await classify(messages))
    except (QuotaExceeded, AdmissionUnavailable):
        # The caller's own quota ran out (the classifier's tokens count against it): that
        # refuses the request; it is not the classifier failing, which on_error may allow.
        raise
    except Exception:  # the classifier is down or answered garbage: the policy decides
        return ModelVerdict("Error", ())
