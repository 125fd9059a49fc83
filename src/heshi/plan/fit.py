"""Fit the speed and memory coefficients on published measurements.

``python -m heshi.plan.fit`` reads ``heshi/plan/data/qwen_speed_calibration.csv`` (Qwen's
speed-benchmark tables for Qwen2 and Qwen2.5 on A100 80GB, with peak memory) and
``published_speed.csv`` (:mod:`heshi.plan.sources`), and writes
``heshi/plan/data/calibration.json``. The fit is non-negative least squares on *relative*
error (:mod:`heshi.plan.nnls`), per engine and quantization group on dense models, then
the MoE stage (:mod:`heshi.plan.fit_moe`), so a 0.5 B model's rows weigh as much as a
72 B model's. ``benchmarks/plan_accuracy.py`` reports the error, each source left out.

How the published numbers are read (checked against the rows themselves):

- ``speed_tokens_per_s`` is generated tokens over the whole request time, prefill
  included: Qwen2.5-7B on vLLM gives 28.9 tok/s after a 129,024-token prompt, which only
  prefill time can explain.
- ``gpu_memory_gb`` is GiB summed over the GPUs used (Qwen2-72B BF16 on 2 GPUs: 134.7,
  more than one 80 GB card holds).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heshi import catalog
from heshi.catalog import Hardware, ModelSpec
from heshi.plan import sources
from heshi.plan.fit_moe import fit_moe
from heshi.plan.memory import (
    GIB,
    LEGACY_TRANSFORMERS,
    MEMORY_FEATURES,
    memory_terms,
    weights_and_kv,
)
from heshi.plan.nnls import nonnegative_relative_fit
from heshi.plan.quant import Quant, quant
from heshi.plan.sources import Measurement
from heshi.plan.speed import (
    DENSE_FEATURES,
    FEATURES,
    Placement,
    Workload,
    coefficients,
    dense_entry,
    quant_group,
)

LEGACY_PROFILES = {"transformers": LEGACY_TRANSFORMERS, "vllm": "vllm-0.4"}


@dataclass(frozen=True)
class CalibrationRow:
    """One published measurement, resolved against the catalog."""

    raw: dict[str, str]
    spec: ModelSpec
    q: Quant
    engine: str
    hw: Hardware
    work: Workload
    speed: float | None  # generated tokens per second, as published (None: not given)
    memory_gib: float | None  # total over the GPUs (transformers only)

    @property
    def placement(self) -> Placement:
        return Placement(self.hw.count, tensor_parallel=not self.engine.startswith("transformers"))

    @property
    def seconds(self) -> float:
        if not self.speed:
            raise ValueError(
                f"{self.spec.name}: 缺少 speed_tokens_per_s / the row has no speed_tokens_per_s"
            )
        return self.work.output_tokens / self.speed

    @property
    def group(self) -> tuple[str, str]:
        return self.engine, quant_group(self.q)


def calibration_csv() -> Path:
    return Path(
        str(resources.files("heshi.plan").joinpath("data").joinpath("qwen_speed_calibration.csv"))
    )


def resolve_row(raw: dict[str, str]) -> CalibrationRow:
    """A CSV row with the calibration file's columns, resolved (raises on unknown names)."""
    hw = catalog.hardware(f"{int(raw['gpu_num'])}x {raw['hardware']}")
    memory = raw.get("gpu_memory_gb") or ""
    engine = raw["framework"].strip().lower()
    if "/en/v2.0/" in raw.get("source_url", ""):
        # The Qwen2 tables (docs v2.0) state their software: Transformers 4.38.2 (logits
        # for every prompt position, unlike 4.45+) and vLLM 0.4.2. Older releases are
        # profiles of their own.
        engine = LEGACY_PROFILES.get(engine, engine)
    return CalibrationRow(
        raw=raw,
        spec=catalog.model(raw["model"]),
        q=quant(raw["quantization"]),
        engine=engine,
        hw=hw,
        work=Workload(int(raw["input_length"]), int(raw["output_length"])),
        speed=float(raw["speed_tokens_per_s"]) if raw.get("speed_tokens_per_s") else None,
        memory_gib=float(memory) if memory else None,
    )


def load_rows(path: Path | None = None) -> list[CalibrationRow]:
    with (path or calibration_csv()).open(newline="", encoding="utf-8") as handle:
        return [resolve_row(raw) for raw in csv.DictReader(handle)]


# No engine beats the roofline: weights and the KV cache cost at least their peak-rate
# time (coefficient ≥ 1), and prefill GEMMs reach at most 75% of the tensor peak (a bound,
# not a fit: batch-1 rows with short prompts cannot separate prefill from fixed costs).
_PREFILL_MFU_MAX = 0.75
_SPEED_FLOOR = np.array(
    [
        1 / _PREFILL_MFU_MAX
        if f == "prefill"
        else 1.0
        if f in ("weight_reads", "kv_reads")
        else 0.0
        for f in DENSE_FEATURES
    ]
)


def measurement(row: CalibrationRow) -> Measurement:
    """A row of Qwen's own tables as a measurement (one source per table)."""
    legacy = "/en/v2.0/" in row.raw.get("source_url", "")
    return Measurement(
        source="qwen2-speed-a100" if legacy else "qwen2.5-speed-a100",
        spec=row.spec,
        q=row.q,
        engine=row.engine,
        hw=row.hw,
        tensor_parallel=row.placement.tensor_parallel,
        work=row.work,
        metric="e2e_tok_s_per_seq",
        value=row.speed or 0.0,
        url=row.raw.get("source_url", ""),
    )


def all_measurements() -> list[Measurement]:
    """Every speed measurement the fit uses: Qwen's tables and the published file."""
    return [measurement(r) for r in load_rows() if r.speed] + sources.load()


def _matrix(rows: Sequence[Measurement], names: Sequence[str]) -> np.ndarray:
    return np.array([[m.terms()[f] for f in names] for m in rows])


_RICH_ROWS = 8  # a group with fewer rows scales a related group's profile instead
_SCALE_ROWS = 4  # ...and with fewer than this, borrows it unchanged


def fit_dense(rows: Iterable[Measurement]) -> dict[str, dict[str, Any]]:
    """Coefficients per engine and quantization group, on dense models' measurements.

    A group with many measurements gets its own coefficients. A thin one (a few rows from
    one source) cannot pin down six of them, so it keeps the shape of the profile it would
    otherwise borrow and fits one scale on it: "this engine is k times that one"."""
    grouped: dict[tuple[str, str], list[Measurement]] = {}
    for m in rows:
        if m.arch == "dense":
            grouped.setdefault(m.group[:2], []).append(m)
    rich = {k: v for k, v in grouped.items() if len(v) >= _RICH_ROWS}
    out: dict[str, dict[str, Any]] = {}
    for (engine, group), members in sorted(rich.items()):
        out.setdefault(engine, {})[group] = _own_fit(members)
    base_table = {engine: dict(groups) for engine, groups in out.items()}
    for (engine, group), members in sorted(grouped.items()):
        if (engine, group) in rich:
            continue
        try:
            base, used = dense_entry(base_table, engine, group)
        except ValueError:  # nothing related to scale: the group's own rows decide
            out.setdefault(engine, {})[group] = _own_fit(members)
            continue
        if len(members) >= _SCALE_ROWS:
            out.setdefault(engine, {})[group] = _scaled_fit(members, base, used)
        # fewer: too few to move a whole profile; the lookup borrows the related one
    return out


# Serving engines' paged-attention decode kernels stream the KV cache at about 80% of the
# memory bandwidth; fixed, not fitted: on one GPU type, reading a long prompt's cache and
# prefilling it both grow with the prompt, so a fit trades one for the other and the split
# then fails on a device with another FLOPS-to-bandwidth ratio.
_KV_READ_FIXED = 1 / 0.8


def _own_fit(members: Sequence[Measurement]) -> dict[str, Any]:
    seconds = np.array([m.seconds for m in members])
    design = _matrix(members, DENSE_FEATURES)
    floor = _SPEED_FLOOR.copy()
    offset = None
    if not members[0].engine.startswith("transformers"):
        kv = DENSE_FEATURES.index("kv_reads")
        offset = design[:, kv] * _KV_READ_FIXED
        design = design.copy()
        design[:, kv] = 0.0
        floor[kv] = 0.0
    x, mape = nonnegative_relative_fit(design, seconds, offset, lower=floor)
    if offset is not None:
        x[DENSE_FEATURES.index("kv_reads")] = _KV_READ_FIXED
    return {
        "values": {f: float(v) for f, v in zip(DENSE_FEATURES, x, strict=True)},
        "rows": len(members),
        "sources": sorted({m.source for m in members}),
        "mape": round(mape, 4),
    }


def _scaled_fit(members: Sequence[Measurement], base: dict[str, Any], used: str) -> dict[str, Any]:
    """``base``'s coefficients times the one factor that best fits ``members``."""
    values = base["values"]
    predicted = np.array(
        [sum(values.get(f, 0.0) * m.terms()[f] for f in DENSE_FEATURES) for m in members]
    )
    ratio = predicted / np.array([m.seconds for m in members])
    k = float(np.sum(ratio) / np.sum(ratio**2))  # least squares of k·ratio − 1
    floors = dict(zip(DENSE_FEATURES, _SPEED_FLOOR, strict=True))
    return {
        "values": {f: max(v * k, floors.get(f, 0.0)) for f, v in values.items()},
        "rows": len(members),
        "sources": sorted({m.source for m in members}),
        "mape": round(float(np.mean(np.abs(k * ratio - 1))), 4),
        "scaled_from": used,
        "scale": round(k, 4),
    }


def fit_calibration(
    rows: Sequence[Measurement], memory_rows: Sequence[CalibrationRow]
) -> dict[str, Any]:
    """The whole ``calibration.json`` body fitted on ``rows`` (speed) and ``memory_rows``."""
    dense = fit_dense(rows)
    memory: dict[str, dict[str, Any]] = {}
    grouped: dict[tuple[str, str], list[CalibrationRow]] = {}
    for row in memory_rows:
        if row.memory_gib is not None:
            grouped.setdefault(row.group, []).append(row)
    for (engine, group), members in sorted(grouped.items()):
        memory.setdefault(engine, {})[group] = fit_memory(members)
    return {"speed": dense, "moe": fit_moe(dense, rows), "memory": memory}


def memory_matrix(rows: Sequence[CalibrationRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known part (weights + KV), fitted terms, and the measured totals, in bytes."""
    known = np.array([weights_and_kv(r.spec, r.q, r.work) for r in rows])
    design = np.array([memory_terms(r.spec, r.engine, r.work, r.hw.count) for r in rows])
    measured = np.array([(r.memory_gib or 0.0) * GIB for r in rows])
    return known, design, measured


def fit_memory(rows: Sequence[CalibrationRow]) -> dict[str, Any]:
    known, design, measured = memory_matrix(rows)
    x, mape = nonnegative_relative_fit(design, measured, known)
    return {
        "values": {f: float(v) for f, v in zip(MEMORY_FEATURES, x, strict=True)},
        "rows": len(rows),
        "mape": round(mape, 4),
    }


def predicted_seconds(cal: dict[str, Any], m: Measurement) -> float:
    """What the fit ``cal`` predicts for the part of the request ``m`` measured."""
    coef = coefficients(m.engine, m.q, moe=m.arch == "moe", cal=cal)
    return coef.time(m.terms())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else calibration_csv().with_name("calibration.json")
    rows = all_measurements()
    fitted = fit_calibration(rows, load_rows())
    result: dict[str, Any] = {
        "_meta": {
            "source": "qwen_speed_calibration.csv (Qwen's A100 tables) and published_speed.csv "
            "(other published measurements); every row carries its URL",
            "fitted_by": "python -m heshi.plan.fit",
            "rows": len(rows),
            "sources": len({m.source for m in rows}),
            "features": list(FEATURES),
            "memory_features": list(MEMORY_FEATURES),
        },
        **fitted,
    }
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for engine, groups in fitted["speed"].items():
        for group, entry in groups.items():
            print(f"{engine:<17}{group:<11}dense {entry['rows']:>4} rows  MAPE {entry['mape']:.1%}")
    for engine, groups in fitted["moe"]["groups"].items():
        for group, entry in groups.items():
            print(
                f"{engine:<17}{group:<11}MoE   {entry['rows']:>4} rows  experts ×"
                f"{entry['expert_factor']:.2f}  MAPE {entry['mape']:.1%}"
            )
    for kind, entry in fitted["moe"]["pooled"].items():
        print(
            f"{'MoE pooled':<17}{kind:<11}      {entry.get('rows', 0):>4} rows  experts ×"
            f"{entry['expert_factor']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
