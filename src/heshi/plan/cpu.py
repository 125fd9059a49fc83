"""llama.cpp speed: on CPUs from memory bandwidth and compute, on GPUs from its fitted profile.

A decode step streams every weight once (plus the KV cache) and does 2 FLOPs per active
parameter per sequence, so its time is the larger of bytes / bandwidth and FLOPs / compute
rate. Prefill is compute-bound. The bandwidth and compute figures are:

- ``local`` (this machine): what ``heshi bench`` measured with the engine itself
  (:mod:`heshi.plan.measured`: effective read bandwidth, per-stream decode compute and
  prefill rate, no efficiency factors applied); without a bench result, measured when
  asked in about a second — sustained read bandwidth with one numpy reduction thread per
  core, and numpy's float32 GEMM rate — with the a-priori efficiencies below.
- catalog CPU servers: the theoretical peak (channels × MT/s × 8 bytes) times
  ``_CATALOG_BANDWIDTH_FRACTION``, the share of it a STREAM-like read typically sustains.

``_DECODE_EFFICIENCY`` and ``_PREFILL_EFFICIENCY`` are a-priori constants, not fitted on
this machine's llama.cpp measurement: ``benchmarks/plan_accuracy.py`` checks them against
a real run of the default model.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

from heshi.catalog import Accelerator, CpuSpec, Hardware, ModelSpec
from heshi.plan.measured import Measured, measured_here
from heshi.plan.memory import (
    GIB,
    Workload,
    kv_bytes_per_token,
    parameter_counts,
    prefill_flops,
    weight_bytes_read_per_step,
)
from heshi.plan.quant import Quant

_DECODE_EFFICIENCY = 0.85  # of sustained read bandwidth llama.cpp's matvec kernels reach
_PREFILL_EFFICIENCY = 0.5  # of the float32 GEMM rate its quantized matmuls reach
# Decode matvecs run on integer dot-product instructions (AVX-512 VNNI / AVX2), which
# do several times the float32 FMA work per instruction: the compute bound is loose.
_INT8_DOT_SPEEDUP = 2.0
_CATALOG_BANDWIDTH_FRACTION = 0.7
_COMPUTE_BUFFER_GIB = 0.5  # llama.cpp compute buffers at default batch sizes
_OS_RESERVE_GIB = 2.0  # a CPU server keeps this much for the OS and the rest


@dataclass
class EngineEstimate:
    prefill_seconds: float
    decode_seconds: float
    required_bytes: float
    usable_bytes: float
    notes: list[str] = field(default_factory=list)
    borrowed: bool = False  # the speed comes from another engine's or kernel's calibration


def _measure_read_bandwidth(threads: int, megabytes: int = 512) -> float:
    import numpy as np

    data = np.ones(megabytes * 1024 * 1024 // 8)
    parts = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.sum, parts))  # warm: pages touched, threads started
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, data.nbytes / (time.perf_counter() - started))
    return best


def _measure_gemm_flops(size: int = 1536) -> float:
    import numpy as np

    m = np.random.default_rng(0).random((size, size), dtype=np.float32)
    m @ m
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        m @ m
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def _mem_available_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


@cache
def local_machine() -> Accelerator:
    """This machine as a CPU device: its engine's figures from ``heshi bench``, else its
    bandwidth and GEMM rate measured now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    measured, unused = measured_here()
    if measured is not None:
        bandwidth, gemm = measured.read_bandwidth_gb_s, measured.prefill_tflops
        source = f"measured: {measured.describe()}"
    else:
        bandwidth = _measure_read_bandwidth(cores) / 1e9
        gemm = _measure_gemm_flops() / 1e12
        source = (
            "numpy 带宽与 GEMM 估算，运行 heshi bench 获得引擎实测 / estimated from numpy "
            "read bandwidth and fp32 GEMM: run heshi bench to measure the engine itself"
        )
        if unused:
            source += f"（{unused}）"
    return Accelerator(
        id="local",
        name=f"this machine ({cores} cores)",
        vendor="",
        kind="cpu",
        memory_gb=_mem_available_gb(),
        bandwidth_gb_s=round(bandwidth, 2),
        fp16_tflops=round(gemm, 5),
        bf16_tflops=None,
        int8_tops=None,
        fp8_tflops=None,
        arch="cpu",
        features={},
        engines=("llamacpp",),
        interconnect="",
        interconnect_gb_s=None,
        cpu=CpuSpec(cores=cores, sockets=None, memory_channels=None, memory_type=None),
        notes=source,
    )


def _measured_for(device: Accelerator) -> Measured | None:
    return measured_here()[0] if device.id == "local" else None


def predict_llamacpp(
    spec: ModelSpec, q: Quant, hw: Hardware, work: Workload, weights: float, kv: float
) -> EngineEstimate:
    """llama.cpp on ``hw``: CPU (bandwidth and compute) or GPU (the calibrated profile)."""
    device = hw.device
    n_in: int = work.input_tokens
    n_out: int = work.output_tokens
    batch: int = getattr(work, "batch", 1)
    notes: list[str] = []
    bandwidth = (device.bandwidth_gb_s or 0.0) * 1e9
    compute = (device.compute_tflops or 0.0) * 1e12
    if device.kind != "cpu":
        return _on_gpu(spec, q, hw, work, weights, kv)
    measured = _measured_for(device)
    if measured is not None:
        return _from_measured(spec, q, hw, work, weights, kv, measured)
    if device.id == "local":
        notes.append(device.notes)  # how this machine's figures were got (no heshi bench)
    else:
        bandwidth *= _CATALOG_BANDWIDTH_FRACTION
    bandwidth *= _DECODE_EFFICIENCY
    decode_compute = compute * _INT8_DOT_SPEEDUP
    compute *= _INT8_DOT_SPEEDUP * _PREFILL_EFFICIENCY
    usable = max(((device.memory_gb or 0.0) - _OS_RESERVE_GIB) * GIB, 0.0) * hw.count
    if bandwidth <= 0:
        notes.append(f"{device.id}: 无内存带宽数据 / no memory-bandwidth figure: speed unknown")
        return EngineEstimate(0.0, 0.0, weights + kv, usable, notes)
    active = parameter_counts(spec).active_linear
    per_step_bytes = weight_bytes_read_per_step(spec, q, batch)
    kv_token = kv_bytes_per_token(spec, work.kv_bytes)
    mean_context = n_in + n_out / 2
    step_time = (per_step_bytes + batch * kv_token * mean_context) / bandwidth
    if decode_compute > 0:
        step_time = max(step_time, 2.0 * active * batch / decode_compute)
    decode = step_time * n_out
    prefill = batch * prefill_flops(spec, n_in) / compute if compute > 0 and n_in else 0.0
    if compute <= 0 and n_in:
        notes.append(f"{device.id}: 无算力数据 / no compute figure: prefill time unknown")
    required = weights + kv + _COMPUTE_BUFFER_GIB * GIB
    return EngineEstimate(prefill, decode, required, usable, notes)


def _on_gpu(
    spec: ModelSpec, q: Quant, hw: Hardware, work: Workload, weights: float, kv: float
) -> EngineEstimate:
    """llama.cpp's CUDA/ROCm/CANN build from the fitted llama.cpp profile. It splits the
    layers across GPUs (``--split-mode layer``, its default): a token passes through them
    one after another, so one device's rate applies and each holds its share."""
    from heshi.plan.speed import Placement, predict_time

    device = hw.device
    usable = (device.memory_gb or 0.0) * GIB
    required = (weights + kv) / hw.count + _COMPUTE_BUFFER_GIB * GIB
    if not device.bandwidth_gb_s or not device.compute_tflops:
        note = f"{device.id}: 无带宽或算力数据 / no bandwidth or compute figure: speed unknown"
        return EngineEstimate(0.0, 0.0, required, usable, [note])
    timing = predict_time(spec, q, hw, Placement(hw.count, tensor_parallel=False), work, "llamacpp")
    notes = []
    if timing.coefficients.borrowed_from:
        notes.append(
            f"llama.cpp GPU 无实测校准，借用 {timing.coefficients.borrowed_from} / no published "
            f"llama.cpp GPU measurements for this: speed uses {timing.coefficients.borrowed_from}"
        )
    if work.batch > 1:
        notes.append(
            "llama.cpp 多路并发速度未经实测校准 / llama.cpp's speed with several streams is "
            "not calibrated (published figures are single-stream): the aggregate is optimistic"
        )
    return EngineEstimate(
        timing.prefill_seconds,
        timing.decode_seconds,
        required,
        usable,
        notes,
        borrowed=bool(timing.coefficients.borrowed_from) or work.batch > 1,
    )


def _from_measured(
    spec: ModelSpec,
    q: Quant,
    hw: Hardware,
    work: Workload,
    weights: float,
    kv: float,
    measured: Measured,
) -> EngineEstimate:
    """This machine from its ``heshi bench`` figures: a decode step of B streams reads
    the weights and their caches, and each stream beyond the first adds its compute."""
    device = hw.device
    bandwidth = measured.read_bandwidth_gb_s * 1e9
    step_time = (
        weight_bytes_read_per_step(spec, q, work.batch)
        + work.batch
        * kv_bytes_per_token(spec, work.kv_bytes)
        * (work.input_tokens + work.output_tokens / 2)
    ) / bandwidth
    active = parameter_counts(spec).active_linear
    step_time += (work.batch - 1) * 2.0 * active / (measured.decode_sequence_gflops * 1e9)
    prefill = work.batch * prefill_flops(spec, work.input_tokens) / (measured.prefill_tflops * 1e12)
    usable = max(((device.memory_gb or 0.0) - _OS_RESERVE_GIB) * GIB, 0.0)
    required = weights + kv + _COMPUTE_BUFFER_GIB * GIB
    notes = [f"速度取自本机实测 / speed measured on this machine: {measured.describe()}"]
    return EngineEstimate(prefill, step_time * work.output_tokens, required, usable, notes)
