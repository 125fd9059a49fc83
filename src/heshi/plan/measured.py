"""What ``heshi bench`` measured on this machine, as figures the planner can scale.

``heshi bench`` runs the embedded engine on one model and writes
``$HESHI_HOME/bench/local.json``. The planner cannot use tokens/s of that model for
another one directly, so the file also keeps three effective figures, each the measured
time divided into the work the model did:

- ``read_bandwidth_gb_s``: weight bytes one decode step reads / the time of a one-stream
  step (the intercept of step time against streams). Another model's step takes its own
  bytes over this figure.
- ``decode_sequence_gflops``: 2 × active parameters / the time each extra stream adds to
  a step (the slope of that line). Batched decode on a CPU grows compute-bound.
- ``prefill_tflops``: prefill FLOPs of the measured prompt / its prefill time.

The figures include everything llama.cpp does on this machine (its kernels, threads,
the cache), which a memory-bandwidth micro-benchmark does not. They scale to other
models by bytes and FLOPs, which is right to first order for dense models of the same
quantization family; a much larger model on the same machine is an extrapolation.
A file written on another machine (another CPU model or core count) is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from heshi.catalog import ModelSpec
from heshi.plan.memory import parameter_counts, prefill_flops, weight_bytes_read_per_token
from heshi.plan.quant import Quant

BENCH_FILE = Path("bench") / "local.json"
FORMAT = 1


def this_machine() -> dict[str, Any]:
    """What identifies this machine's engine speed: CPU model and usable cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    model = value.strip()
                    break
    except OSError:
        pass
    return {"cpu": model or os.uname().machine, "cores": cores or 1}


@dataclass(frozen=True)
class Measured:
    """The effective figures of one ``heshi bench`` run (see the module docstring)."""

    measured_at: str
    model: str
    read_bandwidth_gb_s: float
    decode_sequence_gflops: float | None  # None: extra streams cost nothing measurable
    prefill_tflops: float

    def describe(self) -> str:
        return (
            f"heshi bench {self.measured_at[:10]} ({self.model}): "
            f"{self.read_bandwidth_gb_s:.1f} GB/s effective read, "
            f"prefill {self.prefill_tflops * 1000:.0f} GFLOP/s"
        )


def effective_figures(
    spec: ModelSpec,
    q: Quant,
    prefill_tokens: int,
    prefill_tokens_per_s: float,
    decode_tokens_per_s: dict[int, float],
) -> dict[str, float | None]:
    """The three figures from what was measured with ``spec`` in ``q``: step time
    ``streams / rate`` is fitted as ``a + (streams − 1) · b`` by least squares."""
    points = [(n, n / rate) for n, rate in sorted(decode_tokens_per_s.items()) if rate > 0]
    if not points or prefill_tokens_per_s <= 0 or prefill_tokens < 1:
        raise ValueError("a prefill rate and at least one decode rate are needed")
    xs = [n - 1.0 for n, _ in points]
    ys = [t for _, t in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = (
        sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
        if spread
        else 0.0
    )
    slope = max(slope, 0.0)
    intercept = mean_y - slope * mean_x
    if intercept <= 0:  # rates that grow faster than the streams: keep the one-stream step
        intercept, slope = ys[0], 0.0
    active = parameter_counts(spec).active_linear
    flops = prefill_flops(spec, prefill_tokens)
    return {
        "read_bandwidth_gb_s": round(weight_bytes_read_per_token(spec, q) / intercept / 1e9, 3),
        "decode_sequence_gflops": round(2.0 * active / slope / 1e9, 3) if slope > 0 else None,
        "prefill_tflops": round(flops * prefill_tokens_per_s / prefill_tokens / 1e12, 5),
    }


def bench_path(home: Path | None = None) -> Path:
    from heshi.config import default_home

    return (home or default_home()) / BENCH_FILE


def write_result(result: dict[str, Any], home: Path | None = None) -> Path:
    """Write a ``heshi bench`` result atomically (a reader never sees half a file)."""
    path = bench_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, path)
    return path


class _Unusable(Exception):
    """Why a bench file is not used."""


def read_measured(home: Path | None = None) -> tuple[Measured | None, str | None]:
    """(the figures, None), or (None, why the file is not used) — None, None: no file."""
    path = bench_path(home)
    try:
        return _parse(path, json.loads(path.read_text(encoding="utf-8"))), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path} 无法读取 / cannot be read ({exc}): run heshi bench again"
    except _Unusable as exc:
        return None, f"{path}: {exc}"
    except (KeyError, TypeError, AttributeError) as exc:
        return None, f"{path}: 内容不完整 / incomplete ({exc!r}): run heshi bench again"


def _parse(path: Path, data: Any) -> Measured:
    if data.get("format") != FORMAT:
        raise _Unusable("格式不符 / another format: run heshi bench again")
    if data["machine"] != this_machine():
        raise _Unusable(
            f"测于另一台机器 / measured on another machine ({data['machine'].get('cpu')}, "
            f"{data['machine'].get('cores')} cores): ignored"
        )
    figures = data["effective"]
    sequence = figures["decode_sequence_gflops"]
    measured = Measured(
        measured_at=str(data["measured_at"]),
        model=str(data["model"]["name"]),
        read_bandwidth_gb_s=float(figures["read_bandwidth_gb_s"]),
        decode_sequence_gflops=None if sequence is None else float(sequence),
        prefill_tflops=float(figures["prefill_tflops"]),
    )
    if measured.read_bandwidth_gb_s <= 0 or measured.prefill_tflops <= 0:
        raise _Unusable("数值无效 / non-positive figures: run heshi bench again")
    return measured


@cache
def measured_here() -> tuple[Measured | None, str | None]:
    """``read_measured()`` for the current home, read once per process."""
    return read_measured()
