"""The gateway's stages: admission, the compliance guard and AIGC labels.

Each implements :class:`heshi.gateway.pipeline.Stage`; the order they run in is the
pipeline's (``[Admit, Label, Guard]``, outermost first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from heshi.engines.base import JSON, CostBounded, Engine, TokenCounting, asked_completion_tokens
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.errors import ContextLengthExceeded, PermissionDenied
from heshi.gateway.again import Again, answer_again, declined, stream_again
from heshi.gateway.exchange import Exchange, Sizing
from heshi.gateway.governance import Governance
from heshi.gateway.pipeline import Chunks
from heshi.gateway.replies import Refusal
from heshi.guard.aigc import header_value, new_produce_id
from heshi.guard.crisis import refusal_for
from heshi.guard.labels import Labeller
from heshi.guard.safety import most_severe
from heshi.guard.stage import GuardStage
from heshi.routing.router import RouteFacts

# What a request may generate on an engine that does not say (test doubles; every
# engine Heshi ships states its own cap).
_UNKNOWN_ENGINE_COMPLETION = 1024

Ask = Callable[[Exchange, str, list[JSON], JSON | None], Awaitable[JSON]]


class Admit:
    """Reserve the most a request can cost, in tokens and in money, before any backend is
    called.

    The prompt is counted exactly by an engine that can (the embedded one: its own chat
    template and tokenizer) and estimated from above otherwise
    (:func:`heshi.engines.sizing.estimate_prompt_tokens`); the completion is
    ``max_tokens`` (no more than the engine's context can hold), or what the engine
    allows when it is unset — the rest of the local context, or a remote backend's
    ``max_output_tokens``, which the backend is then told to obey.
    When a request may go to several backends (routes, fallbacks) the largest count and
    cap of them is reserved.
    """

    span_in: str | None = "admission"  # trace span names (heshi.tracing)
    span_out: str | None = None  # nothing happens on the way out

    def __init__(self, gov: Governance, engines: Mapping[str, Engine]) -> None:
        self.gov = gov
        self.engines = engines
        # Checked once: a runtime protocol check costs ~10 µs, on every request otherwise.
        self._counting: dict[str, TokenCounting | None] = {
            name: engine if isinstance(engine, TokenCounting) else None
            for name, engine in engines.items()
        }
        self._bounded: dict[str, CostBounded | None] = {
            name: engine if isinstance(engine, CostBounded) else None
            for name, engine in engines.items()
        }

    async def before(self, x: Exchange) -> None:
        scopes = self.gov.scopes(x.key, internal=x.internal)
        money = self.gov.money_scopes(x.key)
        # An engine's cost bound (a knowledge base's: a read of its store) matters only when
        # a limit will count the reservation.
        x.sizing = await self.size(x, bound=bool(money) or any(s.limits.any for s in scopes))
        # A must-run request reserves nothing (it is still refused when a limit is already
        # used up) and is charged what it used when it settles.
        tokens = 0 if x.must_run else x.sizing.total
        # Money first: when the token scopes then refuse, settling the money at 0 undoes it
        # completely (a money scope has a budget only; an rpm entry could not be undone).
        if money:
            cost = self.gov.cost(x.model, x.sizing.prompt, x.sizing.completion)
            if cost is None and not x.internal:
                raise _unpriced(x.model, money[0].kind)
            x.spend = await self.gov.reserve(money, 0 if x.must_run else cost or 0)
        try:
            x.reservation = await self.gov.reserve(scopes, tokens)
        except BaseException:
            spend, x.spend = x.spend, None
            if spend is not None:
                await self.gov.settle(spend, 0)
            raise

    async def size(self, x: Exchange, *, bound: bool = True) -> Sizing:
        """The tokens to reserve for ``x`` (``ContextLengthExceeded`` when its counted
        prompt cannot fit the only engine that could answer it)."""
        op = "chat" if x.endpoint == "guard" else x.endpoint
        assert x.plan is not None
        targets = list(dict.fromkeys((t.backend, t.model) for e in x.plan.chain for t in e.targets))
        generates = op not in ("embeddings", "rerank")
        asked = asked_completion_tokens(x.body) if generates else None
        sizing = Sizing(exact=True)
        estimate: int | None = None
        for backend, model in targets:
            engine = self._counting[backend]
            body = x.body if x.body.get("model") == model else {**x.body, "model": model}
            counted = await engine.count_prompt_tokens(op, body) if engine else None
            if counted is None:
                if estimate is None:
                    estimate = estimate_prompt_tokens(x.body)
                sizing.exact = False
            prompt = counted if counted is not None else estimate
            assert prompt is not None
            sizing.prompt = max(sizing.prompt, prompt)
            if generates:
                # An estimated prompt is never subtracted from a context: it may be far
                # above the real count (4x for English), and a refusal must be certain.
                completion = _completion(engine, model, counted, asked, single=len(targets) == 1)
                bounded = self._bounded.get(backend) if bound else None
                most = await bounded.most_tokens(op, body) if bounded else None
                # reserved as completion: the prompt reserved is also what a request
                # without reported usage is charged, and that must stay the prompt's
                sizing.completion = max(sizing.completion, completion, most or 0)
        return sizing

    async def after(self, x: Exchange, result: JSON) -> None:
        return None

    def stream(self, x: Exchange, chunks: Chunks) -> Chunks:
        return chunks


def _unpriced(model: str, kind: str) -> PermissionDenied:
    """A caller with a spend budget asked for a model whose spend cannot be counted."""
    who = ("此 API 密钥", "this API key") if kind.startswith("key") else ("此租户", "this tenant")
    refusal = PermissionDenied(
        f"{who[0]}有费用预算，而模型 '{model}' 在 pricing 中没有价格，无法计费 / {who[1]} has a"
        f" spend budget and model '{model}' has no price in the pricing table, so its spend"
        " could not be counted; ask an operator to price it",
        param="model",
        reason="key.model_not_priced",
    )
    refusal.code = "model_not_priced"
    return refusal


def _completion(
    engine: TokenCounting | None,
    model: str,
    counted: int | None,
    asked: int | None,
    *,
    single: bool,
) -> int:
    """What ``engine`` may generate for a prompt of ``counted`` tokens (None: not counted),
    the caller having asked for ``asked`` (None: not said)."""
    if engine is None:
        return asked if asked is not None else _UNKNOWN_ENGINE_COMPLETION
    cap = engine.completion_cap(counted or 0, model)
    if counted is not None and cap is not None and cap <= 0:
        if single:
            raise ContextLengthExceeded(
                prompt_tokens=counted, max_tokens=asked, context=counted + cap
            )
        return 0  # this target cannot take it; a fallback may
    if asked is not None:  # the engine cannot go past its context, if it has one
        return min(asked, cap) if cap is not None else asked
    return engine.default_completion(counted or 0, model)


class Guard:
    """The compliance guard (:mod:`heshi.guard.stage`): prompts screened and transformed
    before the call, answers restored and screened after it. Its guard-model calls go
    through ``ask`` — admitted and metered as internal requests of the caller."""

    span_in: str | None = "guard.in"
    span_out: str | None = "guard.out"

    def __init__(self, guard: GuardStage, ask: Ask, again: Again) -> None:
        self.guard = guard
        self.ask = ask
        self.again = again  # the request asked once more (heshi.gateway.again)

    async def before(self, x: Exchange) -> Refusal | None:
        if x.endpoint not in {"chat", "completions"}:
            return None

        async def classify(alias: str, messages: list[JSON], options: JSON | None = None) -> JSON:
            return await self.ask(x, alias, messages, options)

        # ``classify`` refers to ``x`` and is kept on x.guard: a reference cycle, broken
        # when the request is recorded (so each request does not wait for the cyclic GC).
        inbound = await self.guard.inbound(x.tenant, x.key_id, x.body, classify=classify)
        x.guard = inbound
        if not inbound.config.enabled:
            return None
        x.guard_header = inbound.verdict
        if not inbound.blocked:
            return None
        x.reason = "guard.block"
        x.route = RouteFacts(backend="guard", backend_header="guard", route="guard:block")
        refusal = inbound.engine.refusal if inbound.engine else inbound.config.refusal
        return Refusal(refusal_for(refusal, inbound.config.crisis, x.body))

    async def after(self, x: Exchange, result: JSON) -> None:
        inbound = x.guard
        if inbound is None or not inbound.config.enabled:
            return
        if inbound.again and declined(result):
            await answer_again(x, result, self.again, inbound.config.policy.retries)
        outbound = self.guard.outbound_result(inbound, result)
        if outbound != "block":
            outbound = await self.guard.outbound_model(inbound, result) or outbound
        x.guard_header = most_severe([outbound, inbound.action]) or "pass"

    def stream(self, x: Exchange, chunks: Chunks) -> Chunks:
        inbound = x.guard
        if inbound is None or not inbound.config.enabled:
            return chunks
        if inbound.again:
            chunks = stream_again(x, chunks, self.again, inbound.config.policy.retries)
        return self.guard.outbound_stream(inbound, None, chunks)


class Label:
    """GB 45438 AIGC labels on generated text (:mod:`heshi.guard.labels`)."""

    span_in: str | None = None
    span_out: str | None = "label"

    def __init__(self, labeller: Labeller) -> None:
        self.labeller = labeller

    async def before(self, x: Exchange) -> None:
        return None

    async def after(self, x: Exchange, result: JSON) -> None:
        if x.endpoint not in {"chat", "completions"}:
            return
        implicit = self.labeller.label_result(result, structured=structured(x.body))
        if implicit is not None:
            x.headers["x-aigc-label"] = header_value(implicit)
            x.produce_id = implicit.produce_id

    def stream(self, x: Exchange, chunks: Chunks) -> Chunks:
        produce_id = x.produce_id = new_produce_id()
        x.headers["x-aigc-produce-id"] = produce_id
        return self.labeller.label_stream(produce_id, chunks, structured=structured(x.body))


def structured(body: JSON) -> bool:
    """Whether the answer is held to a format a program parses (text added to it would
    break the parse): ``response_format`` json_object / json_schema, or a ``grammar``."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    return kind in {"json_object", "json_schema"} or bool(body.get("grammar"))
