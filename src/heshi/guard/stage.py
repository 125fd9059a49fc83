"""The guard as a gateway stage: prompts in, generated text out, per tenant.

Inbound (before any backend is called): every message text is screened with the tenant's
lexicons — a ``block`` verdict answers with the refusal text instead of calling the model
and counts a violation against the key (``SuspensionTracker``) — then the newest user
messages are scored by the trained classifier (``heshi.guard.classifier``; its blocks
are refusals but not violations: an estimate is no evidence against a key), and personal
information is redacted, masked or replaced by per-request placeholders, as the tenant's
``guard.pii`` says. Outbound: placeholders are restored and the text is screened again;
on a stream both happen chunk by chunk with the least text held back, and a ``block``
ends the stream with the refusal and ``finish_reason: "content_filter"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from heshi.audit.records import AuditEntry
from heshi.config import GuardConfig, HeshiConfig
from heshi.engines.base import JSON, prepend
from heshi.guard.classifier import SafetyClassifier
from heshi.guard.guard_model import Consult, judge
from heshi.guard.judges import ESTIMATES, bound, classified, model_hits, scored
from heshi.guard.pii import masked, redact, scan
from heshi.guard.policy import (
    apply_plain,
    apply_policy,
    may_ask_again,
    plain_text,
    policy_text,
    wanted,
)
from heshi.guard.pseudonym import Pseudonymizer
from heshi.guard.safety import Hit, Lexicon, SafetyEngine, most_severe
from heshi.guard.suspension import SuspensionTracker
from heshi.guard.textflow import (
    TextFlow,
    answer_field,
    content_template,
    is_final,
    prompt_texts,
    refuse_unscreenable,
    text_of,
    with_text,
)

log = logging.getLogger("heshi.guard")


@dataclass
class Inbound:
    """What the inbound stage decided for one request."""

    config: GuardConfig
    engine: SafetyEngine | None
    hits: list[Hit] = field(default_factory=list)
    blocked: bool = False
    pseudonyms: Pseudonymizer | None = None
    pii_found: int = 0
    prompt: str = ""  # the prompt texts as received (masked before the audit log)
    score: float | None = None  # the classifier's highest score (None: not scored)
    again: bool = False  # a decline is answered by asking once more (policy.may_ask_again)
    out_hits: list[Hit] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # the answer as sent to the caller

    policy_version: str = ""  # hash of the tenant's guard settings (audit)
    lexicon_version: str | None = None  # name@version#sha256 of the lists (audit)
    # (alias, messages, options) → a guard model's answer, asked on this request's behalf
    classify: Consult | None = None

    @property
    def action(self) -> str | None:
        """The most severe inbound action, None when nothing was found."""
        return "block" if self.blocked else most_severe(h.action for h in self.hits)

    @property
    def verdict(self) -> str:
        return self.action or "pass"


Texts = list[tuple[Callable[[str], None], str]]


async def _screen(
    result: Inbound, policy: _Policy, body: JSON, texts: Texts, judge_alias: str
) -> None:
    """Lexicons on every text, then the trained classifier on the newest user messages
    (the ``judge_alias`` model on its uncertain band), then the guard model — each only while
    nothing before it blocked."""
    cfg = policy.config
    if cfg.inbound and result.engine is not None:
        for i, (setter, text) in enumerate(texts):
            verdict = result.engine.check(text)
            result.hits.extend(verdict.hits)
            if verdict.action == "replace":  # the model sees the masked terms
                setter(verdict.text)
                texts[i] = (setter, verdict.text)
        result.blocked = any(h.action == "block" for h in result.hits)
    if not result.blocked and policy.classifier is not None:
        ask = scored(result.classify, judge_alias) if result.classify is not None else None
        hits, result.score = await classified(policy.classifier, cfg, body, ask)
        result.hits.extend(hits)
        result.blocked = any(h.action == "block" for h in result.hits)
    if not result.blocked and cfg.model.alias and result.classify is not None:
        verdict_m = await judge(bound(result.classify, cfg.model.alias), result.prompt)
        result.hits.extend(model_hits(verdict_m, cfg))
        result.blocked = any(h.action == "block" for h in result.hits)


def _protect(result: Inbound, texts: Texts) -> None:
    """Personal information redacted, masked or replaced by placeholders in place."""
    mode = result.config.pii
    pseudonyms = Pseudonymizer() if mode == "pseudonymize" else None
    for setter, text in texts:
        found = scan(text)
        if not found:
            continue
        result.pii_found += len(found)
        setter(
            pseudonyms.protect(text, found) if pseudonyms is not None else redact(text, found, mode)
        )
    result.pseudonyms = pseudonyms if pseudonyms and pseudonyms.active else None


def _clean(text: str) -> str:
    """Text any database stores: NUL (valid JSON, refused by PostgreSQL) removed."""
    return text.replace("\x00", "")


def _fit(text: str, width: int) -> str:
    """``text`` cut to a column's width, keeping its end (the digest of a version)."""
    text = _clean(text)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


@dataclass(frozen=True)
class _Policy:
    """One tenant's guard: settings, lexicon engine and the versions the audit records."""

    config: GuardConfig
    engine: SafetyEngine | None
    version: str
    lexicon_version: str | None
    classifier: SafetyClassifier | None = None

    @classmethod
    def build(cls, cfg: GuardConfig) -> _Policy:
        engine = None
        if cfg.enabled and (cfg.inbound or cfg.outbound):
            lexicons = [Lexicon.load(p) for p in cfg.lexicons] or [Lexicon.seed()]
            merged = lexicons[0]
            for extra in lexicons[1:]:
                merged.merge(extra)
            engine = SafetyEngine.shared(merged, dict(cfg.actions), cfg.refusal)
        lexicon = engine.lexicon if engine else None
        classifier = None
        if cfg.enabled and cfg.inbound and cfg.classifier.enabled:
            classifier = SafetyClassifier.load(cfg.classifier.weights)
            if cfg.classifier.threshold is not None:
                classifier = classifier.with_threshold(cfg.classifier.threshold)
        return cls(
            cfg,
            engine,
            hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16],
            f"{lexicon.name}@{lexicon.version}#{lexicon.digest[:12]}" if lexicon else None,
            classifier,
        )


class GuardStage:
    """Per-process guard state: engines per tenant (built once) and suspensions."""

    def __init__(
        self, config: HeshiConfig, suspend: Callable[[str, str], Any] | None = None
    ) -> None:
        self.config = config
        self._suspend = suspend  # (key id, reason) → stores the suspension (blocking call)
        self._policies: dict[str | None, _Policy] = {}
        self.tracker = SuspensionTracker()

    def load(self) -> None:
        """Build every tenant's policy now (lexicon files read and checked), so a broken
        lexicon or override stops start-up instead of failing requests later."""
        for tenant in (None, *self.config.tenants):
            self._policy(tenant)

    def _policy(self, tenant: str | None) -> _Policy:
        """The tenant's settings, engine and versions, resolved once (not per request)."""
        policy = self._policies.get(tenant)
        if policy is None:
            policy = self._policies[tenant] = _Policy.build(self.config.guard_for(tenant))
        return policy

    async def inbound(
        self,
        tenant: str | None,
        key_id: str | None,
        body: JSON,
        *,
        classify: Consult | None = None,
    ) -> Inbound:
        """Screen and transform ``body`` in place; ``blocked`` means: answer with refusal.

        ``classify(alias, messages, options)`` asks the guard model (when the tenant has
        one) and the band judge; it returns the answer's first choice."""
        policy = self._policy(tenant)
        cfg = policy.config
        result = Inbound(
            cfg,
            policy.engine,
            policy_version=policy.version,
            lexicon_version=policy.lexicon_version,
            classify=classify,
        )
        if not cfg.enabled:
            return result
        refuse_unscreenable(body)
        texts = prompt_texts(body)
        result.prompt = "\n".join(text for _, text in texts)
        await _screen(
            result, policy, body, texts, cfg.classifier.judge.model or self.config.engine.name
        )
        if key_id is not None and cfg.suspension.enabled:
            # A guard model that could not answer, or an estimate (the trained classifier's,
            # the band judge's), is not the caller's violation.
            violated = any(
                h.action == "block" and h.term != "Error" and h.category not in ESTIMATES
                for h in result.hits
            )
            await self._count(key_id, violated, cfg)
        if not result.blocked and cfg.pii != "off":
            _protect(result, texts)
        result.again = not result.blocked and may_ask_again(
            cfg.policy, result.score, bool(result.hits), body
        )
        if not result.blocked and wanted(cfg.policy, result.score, bool(result.hits)):
            flagged = [h.risk for h in result.hits if h.action == "flag"]
            apply_policy(body, policy_text(cfg.policy, flagged))
        elif not result.blocked:
            apply_plain(body, plain_text(cfg.policy))
        return result

    async def _count(self, key_id: str, violated: bool, cfg: GuardConfig) -> None:
        if not self.tracker.record(key_id, violated, cfg) or self._suspend is None:
            return
        reason = (
            f"guard: {cfg.suspension.consecutive} violations in a row or "
            f"{cfg.suspension.daily} in a day"
        )
        log.warning("暂停密钥 / suspending key %s: %s", key_id, reason)
        try:
            await asyncio.to_thread(self._suspend, key_id, reason)
        except Exception as exc:  # the database is away: count again on the next violation
            log.error("暂停密钥失败 / could not suspend key %s: %s", key_id, exc)
            return
        self.tracker.forget(key_id)

    def audit_entry(
        self,
        inbound: Inbound,
        *,
        tenant: str,
        key_id: str | None,
        request_id: str,
        client_ip: str | None,
        model: str,
        produce_id: str | None = None,
    ) -> AuditEntry:
        """What the audit log keeps of one guarded request: texts with PII masked."""
        verdicts = [
            {"category": h.category, "risk": h.risk, "level": level, "action": h.action}
            for level, hits in (("inbound", inbound.hits), ("outbound", inbound.out_hits))
            for h in hits
        ]
        return AuditEntry(
            tenant=_fit(tenant, 64),
            request_id=_fit(request_id, 128),
            input=_clean(masked(inbound.prompt)),
            output=_clean(masked("".join(inbound.output))),
            verdicts=verdicts,
            key_id=key_id,
            client_ip=_fit(client_ip, 45) if client_ip else None,
            # The digest names the exact lists; a long merged name is cut, not rejected.
            lexicon_version=_fit(inbound.lexicon_version, 128) if inbound.lexicon_version else None,
            policy_version=inbound.policy_version,
            model_version=_fit(model, 128),
            produce_id=_fit(produce_id, 64) if produce_id else None,
            ts=datetime.now(UTC),  # the request's time, not the batch's
        )

    async def outbound_model(self, inbound: Inbound, result: JSON) -> str | None:
        """The guard model's judgement of a plain answer; ``block`` replaces it in place."""
        cfg = inbound.config
        classify = inbound.classify
        if not (cfg.enabled and cfg.model.alias and cfg.model.outbound and classify):
            return None
        choices = result.get("choices") or []
        message = choices[0].get("message") if choices else None
        answer = message.get("content") if isinstance(message, dict) else None
        if not isinstance(answer, str) or choices[0].get("finish_reason") == "content_filter":
            return None
        verdict = await judge(bound(classify, cfg.model.alias), inbound.prompt, answer)
        hits = model_hits(verdict, cfg)
        inbound.out_hits.extend(hits)
        if not any(h.action == "block" for h in hits):
            return "flag" if hits else None
        assert isinstance(message, dict)
        message["content"] = inbound.engine.refusal if inbound.engine else cfg.refusal
        choices[0]["finish_reason"] = "content_filter"
        inbound.output[:] = [message["content"]]
        return "block"

    def outbound_text(self, inbound: Inbound, text: str) -> tuple[str, str | None]:
        """A whole generated text: restored and screened; (text, action)."""
        if inbound.pseudonyms is not None:
            text = inbound.pseudonyms.restore(text)
        if not (inbound.config.enabled and inbound.config.outbound and inbound.engine):
            return text, None
        verdict = inbound.engine.check(text, by_sound=False)  # a model does not evade
        inbound.out_hits.extend(verdict.hits)
        if verdict.blocked:
            return inbound.engine.refusal, "block"
        return verdict.text, verdict.action

    def outbound_result(self, inbound: Inbound, result: JSON) -> str | None:
        """Apply ``outbound_text`` to a unary completion in place; the action taken."""
        actions: list[str | None] = []
        for choice in result.get("choices") or ():
            holder, field_name = answer_field(choice)
            choice_actions = [self._outbound_side_fields(inbound, holder)]
            text = holder.get(field_name)
            if isinstance(text, str):
                holder[field_name], action = self.outbound_text(inbound, text)
                choice_actions.append(action)
            choice.pop("logprobs", None)  # tokens the screen never saw
            if "block" in choice_actions:
                holder[field_name] = inbound.engine.refusal if inbound.engine else text
                holder.pop("reasoning_content", None)
                holder.pop("tool_calls", None)
                choice["finish_reason"] = "content_filter"
            if isinstance(holder.get(field_name), str):
                inbound.output.append(holder[field_name])
            actions += choice_actions
        return most_severe(actions)

    def _outbound_side_fields(self, inbound: Inbound, message: JSON) -> str | None:
        """Reasoning content and tool-call arguments: restored and screened like the text."""
        fields: list[tuple[JSON, str]] = [(message, "reasoning_content")]
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                fields.append((function, "arguments"))
        actions: list[str | None] = []
        for holder, name in fields:
            value = holder.get(name)
            if isinstance(value, str):
                holder[name], action = self.outbound_text(inbound, value)
                actions.append(action)
        return most_severe(actions)

    async def outbound_stream(
        self, inbound: Inbound, first: JSON | None, rest: AsyncIterator[JSON]
    ) -> AsyncGenerator[JSON, None]:
        """The chunks with placeholders restored and text screened, chunk by chunk.

        Text held back (a possible placeholder, the screening window) is released with
        the chunk that carries ``finish_reason``, or in one extra chunk when the upstream
        ends without one.
        """
        flow = TextFlow(inbound)
        reasoning = TextFlow(inbound, field_name="reasoning_content", record=False)
        template: JSON | None = None
        finished = False
        chunks = prepend(first, rest)
        try:
            async for chunk in chunks:
                template = content_template(chunk) or template
                finished = finished or is_final(chunk)
                yield flow.apply(reasoning.apply(chunk))
                if flow.blocked or reasoning.blocked:
                    return
            if not finished and template is not None:
                tail = flow.apply(reasoning.apply(with_text(template, "", final=True)))
                delta = tail["choices"][0].get("delta") or {}
                if text_of(tail) or delta.get("reasoning_content"):
                    yield tail
        finally:
            await chunks.aclose()  # closes the upstream however the stream ends
