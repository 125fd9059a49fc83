"""How fast a model runs: a roofline for each phase, scaled by calibrated efficiencies.

One request of ``n_in`` prompt tokens and ``n_out`` generated tokens takes

    T = a · (layers · n_out)                       per-layer fixed cost of a decode step
      + s · ((batch − 1) · n_out)                    per-sequence cost of a step beyond the
                                                     first: scheduling, sampling (CPU side)
      + b · (dense weights read per step · n_out) / BW   attention, shared experts, head
      + m · (routed experts read per step · n_out) / BW  MoE expert kernels
      + c · (KV bytes read over all steps) / BW      decode: attention reads the cache
      + d · prefill FLOPs / FLOPS                    prefill: compute-bound
      + r                                            fixed cost of a request (HTTP, tokenizing,
                                                     scheduling it): part of its TTFT
      + e · (layers · n_out · experts)               MoE implementations that loop experts

where BW and FLOPS are the devices' peak memory bandwidth and dense 16-bit tensor rate
(times the tensor-parallel degree; layer-split placement — ``transformers``'
``device_map="auto"``, llama.cpp's default — runs one device at a time). ``1/b``, ``1/c``,
``1/d`` are the fractions of peak an engine's kernels reach for a quantization, ``a`` its
launch and framework overhead. T is linear in the coefficients, so they are fitted by
non-negative least squares on relative error against published measurements
(:mod:`heshi.plan.fit`, sources in :mod:`heshi.plan.sources`); the fitted values live in
``heshi/plan/data/calibration.json``.

Kernels differ by architecture: a MoE's routed experts run in fused-MoE kernels whose
efficiency is not the dense GEMV's (quantized MoE kernels especially), so ``m`` and
``e`` are fitted on MoE measurements only — per engine and quantization where those
exist, else pooled over the engines for that kind of quantization — on top of the dense
coefficients of the same engine and quantization.

Batching: a decode step of B sequences reads the weights once and every sequence's KV
cache, so the aggregate rate grows with B until the step turns compute-bound
(2 · active parameters · B FLOPs per step); a MoE step reads every expert some sequence
routes to (:func:`heshi.plan.memory.experts_touched`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from heshi.catalog import Hardware, ModelSpec
from heshi.plan.memory import (
    Workload,
    kv_bytes_per_token,
    parameter_counts,
    prefill_flops,
    routed_expert_bytes_per_step,
    weight_bytes_read_per_step,
)
from heshi.plan.quant import Quant

__all__ = ["Workload"]  # re-exported: callers build workloads from here

FEATURES = (
    "layer_steps",
    "seq_steps",
    "weight_reads",
    "expert_reads",
    "kv_reads",
    "prefill",
    "request",
    "expert_steps",
)
MOE_FEATURES = ("expert_reads", "expert_steps")  # fitted on MoE measurements only
PREFILL_FEATURES = ("prefill", "request")  # what happens before the first token
DENSE_FEATURES = tuple(f for f in FEATURES if f not in MOE_FEATURES)


@dataclass(frozen=True)
class Placement:
    """How the devices share the model: tensor-parallel (all at once) or layer-split."""

    devices: int
    tensor_parallel: bool

    @property
    def parallel(self) -> int:
        return self.devices if self.tensor_parallel else 1


def features(
    spec: ModelSpec, q: Quant, hw: Hardware, place: Placement, work: Workload
) -> dict[str, float]:
    """The terms of T (seconds per unit coefficient) for one request of ``work``."""
    device = hw.device
    bandwidth = (device.bandwidth_gb_s or 0.0) * 1e9 * place.parallel
    flops = (device.compute_tflops or 0.0) * 1e12 * place.parallel
    if bandwidth <= 0 or flops <= 0:
        raise ValueError(f"{device.id}: no bandwidth or FLOPS figure in the catalog")
    n_in, n_out, batch = work.input_tokens, work.output_tokens, work.batch
    kv_token = kv_bytes_per_token(spec, work.kv_bytes)
    # Sum over steps i of the cache each sequence reads: (n_in + i) tokens, i < n_out.
    kv_read = batch * kv_token * (n_in * n_out + n_out * (n_out - 1) / 2)
    weights = weight_bytes_read_per_step(spec, q, batch)
    experts = routed_expert_bytes_per_step(spec, q, batch)
    # A step is bounded by compute once the batch is large: 2 FLOPs/param/sequence.
    step_flops = 2.0 * parameter_counts(spec).active_linear * batch
    weight_time = max(weights / bandwidth, step_flops / flops) * n_out
    expert_share = experts / weights if weights else 0.0
    return {
        "layer_steps": float(spec.layers * n_out),
        # each sequence beyond the first: a batch-1 measurement cannot tell this cost from
        # the per-layer one, so it is fitted where several sequences ran together only
        "seq_steps": float((batch - 1) * n_out),
        "weight_reads": weight_time * (1 - expert_share),
        "expert_reads": weight_time * expert_share,
        "kv_reads": kv_read / bandwidth,
        "prefill": batch * prefill_flops(spec, n_in) / flops,
        "request": 1.0,
        "expert_steps": float(spec.layers * n_out * spec.moe.experts) if spec.moe else 0.0,
    }


@dataclass(frozen=True)
class Coefficients:
    """Fitted (a, b, c, d, e) for one engine and quantization kind, with the fit's error."""

    values: dict[str, float]
    rows: int  # calibration rows they were fitted on (0 = borrowed from another engine)
    mape: float | None  # in-sample mean absolute percentage error of T
    borrowed_from: str | None = None
    moe_fit: str | None = None  # where a MoE's expert terms come from

    def time(self, terms: dict[str, float]) -> float:
        return sum(self.values.get(name, 0.0) * terms[name] for name in FEATURES)


@cache
def calibration() -> dict[str, Any]:
    """The fitted coefficients (``heshi/plan/data/calibration.json``)."""
    text = (
        resources.files("heshi.plan")
        .joinpath("data")
        .joinpath("calibration.json")
        .read_text("utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def quant_group(q: Quant) -> str:
    """Quantizations that share kernels share coefficients (llama.cpp: its block formats)."""
    if q.is_gguf:
        return "GGUF"
    return {"gptq": "GPTQ-Int4" if q.linear_bits < 8 else "GPTQ-Int8"}.get(q.kind, q.name)


def quant_class(q: Quant) -> str:
    """Kernel families across engines, for pooling MoE fits: 16-bit, 8-bit or 4-bit."""
    if q.is_gguf:
        return "gguf"
    return "16-bit" if q.kind == "float" else ("8-bit" if q.linear_bits >= 8 else "4-bit")


# Engines without measurements of their own borrow the closest calibrated profile.
_BORROW = {"lmdeploy": ("vllm",), "mindie": ("vllm-ascend", "vllm"), "vllm-ascend": ("vllm",),
           "sglang": ("vllm",), "vllm-0.4": ("vllm",), "vllm": ("vllm-0.4",),
           "transformers-4.38": ("transformers",), "transformers": ("transformers-4.38",),
           "llamacpp": ()}  # fmt: skip
# W8A8 computes on int8 tensor units: the 16-bit profile over its 8-bit weights (never a
# weight-only kernel's, which dequantizes to 16 bits on every step)
_GROUP_FALLBACK = {"FP16": "BF16", "W8A8": "BF16", "FP8": "GPTQ-Int8", "AWQ": "GPTQ-Int4",
                   "GPTQ-Int8": "BF16", "GPTQ-Int4": "BF16", "BF16": "GGUF"}  # fmt: skip


def _chains(engine: str, group: str) -> tuple[list[str], list[str]]:
    engines = [engine, *_BORROW.get(engine, ())]
    groups = [group]
    while groups[-1] in _GROUP_FALLBACK:
        groups.append(_GROUP_FALLBACK[groups[-1]])
    return engines, groups


def dense_entry(table: dict[str, Any], engine: str, group: str) -> tuple[dict[str, Any], str]:
    """The dense fit for ``engine`` × ``group``: the engine's own, else a borrowed one."""
    engines, groups = _chains(engine, group)
    for g in groups:  # the right kernels on a related engine beat the wrong kernels
        for source in engines:
            entry = table.get(source, {}).get(g)
            if entry is not None:
                return entry, f"{source}/{g}"
    raise ValueError(f"no speed calibration for engine {engine!r}")


def _moe_entry(fits: dict[str, Any], engine: str, q: Quant) -> tuple[dict[str, Any], str]:
    """The MoE expert terms: fitted for this engine (or the one it borrows from) and
    quantization group, else pooled over serving engines for the kind of quantization."""
    engines, groups = _chains(engine, quant_group(q))
    # An engine that loops experts in Python is nothing like the fused kernels pooled
    # below: a related quantization of its own is the better guess.
    for g in groups if engine.startswith("transformers") else groups[:1]:
        for source in engines:
            entry = fits["groups"].get(source, {}).get(g)
            if entry is not None:
                return entry, f"{source}/{g}"
    pool = quant_class(q) if quant_class(q) in fits["pooled"] else "all"
    return fits["pooled"][pool], f"pooled over {pool}"


def coefficients(
    engine: str, q: Quant, moe: bool = False, cal: dict[str, Any] | None = None
) -> Coefficients:
    """Calibrated coefficients for ``engine`` and ``q`` (borrowed where none exist); for a
    MoE, the expert-kernel terms from MoE measurements. ``cal``: another fit's body (the
    benchmark's cross-validation), else the shipped one."""
    cal = cal or calibration()
    group = quant_group(q)
    entry, used = dense_entry(cal["speed"], engine, group)
    values = {f: v for f, v in entry["values"].items() if f not in MOE_FEATURES}
    values["expert_reads"] = values.get("weight_reads", 1.0)
    borrowed = None if used == f"{engine}/{group}" else used
    moe_note = None
    if moe:
        chosen, moe_note = _moe_entry(cal["moe"], engine, q)
        values["expert_reads"] = values["weight_reads"] * chosen["expert_factor"]
        values["expert_steps"] = chosen.get("expert_steps", 0.0)
        values["seq_steps"] = values.get("seq_steps", 0.0) + chosen.get("routing_seq_steps", 0.0)
    return Coefficients(
        values=values,
        rows=entry["rows"],
        mape=entry["mape"],
        borrowed_from=borrowed,
        moe_fit=moe_note,
    )


@dataclass(frozen=True)
class SpeedPrediction:
    prefill_seconds: float
    decode_seconds: float
    coefficients: Coefficients

    @property
    def total_seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds


def predict_time(
    spec: ModelSpec, q: Quant, hw: Hardware, place: Placement, work: Workload, engine: str
) -> SpeedPrediction:
    """Prefill and decode wall time of one batch of ``work`` on ``engine``."""
    coef = coefficients(engine, q, moe=spec.moe is not None)
    terms = features(spec, q, hw, place, work)
    prefill = sum(coef.values.get(f, 0.0) * terms[f] for f in PREFILL_FEATURES)
    return SpeedPrediction(prefill, coef.time(terms) - prefill, coef)
