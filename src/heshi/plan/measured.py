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
import math
import os
import statistics
import tempfile
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
    decode_sequence_gflops: float
    prefill_tflops: float

    def describe(self) -> str:
        return (
            f"heshi bench {self.measured_at[:10]}（{self.model}）：有效读带宽 "
            f"{self.read_bandwidth_gb_s:.1f} GB/s，预填充 {self.prefill_tflops * 1000:.0f} "
            f"GFLOP/s / {self.read_bandwidth_gb_s:.1f} GB/s effective read, prefill "
            f"{self.prefill_tflops * 1000:.0f} GFLOP/s"
        )


def effective_figures(
    spec: ModelSpec,
    q: Quant,
    prefill_tokens: int,
    prefill_tokens_per_s: float,
    decode_tokens_per_s: dict[int, float],
) -> dict[str, float]:
    """The three figures from what was measured with ``spec`` in ``q``.

    The step of one stream is the measured one (``1 / rate``), so the measured model is
    predicted at its own one-stream rate. What each further stream adds to a step is the
    median over the other stream counts of ``(n / rate − step₁) / (n − 1)``, so one
    disturbed phase does not tilt the line; it is at least the stream's own matrix work
    at the prefill compute rate (no stream is free, however the run went).
    """
    rates = {n: r for n, r in decode_tokens_per_s.items() if math.isfinite(r) and r > 0}
    if 1 not in rates or len(rates) < 2:
        raise ValueError("decode rates at one stream and at least one other count are needed")
    if not (math.isfinite(prefill_tokens_per_s) and prefill_tokens_per_s > 0) or prefill_tokens < 1:
        raise ValueError("a positive prefill rate is needed")
    active = parameter_counts(spec).active_linear
    flops = prefill_flops(spec, prefill_tokens)
    prefill_rate = flops * prefill_tokens_per_s / prefill_tokens  # FLOP/s
    one = 1.0 / rates[1]
    slopes = sorted((n / r - one) / (n - 1) for n, r in rates.items() if n > 1)
    slope = max(statistics.median(slopes), 2.0 * active / prefill_rate)
    return {
        "read_bandwidth_gb_s": round(weight_bytes_read_per_token(spec, q) / one / 1e9, 3),
        "decode_sequence_gflops": round(2.0 * active / slope / 1e9, 3),
        "prefill_tflops": round(prefill_rate / 1e12, 5),
    }


def noisy_counts(decode_tokens_per_s: dict[int, float]) -> list[int]:
    """Stream counts whose aggregate rate fell well below one stream's: batching never
    makes a step slower per token, so something else took the CPU during that phase."""
    one = decode_tokens_per_s.get(1)
    if not one:
        return []
    return [n for n, r in sorted(decode_tokens_per_s.items()) if n > 1 and r < 0.8 * one]


def bench_path(home: Path | None = None) -> Path:
    from heshi.config import default_home

    return (home or default_home()) / BENCH_FILE


def write_result(result: dict[str, Any], home: Path | None = None) -> Path:
    """Write a ``heshi bench`` result atomically (a reader never sees half a file, and
    two runs at once never share a temporary file)."""
    path = bench_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".local.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(result, ensure_ascii=False, indent=1))
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    return path


class _Unusable(Exception):
    """Why a bench file is not used."""


def read_measured(home: Path | None = None) -> tuple[Measured | None, str | None]:
    """(the figures, None), or (None, why the file is not used) — None, None: no file."""
    path = bench_path(home)
    try:
        return _parse(json.loads(path.read_text(encoding="utf-8"))), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path} 无法读取 / cannot be read ({exc}): run heshi bench again"
    except _Unusable as exc:
        return None, f"{path}: {exc}"
    except (KeyError, TypeError, AttributeError) as exc:
        return None, f"{path}: 内容不完整 / incomplete ({exc!r}): run heshi bench again"


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unusable(f"{name} 不是数字 / {name} is not a number: run heshi bench again")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise _Unusable(f"{name} 无效 / {name} = {value!r} is not positive: run heshi bench again")
    return number


def _parse(data: Any) -> Measured:
    fmt = data.get("format")
    if isinstance(fmt, bool) or fmt != FORMAT:
        raise _Unusable("格式不符，请重新运行 heshi bench / another format: run heshi bench again")
    machine = data["machine"]
    if machine != this_machine():
        raise _Unusable(
            f"测于另一台机器，已忽略 / measured on another machine ({machine.get('cpu')}, "
            f"{machine.get('cores')} cores): ignored"
        )
    built = (data.get("engine") or {}).get("features")
    if built is not None and built != engine_features():
        raise _Unusable(
            "引擎构建已变（如 make native-engine），请重新运行 heshi bench / the engine build "
            "changed since (e.g. make native-engine): run heshi bench again"
        )
    figures = data["effective"]
    measured = Measured(
        measured_at=str(data.get("measured_at") or "?"),
        model=str(data["model"]["name"]),
        read_bandwidth_gb_s=_positive(figures["read_bandwidth_gb_s"], "read_bandwidth_gb_s"),
        decode_sequence_gflops=_positive(
            figures["decode_sequence_gflops"], "decode_sequence_gflops"
        ),
        prefill_tflops=_positive(figures["prefill_tflops"], "prefill_tflops"),
    )
    return measured


def engine_features() -> list[str]:
    """What this llama.cpp build uses, from its system info (``AVX2 = 1`` …)."""
    import xllamacpp

    info = str(xllamacpp.get_system_info())
    return sorted(
        name.rsplit(":", 1)[-1].strip()  # the first one reads "CPU : SSE3"
        for name, _, value in (part.partition("=") for part in info.split("|"))
        if value.strip() == "1"
    )


@cache
def measured_here() -> tuple[Measured | None, str | None]:
    """``read_measured()`` for the current home, read once per process."""
    return read_measured()
