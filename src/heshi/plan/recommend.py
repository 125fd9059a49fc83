"""Rank the configurations that fit a hardware and workload; explain the ones that do not.

A configuration is model × quantization × engine × tensor-parallel degree on the given
devices. It is feasible when the engine runs there, the kernels exist, and the weights
plus the KV cache of ``concurrency`` sequences of ``context`` tokens fit the memory the
engine may use; it must meet the workload's service level (tokens/s per user and TTFT
p95) and ``min_quality`` when given. Feasible ones are ranked by published quality
(:mod:`heshi.plan.quality`: MMLU-Redux in the workload's mode), equal quality (within a
point of the best) going to a published checkpoint, then the newer generation, then an
engine with measurements of its own, then the cheaper deployment (fewer devices, more
memory headroom), then the faster. Options whose speed
cannot be predicted (no bandwidth figure for the device) come after those checked
against the service level. For larger models that were rejected, the
reason is kept in plain words with the smallest change that would make them fit.
"""

from __future__ import annotations

import math

from heshi import catalog
from heshi.catalog import Hardware, ModelSpec
from heshi.errors import InvalidRequest
from heshi.plan import quality as scores
from heshi.plan.memory import (
    GIB,
    KV_BYTES,
    Workload,
    kv_bytes_per_token,
    parameter_counts,
    state_bytes_per_sequence,
)
from heshi.plan.option import Option, Request
from heshi.plan.predict import MINDIE_W8A8, predict
from heshi.plan.quant import QUANTS, Quant, quant
from heshi.plan.queueing import ttft_quantile

SERVING_ENGINES = ("vllm", "sglang", "lmdeploy", "mindie", "vllm-ascend", "llamacpp")
_GGUF_DEFAULTS = ("Q4_K_M", "Q8_0")  # llama.cpp can convert any supported dense model
_REJECTED_SHOWN = 6  # the next-larger models that did not fit, smallest first


def _tp_degrees(spec: ModelSpec, devices: int) -> list[int]:
    """Tensor-parallel sizes the engines accept: powers of two dividing the heads."""
    degrees, tp = [], 1
    while tp <= devices:
        if spec.attention_heads % tp == 0 and (spec.kv_heads % tp == 0 or tp % spec.kv_heads == 0):
            degrees.append(tp)
        tp *= 2
    return degrees


def _quants_for(spec: ModelSpec, engine: str) -> list[tuple[Quant, bool]]:
    """Quantizations to try: the published ones, plus GGUF conversions for llama.cpp and
    msModelSlim W8A8 conversions of the models MindIE lists, for MindIE."""
    published = [quant(name) for name in spec.quantizations if name in QUANTS]
    if engine == "llamacpp":
        gguf = [q for q in published if q.is_gguf]
        names = {q.name for q in gguf}
        extra = [quant(n) for n in _GGUF_DEFAULTS if n not in names and spec.moe is None]
        return [(q, True) for q in gguf] + [(q, False) for q in extra]
    if not published:
        published = [quant("BF16")]
    # W8A8 on Ascend: vLLM-Ascend serves the msModelSlim checkpoints it publishes; MindIE
    # the models its support list marks W8A8, converted by the user (msModelSlim marks its
    # Qwen3-14B/32B recipe MindIE-only), as MindIE's W8A8 guide does it
    keep = engine == "vllm-ascend"
    out = [(q, True) for q in published if not q.is_gguf and (keep or q.kind != "w8a8")]
    if engine == "mindie" and spec.id in MINDIE_W8A8:
        out.append((quant("W8A8"), False))
    return out


def _engines(hw: Hardware) -> list[str]:
    return [e for e in SERVING_ENGINES if e in hw.device.engines]


def _evaluate(
    req: Request, spec: ModelSpec, q: Quant, engine: str, tp: int, published: bool
) -> Option:
    hw = Hardware(tp, req.hardware.device)
    context = min(req.context, spec.context or req.context)
    preset = req.preset
    kv_cache = req.kv_cache if engine == "llamacpp" else "f16"
    kv = KV_BYTES[kv_cache]
    n_in = min(preset.input_tokens, context - 1)
    work = Workload(n_in, preset.output_tokens, req.concurrency, kv)
    at_load = predict(spec, q, engine, hw, work)
    single = predict(spec, q, engine, hw, Workload(n_in, 1, 1, kv))
    # The shared start is in the engine's prefix cache: a request prefills the rest (the
    # attention over the cached part is left out: small beside the matrix work).
    cached = min(preset.shared_prefix_tokens, n_in - 1) if engine in PREFIX_CACHING else 0
    fresh = predict(spec, q, engine, hw, Workload(n_in - cached, 1, 1, kv)) if cached else single
    reasons = [p for p in single.problems if "per device" not in p]
    # Memory: weights plus each concurrent sequence's cache (and a hybrid model's recurrent
    # state). llama.cpp gives every slot its full context up front; the paged engines
    # (vLLM, SGLang, LMDeploy, MindIE) hold the tokens a sequence has — the workload's
    # typical prompt and answer — and only need one sequence of the full context to fit.
    typical = min(context, n_in + preset.output_tokens)
    held = context if engine == "llamacpp" else typical
    state = state_bytes_per_sequence(spec) / tp
    token = kv_bytes_per_token(spec, kv) / tp
    per_sequence = token * held + state
    free = (at_load.usable_memory_gb - single.required_memory_gb) * GIB
    longest = token * context + state
    max_sequences = max(int(free // per_sequence), 0) if per_sequence else req.concurrency
    if free < longest:
        max_sequences = 0  # not even one sequence of the full context fits
    if not reasons and free <= 0:
        reasons.append(
            f"权重等每卡需 {single.required_memory_gb:.1f} GB，可用 "
            f"{at_load.usable_memory_gb:.1f} GB / weights alone need "
            f"{single.required_memory_gb:.1f} GB per device, {at_load.usable_memory_gb:.1f} GB "
            "usable"
        )
    elif not reasons and max_sequences < req.concurrency:
        need = (single.required_memory_gb * GIB + per_sequence * req.concurrency) / GIB
        held_text = f"{context // 1024}k" if held == context else f"~{held:,}"
        reasons.append(
            f"{req.concurrency}×{held_text} token 的 KV 缓存需 "
            f"{per_sequence * req.concurrency / GIB:.1f} GB，每卡共需 {need:.1f} GB、可用 "
            f"{at_load.usable_memory_gb:.1f} GB / KV cache for {req.concurrency}×"
            f"{held_text} tokens needs {per_sequence * req.concurrency / GIB:.1f} GB per "
            f"device ({need:.1f} GB with weights, {at_load.usable_memory_gb:.1f} GB usable); "
            f"{max_sequences} sequences fit"
        )
    # one request alone waits for nobody; under load, for the prompts ahead of it (the
    # finite-source queue of heshi.plan.queueing: the others decode or wait to prefill)
    ttft = ttft_quantile(req.concurrency, fresh.prefill_seconds, at_load.decode_seconds)
    if req.ttft_limit and ttft > req.ttft_limit and not reasons:
        limit = f"{ttft:.2f} s > {req.ttft_limit:g} s"
        reasons.append(f"首 token p95 ≈ {limit} / TTFT p95 ≈ {limit}")
    decode = at_load.as_json()["decode_tokens_per_s"]
    # Steady state: while N users each send a request and read its answer, the devices
    # also prefill every new prompt, and decoding waits meanwhile. Over one round the
    # answers' tokens take N prefills plus the decode steps of N streams.
    step = at_load.decode_seconds / preset.output_tokens if decode else 0.0
    round_s = req.concurrency * fresh.prefill_seconds + preset.output_tokens * step
    per_user = preset.output_tokens / round_s if decode and round_s > 0 else 0.0
    if req.speed_floor and decode is not None and per_user < req.speed_floor and not reasons:
        reasons.append(
            f"每用户 {per_user:.1f} token/s < 服务要求 {req.speed_floor:g} / "
            f"{per_user:.1f} tokens/s per user < the {req.speed_floor:g} the workload needs"
        )
    mode = scores.mode_for(preset.name)
    if mode == "non-thinking" and spec.id in scores.ALWAYS_THINKING and not reasons:
        reasons.append(
            f"{spec.name} 总是先推理再回答 / {spec.name} always reasons before it answers: "
            f"its answers run far past the workload's {preset.output_tokens} tokens"
        )
    if req.context > context:
        at_load.notes.append(
            f"上下文按模型上限 {context} 计 / context limited to the model's {context} tokens "
            f"(asked {req.context})"
        )
    ranked_by = scores.score(spec, scores.RANK_BY, mode)
    floor_score = None
    if req.min_quality:
        metric, floor = req.min_quality
        found = scores.score(spec, metric, mode)
        floor_score = found.value if found else None
        if not reasons and floor_score is None:  # the first reason is the one to act on
            reasons.append(f"无公开 {metric} 分数 / no published {metric} score")
        elif not reasons and floor_score is not None and floor_score < floor:
            reasons.append(f"{metric} {floor_score:g} < {floor:g}")
    return Option(
        spec=spec,
        q=q,
        engine=engine,
        tensor_parallel=tp,
        hardware=hw,
        prediction=at_load,
        max_sequences=max_sequences,
        per_user_tokens_per_s=per_user,
        aggregate_tokens_per_s=per_user * req.concurrency,
        ttft_p95_s=ttft,
        quality=ranked_by.value if ranked_by else None,
        feasible=not reasons,
        reasons=reasons,
        published=published,
        kv_cache=kv_cache,
        floor_score=floor_score,
        mode=mode,
        quality_mode=ranked_by.mode if ranked_by else None,
    )


# Engines that keep a prefix cache across requests as Heshi launches them: vLLM (automatic
# prefix caching), SGLang (RadixAttention), llama.cpp (a slot's cached prompt), LMDeploy
# (--enable-prefix-caching, which --emit sets). MindIE's is left out: off unless configured.
PREFIX_CACHING = ("vllm", "vllm-ascend", "sglang", "llamacpp", "lmdeploy")
# Engines whose servers can run side by side on their own devices behind one route.
REPLICABLE = ("vllm", "sglang", "lmdeploy", "llamacpp", "vllm-ascend")


def _replicated(
    req: Request, spec: ModelSpec, q: Quant, engine: str, tp: int, published: bool, copies: int
) -> Option:
    """``copies`` servers of ``tp`` devices each, the users shared out evenly."""
    share = Request(**{**req.__dict__, "concurrency": math.ceil(req.concurrency / copies)})
    option = _evaluate(share, spec, q, engine, tp, published)
    option.replicas = copies
    option.aggregate_tokens_per_s *= copies
    option.reasons = [f"{r}（每份副本 / per copy of {copies}）" for r in option.reasons]
    return option


def _rank(options: list[Option]) -> list[Option]:
    """Best first: options whose speed was checked against the service level; then
    quality, options within ``SAME_QUALITY`` points of the best of their group counting as
    equal; among equals a published checkpoint, the newer generation, an engine with
    measurements of its own (not a borrowed profile), fewer devices, more headroom, and
    the faster per user."""
    by_quality = sorted(
        options,
        key=lambda o: (o.speed_known, -math.inf if o.quality is None else o.quality),
        reverse=True,
    )
    group: dict[int, int] = {}
    top: float | None = None
    known: bool | None = None
    count = 0
    for option in by_quality:
        score = option.quality
        same_unscored = score is None and top is None and count and option.speed_known == known
        if not same_unscored and (
            option.speed_known != known
            or score is None
            or top is None
            or top - score > scores.SAME_QUALITY
        ):
            count += 1
            top, known = score, option.speed_known
        group[id(option)] = count

    def key(o: Option) -> tuple[float, ...]:
        released = scores.generation(o.spec)
        return (
            -group[id(o)],
            float(o.published),
            float(released.toordinal()) if released else 0.0,
            float(not o.prediction.speed_borrowed),
            -float(o.devices),
            round(o.headroom_gb, 1),
            o.per_user_tokens_per_s,
        )

    return sorted(options, key=key, reverse=True)


def recommend(req: Request) -> tuple[list[Option], list[Option]]:
    """(feasible options best first, the best rejected option of each larger model)."""
    if req.concurrency < 1 or req.context < 256:
        raise InvalidRequest("concurrency ≥ 1 and context ≥ 256 / 并发 ≥ 1，上下文 ≥ 256")
    if req.kv_cache not in KV_BYTES:
        raise InvalidRequest(
            f"--kv-cache 取 {' | '.join(KV_BYTES)} / --kv-cache takes {' or '.join(KV_BYTES)}, "
            f"got {req.kv_cache!r}",
            param="kv_cache",
        )
    specs = (
        [catalog.model(m) for m in req.models]
        if req.models
        else [s for s in catalog.models().values() if s.id.startswith("Qwen/")]
    )
    options: list[Option] = []
    for spec in specs:
        for engine in _engines(req.hardware):
            for q, published in _quants_for(spec, engine):
                for tp in _tp_degrees(spec, req.hardware.count):
                    if engine == "llamacpp" and tp > 1 and req.hardware.device.kind == "cpu":
                        continue
                    options.append(_evaluate(req, spec, q, engine, tp, published))
                    copies = req.hardware.count // tp
                    if copies > 1 and engine in REPLICABLE and req.hardware.device.kind != "cpu":
                        options.append(_replicated(req, spec, q, engine, tp, published, copies))
    feasible = [o for o in options if o.feasible]
    # Per model, keep the best variant: smallest TP that fits, then fastest — one with
    # tensor parallelism over the devices and one with data-parallel copies, when both fit.
    best: dict[tuple[str, str, str, bool], Option] = {}
    for o in sorted(feasible, key=lambda o: (o.tensor_parallel, -o.per_user_tokens_per_s)):
        best.setdefault((o.spec.id, o.q.name, o.engine, o.replicas > 1), o)
    ranked = _rank(list(best.values()))
    top_size = max((parameter_counts(o.spec).total for o in ranked), default=0)
    rejected_by_model: dict[str, Option] = {}
    for o in options:
        if o.feasible or parameter_counts(o.spec).total <= top_size:
            continue
        # The most promising rejection: most devices used, fewest problems, most sequences.
        current = rejected_by_model.get(o.spec.id)
        key = (o.tensor_parallel, -len(o.reasons), o.max_sequences)
        if current is None or key > (
            current.tensor_parallel,
            -len(current.reasons),
            current.max_sequences,
        ):
            rejected_by_model[o.spec.id] = o
    rejected = sorted(rejected_by_model.values(), key=lambda o: parameter_counts(o.spec).total)[
        :_REJECTED_SHOWN
    ]
    return ranked, rejected
