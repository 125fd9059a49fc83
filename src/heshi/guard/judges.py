"""Judges of a prompt beside the lexicons: the trained classifier and the guard model,
their verdicts as the guard's hits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from heshi.config import GuardConfig
from heshi.engines.base import JSON, content_text
from heshi.guard.classifier import SafetyClassifier, screen
from heshi.guard.guard_model import Classify, ModelVerdict
from heshi.guard.safety import Hit

CLASSIFIER = "classifier"  # the category of the trained classifier's hits
_NOT_SCORED = frozenset({"assistant", "system", "developer"})


async def classified(model: SafetyClassifier, cfg: GuardConfig, body: JSON) -> list[Hit]:
    """The classifier's hits on the newest user and tool messages, or a completion's
    prompt(s). Not system or developer messages: an application's own instructions
    (你从中国商务单据中抽取字段… scores 0.73) are not its users' requests."""
    texts = [
        text
        for message in body.get("messages") or ()
        if isinstance(message, dict) and message.get("role") not in _NOT_SCORED
        for text in [content_text(message.get("content"))]
        if text.strip()
    ]
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
    texts += [p for p in prompts if isinstance(p, str)]
    texts = [t for t in texts if t.strip()][-cfg.classifier.messages :]
    if not texts:
        return []
    found = [v for v in await screen(model, texts) if v.unsafe >= model.threshold]
    sure = cfg.classifier.block_above  # the confident band blocks whatever the action
    return [
        Hit(
            f"p={v.unsafe:.2f}",
            CLASSIFIER,
            v.risk,
            "block" if sure is not None and v.unsafe >= sure else cfg.classifier.action,
            0,
            0,
        )
        for v in found
    ]


def model_hits(verdict: ModelVerdict, cfg: GuardConfig) -> list[Hit]:
    """The guard model's verdict as hits (``model:<category>``), with the policy's action."""
    rules = cfg.model
    if verdict.level == "Error":
        action = "block" if rules.on_error == "block" else None
    elif verdict.level in rules.block:
        action = "block"
    elif verdict.level in rules.flag:
        action = "flag"
    else:
        action = None
    if action is None:
        return []
    names = verdict.categories or ("unspecified",)
    return [
        Hit(verdict.level, f"model:{name}", risk, action, 0, 0)
        for name, risk in zip(names, verdict.risks(), strict=True)
    ]


def bound(classify: Callable[[str, list[JSON]], Awaitable[str]], alias: str) -> Classify:
    async def ask(messages: list[JSON]) -> str:
        return await classify(alias, messages)

    return ask
