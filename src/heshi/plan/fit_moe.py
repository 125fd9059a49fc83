"""The MoE stage of the speed fit: how a MoE's expert kernels run beside the dense
coefficients of the same engine and quantization (:mod:`heshi.plan.fit` runs it after
the dense stage)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from heshi.plan.nnls import nonnegative_relative_fit
from heshi.plan.sources import Measurement
from heshi.plan.speed import DENSE_FEATURES, dense_entry, quant_class, quant_group


def _moe_parts(
    dense: dict[str, Any], rows: Sequence[Measurement]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For MoE rows: time from the dense terms, the expert-read time at the dense weight
    coefficient, the expert-loop term, and the published seconds."""
    known, design, floor = [], [], []
    for m in rows:
        entry, _ = dense_entry(dense, m.engine, quant_group(m.q))
        values = entry["values"]
        terms = m.terms()
        known.append(sum(values.get(f, 0.0) * terms[f] for f in DENSE_FEATURES))
        b = values.get("weight_reads", 1.0)
        design.append([b * terms["expert_reads"], terms["expert_steps"], terms["seq_steps"]])
        floor.append(1.0 / b)  # expert kernels do not beat peak bandwidth either
    return np.array(known), np.array(design), np.array(floor), np.array([m.seconds for m in rows])


_MOE_GROUP_ROWS = 4  # fewer MoE rows than this for an engine × group: use the pooled fit
_MOE_FIT_USABLE = 0.5  # a MoE fit that misses its own rows by more than this is not used


def _loops_experts(engine: str) -> bool:
    """``transformers`` runs a MoE's experts one after another in Python."""
    return engine.startswith("transformers")


def _fit_moe_factor(dense: dict[str, Any], rows: Sequence[Measurement]) -> dict[str, Any]:
    known, design, floor, seconds = _moe_parts(dense, rows)
    if not all(_loops_experts(m.engine) for m in rows):
        design[:, 1] = 0.0  # serving engines run fused MoE kernels: no per-expert loop
    lower = np.array([float(floor.max()), 0.0, 0.0])
    x, mape = nonnegative_relative_fit(design, seconds, known, lower=lower)
    return {
        "expert_factor": float(x[0]),
        "expert_steps": float(x[1]),
        "routing_seq_steps": float(x[2]),  # each token's routing and permutation
        "rows": len(rows),
        "sources": sorted({m.source for m in rows}),
        "mape": round(mape, 4),
    }


def fit_moe(dense: dict[str, Any], rows: Iterable[Measurement]) -> dict[str, Any]:
    """How much slower than the dense weight reads a MoE's expert reads run: per engine and
    quantization group with ≥ 4 measurements, pooled per kind of quantization, and over
    all; each on top of the dense coefficients the same engine and group use."""
    moe = [m for m in rows if m.arch == "moe"]
    groups: dict[str, dict[str, Any]] = {}
    by_group: dict[tuple[str, str], list[Measurement]] = {}
    by_class: dict[str, list[Measurement]] = {}
    for m in moe:
        by_group.setdefault(m.group[:2], []).append(m)
        if not _loops_experts(m.engine):  # pooled: serving engines' fused kernels only
            by_class.setdefault(quant_class(m.q), []).append(m)
    for (engine, group), members in sorted(by_group.items()):
        if len(members) >= _MOE_GROUP_ROWS:
            fitted = _fit_moe_factor(dense, members)
            if fitted["mape"] <= _MOE_FIT_USABLE:
                groups.setdefault(engine, {})[group] = fitted
    pooled = {}
    for kind, members in sorted(by_class.items()):
        fitted = _fit_moe_factor(dense, members)
        if fitted["mape"] <= _MOE_FIT_USABLE:
            pooled[kind] = fitted
    serving = [m for m in moe if not _loops_experts(m.engine)]
    pooled["all"] = (
        _fit_moe_factor(dense, serving)
        if serving
        else {"expert_factor": 1.0, "expert_steps": 0.0, "rows": 0}
    )
    return {"groups": groups, "pooled": pooled}
