"""Fit the speed and memory coefficients on Qwen's published measurements.

``python -m heshi.plan.fit`` reads ``heshi/plan/data/qwen_speed_calibration.csv`` (Qwen's
speed-benchmark tables for Qwen2 and Qwen2.5 on A100 80GB, one source URL per row) and
writes ``heshi/plan/data/calibration.json``. The fit is non-negative least squares on
*relative* error, per engine and quantization group, so a 0.5 B model's rows weigh as
much as a 72 B model's. ``benchmarks/plan_accuracy.py`` reports the error, in sample and
leaving each model out of its own fit.

How the published numbers are read (checked against the rows themselves):

- ``speed_tokens_per_s`` is generated tokens over the whole request time, prefill
  included: Qwen2.5-7B on vLLM gives 28.9 tok/s after a 129,024-token prompt, which only
  prefill time can explain.
- ``gpu_memory_gb`` is GiB summed over the GPUs used (Qwen2-72B BF16 on 2 GPUs: 134.7,
  more than one 80 GB card holds).
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from heshi import catalog
from heshi.catalog import Hardware, ModelSpec
from heshi.plan.memory import (
    GIB,
    LEGACY_TRANSFORMERS,
    MEMORY_FEATURES,
    memory_terms,
    weights_and_kv,
)
from heshi.plan.quant import Quant, quant
from heshi.plan.speed import FEATURES, Placement, Workload, features, quant_group

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


def nonnegative_relative_fit(
    design: np.ndarray,
    target: np.ndarray,
    offset: np.ndarray | None = None,
    lower: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """min Σ((o + X·x)/y − 1)² subject to x ≥ lower (default 0), by trying every support.

    ``offset`` o is a known part of the target (e.g. weights, for memory). Returns the
    coefficients and the in-sample MAPE (fraction).
    """
    floor = np.zeros(design.shape[1]) if lower is None else lower
    known = (np.zeros(len(target)) if offset is None else offset) + design @ floor
    scaled = design / target[:, None]
    ones = 1 - known / target
    best: tuple[float, np.ndarray] | None = None
    columns = [j for j in range(design.shape[1]) if np.any(design[:, j])]
    for size in range(1, len(columns) + 1):
        for support in itertools.combinations(columns, size):
            sub = scaled[:, support]
            solution, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if np.any(solution < 0):
                continue
            x = np.zeros(design.shape[1])
            x[list(support)] = solution
            residual = float(np.sum((scaled @ x - ones) ** 2))
            if best is None or residual < best[0]:
                best = (residual, x)
    if best is None:
        raise ValueError("no non-negative fit")
    x = best[1]
    return x + floor, float(np.mean(np.abs((known + design @ x) / target - 1)))


_SPEED_FLOOR = np.array(
    [1.0 if f in ("weight_reads", "kv_reads", "prefill") else 0.0 for f in FEATURES]
)


def speed_matrix(rows: Sequence[CalibrationRow]) -> tuple[np.ndarray, np.ndarray]:
    design = np.array(
        [[features(r.spec, r.q, r.hw, r.placement, r.work)[f] for f in FEATURES] for r in rows]
    )
    return design, np.array([r.seconds for r in rows])


def memory_matrix(rows: Sequence[CalibrationRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known part (weights + KV), fitted terms, and the measured totals, in bytes."""
    known = np.array([weights_and_kv(r.spec, r.q, r.work) for r in rows])
    design = np.array([memory_terms(r.spec, r.engine, r.work, r.hw.count) for r in rows])
    measured = np.array([(r.memory_gib or 0.0) * GIB for r in rows])
    return known, design, measured


def fit_groups(
    rows: Iterable[CalibrationRow],
    key: Callable[[CalibrationRow], tuple[str, str]] = lambda r: r.group,
) -> dict[str, dict[str, Any]]:
    """Speed (and, for transformers, memory) coefficients per (engine, quant group)."""
    grouped: dict[tuple[str, str], list[CalibrationRow]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for (engine, group), members in sorted(grouped.items()):
        design, seconds = speed_matrix(members)
        # No engine beats the roofline: weights, KV cache and prefill cost at least their
        # peak-rate time (coefficient ≥ 1); launch and expert-loop overheads are ≥ 0.
        x, mape = nonnegative_relative_fit(design, seconds, lower=_SPEED_FLOOR)
        entry: dict[str, Any] = {
            "values": {f: float(v) for f, v in zip(FEATURES, x, strict=True)},
            "rows": len(members),
            "mape": round(mape, 4),
        }
        with_memory = [m for m in members if m.memory_gib is not None]
        if with_memory:
            entry["memory"] = fit_memory(with_memory)
        out.setdefault(engine, {})[group] = entry
    return out


def fit_memory(rows: Sequence[CalibrationRow]) -> dict[str, Any]:
    known, design, measured = memory_matrix(rows)
    x, mape = nonnegative_relative_fit(design, measured, known)
    return {
        "values": {f: float(v) for f, v in zip(MEMORY_FEATURES, x, strict=True)},
        "rows": len(rows),
        "mape": round(mape, 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else calibration_csv().with_name("calibration.json")
    rows = load_rows()
    result: dict[str, Any] = {
        "_meta": {
            "source": "Qwen speed benchmark tables (qwen_speed_calibration.csv, per-row URLs)",
            "fitted_by": "python -m heshi.plan.fit",
            "rows": len(rows),
            "features": list(FEATURES),
            "memory_features": list(MEMORY_FEATURES),
        },
        "coefficients": fit_groups(rows),
    }
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for engine, groups in result["coefficients"].items():
        for group, entry in groups.items():
            memory = entry.get("memory", {}).get("mape")
            print(
                f"{engine:<13}{group:<11}{entry['rows']:>4} rows  speed MAPE {entry['mape']:.1%}"
                + (f"  memory MAPE {memory:.1%}" if memory is not None else "")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
