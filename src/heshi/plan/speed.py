"""How fast a model runs: a roofline for each phase, scaled by calibrated efficiencies.

One request of ``n_in`` prompt tokens and ``n_out`` generated tokens takes

    T = a · (layers · n_out)                       per-layer fixed cost of a decode step
      + b · (weights read per step · n_out) / BW     decode: weights streamed from memory
      + c · (KV bytes read over all steps) / BW      decode: attention reads the cache
      + d · prefill FLOPs / FLOPS                    prefill: compute-bound
      + e · (layers · n_out · experts)               MoE implementations that loop experts

where BW and FLOPS are the devices' peak memory bandwidth and dense 16-bit tensor rate
(times the tensor-parallel degree; layer-split "pipeline" placement, as ``transformers``'
``device_map="auto"`` does, runs one device at a time). ``1/b``, ``1/c`` and ``1/d`` are
the fractions of peak an engine reaches, ``a`` its launch and framework overhead. T is
linear in (a, b, c, d, e), so they are fitted per engine and quantization by non-negative
least squares on relative error against Qwen's published measurements
(:mod:`heshi.plan.fit`); the fitted values live in ``heshi/plan/data/calibration.json``.

Batching: a decode step of B sequences reads the weights once and every sequence's KV
cache, so the aggregate rate grows with B until the step turns compute-bound
(2 · active parameters · B FLOPs per step).
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
    weight_bytes_read_per_token,
)
from heshi.plan.quant import Quant

__all__ = ["Workload"]  # re-exported: callers build workloads from here

FEATURES = ("layer_steps", "weight_reads", "kv_reads", "prefill", "expert_steps")


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
    weights = weight_bytes_read_per_token(spec, q)
    if spec.moe is not None and batch > 1:
        # More sequences touch more experts: expected distinct experts per layer.
        p = parameter_counts(spec)
        moe = spec.moe
        touched = moe.experts * (1 - (1 - moe.experts_per_token / moe.experts) ** batch)
        extra = (touched - moe.experts_per_token) / moe.experts * (p.linear - p.active_linear)
        weights += max(extra, 0.0) * q.linear_bits / 8
    # A step is bounded by compute once the batch is large: 2 FLOPs/param/sequence.
    step_flops = 2.0 * parameter_counts(spec).active_linear * batch
    weight_time = max(weights / bandwidth, step_flops / flops)
    return {
        "layer_steps": float(spec.layers * n_out),
        "weight_reads": weight_time * n_out,
        "kv_reads": kv_read / bandwidth,
        "prefill": batch * prefill_flops(spec, n_in) / flops,
        "expert_steps": float(spec.layers * n_out * spec.moe.experts) if spec.moe else 0.0,
    }


@dataclass(frozen=True)
class Coefficients:
    """Fitted (a, b, c, d, e) for one engine and quantization kind, with the fit's error."""

    values: dict[str, float]
    rows: int  # calibration rows they were fitted on (0 = borrowed from another engine)
    mape: float | None  # in-sample mean absolute percentage error of T
    borrowed_from: str | None = None

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
    """Quantizations that share kernels share coefficients."""
    return {"gptq": "GPTQ-Int4" if q.linear_bits < 8 else "GPTQ-Int8"}.get(q.kind, q.name)


# Engines without published Qwen measurements borrow the closest calibrated profile.
_BORROW = {"sglang": "vllm", "lmdeploy": "vllm", "mindie": "vllm", "vllm-ascend": "vllm"}
_GROUP_FALLBACK = {"FP16": "BF16", "FP8": "GPTQ-Int8"}


def coefficients(engine: str, q: Quant) -> Coefficients:
    """Calibrated coefficients for ``engine`` and ``q`` (borrowed where none exist)."""
    table = calibration()["coefficients"]
    source = engine if engine in table else _BORROW.get(engine, "")
    group = quant_group(q)
    profile = table.get(source, {})
    if group not in profile:
        group = _GROUP_FALLBACK.get(group, "BF16")
    entry = profile.get(group)
    if entry is None:
        raise ValueError(f"no speed calibration for engine {engine!r}")
    borrowed = None if source == engine and group == quant_group(q) else f"{source}/{group}"
    return Coefficients(
        values=dict(entry["values"]), rows=entry["rows"], mape=entry["mape"], borrowed_from=borrowed
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
    coef = coefficients(engine, q)
    terms = features(spec, q, hw, place, work)
    prefill = coef.values.get("prefill", 0.0) * terms["prefill"]
    return SpeedPrediction(prefill, coef.time(terms) - prefill, coef)
