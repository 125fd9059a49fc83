"""One prediction: memory and speed of a model × quantization × engine × hardware.

This is the stable contract behind ``heshi plan predict`` (docs/plan.md): the JSON keys
``weights_gb``, ``kv_cache_gb``, ``peak_memory_gb`` (per device, as the engine itself
would report it), ``prefill_tokens_per_s``, ``decode_tokens_per_s``,
``end_to_end_tokens_per_s`` (= (input + output tokens) / total wall time), ``fits`` and
``notes`` keep their meaning across releases; new keys may be added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heshi.catalog import Hardware, ModelSpec
from heshi.errors import InvalidRequest
from heshi.plan import cpu
from heshi.plan.memory import (
    GIB,
    LEGACY_TRANSFORMERS,
    kv_cache_bytes,
    memory_terms,
    vision_bytes,
    weight_bytes,
)
from heshi.plan.quant import Quant
from heshi.plan.speed import Placement, Workload, calibration, predict_time

ENGINES = ("transformers", "vllm", "sglang", "llamacpp", "lmdeploy", "mindie")
_PROFILES = {*ENGINES, LEGACY_TRANSFORMERS, "vllm-0.4", "vllm-ascend"}
# What each serving engine takes from a device up front (its documented default):
# vLLM gpu_memory_utilization 0.9; SGLang mem_fraction_static (0.88 on large GPUs);
# LMDeploy TurboMind cache_max_entry_count 0.8 of the memory left after weights.
_RESERVED_FRACTION = {"vllm": 0.9, "vllm-0.4": 0.9, "vllm-ascend": 0.9, "sglang": 0.88}
_LMDEPLOY_CACHE_FRACTION = 0.8
_RUNTIME_OVERHEAD_GIB = 1.0  # CUDA context, cuBLAS workspace, graphs: serving engines
_PREFILL_CHUNK = 8192  # serving engines prefill long prompts in chunks of about this


@dataclass
class Prediction:
    model: str
    quant: str
    engine: str
    hardware: str
    input_tokens: int
    output_tokens: int
    batch: int
    weights_gb: float
    kv_cache_gb: float
    peak_memory_gb: float  # per device, as the engine would report it
    required_memory_gb: float  # per device, what must fit
    usable_memory_gb: float  # per device, what the engine may use
    prefill_seconds: float
    decode_seconds: float
    fits: bool
    notes: list[str] = field(default_factory=list)  # every reason and assumption
    problems: list[str] = field(default_factory=list)  # the notes that make it not run
    # the speed is not this engine's own measured profile (borrowed, or llama.cpp's
    # single-stream figures stretched to several streams)
    speed_borrowed: bool = False

    @property
    def total_seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    def as_json(self) -> dict[str, Any]:
        n_in, n_out, b = self.input_tokens, self.output_tokens, self.batch
        total = self.total_seconds
        return {
            "model": self.model,
            "quant": self.quant,
            "engine": self.engine,
            "hardware": self.hardware,
            "input_tokens": n_in,
            "output_tokens": n_out,
            "batch": b,
            "weights_gb": round(self.weights_gb, 3),
            "kv_cache_gb": round(self.kv_cache_gb, 3),
            "peak_memory_gb": round(self.peak_memory_gb, 3),
            "required_memory_gb": round(self.required_memory_gb, 3),
            "usable_memory_gb": round(self.usable_memory_gb, 3),
            "prefill_tokens_per_s": _rate(n_in * b, self.prefill_seconds),
            "decode_tokens_per_s": _rate(n_out * b, self.decode_seconds),
            "end_to_end_tokens_per_s": _rate((n_in + n_out) * b, total),
            "generation_tokens_per_s": _rate(n_out * b, total),
            # null with the speeds when they are unknown (the notes say why)
            "ttft_s": round(self.prefill_seconds, 4) if self.decode_seconds > 0 else None,
            "total_seconds": round(total, 4) if self.decode_seconds > 0 else None,
            "fits": self.fits,
            "notes": self.notes,
        }


def _rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 3) if seconds > 0 else None


def _memory_fit_values(engine: str, q: Quant) -> dict[str, float]:
    from heshi.plan.speed import quant_group

    table = calibration()["memory"]  # fitted on transformers' published peaks
    own = table.get(engine, {})
    entry = own.get(quant_group(q)) or own.get("BF16") or table["transformers"]["BF16"]
    return dict(entry["values"])


ASCEND_W8A8_ENGINES = ("vllm-ascend", "mindie")
# The Qwen models MindIE's support list marks W8A8 ✅ (Ascend/MindIE-LLM docs/zh/user_guide/
# model_support_list.md; Qwen3-8B and Qwen2.5-72B-Instruct are marked ❌).
MINDIE_W8A8 = frozenset(
    {"Qwen/Qwen3-14B", "Qwen/Qwen3-32B", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-14B-Instruct",
     "Qwen/Qwen2.5-32B-Instruct"}
)  # fmt: skip


def _ascend_problems(spec: ModelSpec, q: Quant, engine: str, kind: str) -> list[str]:
    """What the Ascend engines are documented not to run."""
    problems: list[str] = []
    if engine == "llamacpp" and kind == "npu":
        # llama.cpp's CANN backend multiplies F16, Q8_0 and Q4_0 only and has no Gated
        # DeltaNet operation (docs/backend/CANN.md, ggml-cann supports_op).
        if q.name not in ("Q8_0", "Q4_0", "FP16"):
            problems.append(
                f"llama.cpp CANN 不支持 {q.name} / llama.cpp's CANN backend runs F16, Q8_0 and "
                f"Q4_0 only, not {q.name}"
            )
        if spec.hybrid is not None:
            problems.append(
                "llama.cpp CANN 无 Gated DeltaNet 算子 / llama.cpp's CANN backend has no Gated "
                "DeltaNet operation (Qwen3.5/3.6 layers would run on the host CPU)"
            )
    if engine == "mindie" and q.kind == "w8a8" and spec.id not in MINDIE_W8A8:
        problems.append(
            f"MindIE 未列出 {spec.name} 的 W8A8 / MindIE's model list does not mark W8A8 for "
            f"{spec.name}: use vllm-ascend"
        )
    if engine == "mindie" and spec.hybrid is not None:
        # Ascend announced Qwen3.5 support for vLLM-Ascend and SGLang, not MindIE; vLLM-Ascend
        # documents Qwen3.5 from v0.17.0rc1 and Qwen3.6 from v0.18.0rc1 (its Qwen3.5-27B /
        # Qwen3.6-27B tutorial).
        problems.append(
            "MindIE 未支持 Qwen3.5/3.6 混合注意力 / MindIE support for the Qwen3.5/3.6 hybrid "
            "architecture is not established: use vllm-ascend (≥ 0.17.0rc1 for Qwen3.5, "
            "≥ 0.18.0rc1 for Qwen3.6)"
        )
    return problems


def _check_support(spec: ModelSpec, q: Quant, engine: str, hw: Hardware) -> list[str]:
    """Reasons this combination cannot run (empty when it can)."""
    device = hw.device
    problems: list[str] = []
    base_engine = engine.split("-", maxsplit=1)[0] if engine != "vllm-ascend" else engine
    if device.engines and base_engine not in device.engines and engine not in device.engines:
        problems.append(
            f"{engine} 不支持 {device.id} / {engine} does not run on {device.name} "
            f"(runs: {', '.join(device.engines) or 'none known'})"
        )
    if q.is_gguf and base_engine not in ("llamacpp",):
        problems.append(f"GGUF {q.name} 需 llama.cpp / GGUF {q.name} needs llama.cpp")
    if not q.is_gguf and base_engine == "llamacpp":
        problems.append(f"llama.cpp 需 GGUF 量化 / llama.cpp runs GGUF files, not {q.name}")
    if q.kind == "fp8" and not device.has("fp8"):
        if device.arch.startswith("ascend"):
            problems.append(
                f"昇腾无 FP8，用 msModelSlim W8A8 / no FP8 on {device.name}: its engines run "
                "msModelSlim's W8A8"
            )
        elif not device.has("marlin"):
            problems.append(
                f"{device.name} 无 FP8 / no FP8 support (needs sm89+, or Marlin on sm80+)"
            )
        elif base_engine not in ("vllm", "sglang"):
            # vLLM and SGLang run FP8 checkpoints on sm80 as weight-only FP8 (Marlin);
            # the other engines need hardware FP8.
            problems.append(
                f"{engine} 在 {device.name} 上不支持 FP8 / {engine} needs hardware FP8 (sm89+); "
                "on sm80 only vLLM and SGLang run FP8 weights (Marlin)"
            )
    if q.weight_only_int and device.arch.startswith("ascend"):
        problems.append(
            f"昇腾无 {q.name} 内核，用 msModelSlim W8A8 / no {q.name} kernels on Ascend: its "
            "engines run msModelSlim's W8A8"
        )
    elif q.kind == "awq" and device.kind != "cpu" and not device.has("awq"):
        problems.append(
            f"{device.name} 不支持 AWQ 内核 / no AWQ kernels on {device.name} (they need sm75+)"
        )
    elif q.kind == "gptq" and device.kind != "cpu" and not device.has("gptq"):
        problems.append(f"{device.name} 不支持 GPTQ 内核 / no GPTQ kernels on {device.name}")
    if q.kind == "w8a8" and engine not in ASCEND_W8A8_ENGINES:
        problems.append(
            f"W8A8 仅昇腾 vLLM-Ascend / MindIE / msModelSlim W8A8 runs on vLLM-Ascend and "
            f"MindIE only, not {engine}"
        )
    problems += _ascend_problems(spec, q, engine, device.kind)
    if spec.moe is not None and q.weight_only_int and not device.has("marlin"):
        # vLLM/SGLang run GPTQ/AWQ MoE layers only through the Marlin MoE kernels.
        problems.append(
            f"{q.name} MoE 需 Marlin（sm80+）/ {q.name} MoE layers need Marlin kernels (sm80+)"
        )
    return problems


def _accelerator_estimate(
    spec: ModelSpec,
    q: Quant,
    engine: str,
    hw: Hardware,
    work: Workload,
    weights: float,
    kv: float,
) -> tuple[cpu.EngineEstimate, float]:
    """Calibrated time and memory on GPUs/NPUs; also the peak the engine would report."""
    devices = hw.count
    layer_split = engine.startswith("transformers")
    notes: list[str] = []
    if not hw.device.bandwidth_gb_s or not hw.device.compute_tflops:
        missing = "bandwidth" if not hw.device.bandwidth_gb_s else "FLOPS"
        notes.append(
            f"{hw.device.id} 缺少{missing}数据，无法估计速度 / no {missing} figure in the "
            "catalog for this device: speed unknown, memory still checked"
        )
        timing = None
    else:
        timing = predict_time(spec, q, hw, Placement(devices, not layer_split), work, engine)
    moe_fit = timing.coefficients.moe_fit or "" if timing is not None else ""
    if moe_fit.startswith("pooled over all") and q.weight_only_int:
        # No published measurement of 4-bit MoE kernels to fit: users report them far
        # slower than the roofline (sgl-project/sglang#9574; vLLM falling back from Marlin
        # MoE to WNA16 kernels), so no number is better than a wrong one.
        notes.append(
            f"{q.name} MoE 内核无公开实测，速度未知 / no published measurement of {q.name} "
            "MoE kernels to calibrate on (reported far slower than 16-bit): speed unknown, "
            "memory still checked"
        )
        timing = None
    if timing is not None and timing.coefficients.borrowed_from:
        notes.append(
            f"{engine} 无实测校准，借用 {timing.coefficients.borrowed_from} / "
            f"no published {engine} measurements: speed uses the "
            f"{timing.coefficients.borrowed_from} calibration"
        )
    capacity = (hw.device.memory_gb or 0.0) * GIB
    fitted = _memory_fit_values(engine, q)
    chunk = work if layer_split else Workload(min(work.input_tokens, _PREFILL_CHUNK), 1, 1)
    terms = memory_terms(spec, engine, chunk, 1)
    activations = terms[0] * fitted.get("activations", 0.0) + terms[1] * fitted.get("logits", 0.0)
    if layer_split:
        # Measured like Qwen's tables: allocator peak, weights and cache split evenly.
        required = (weights + kv + activations) / devices + fitted.get("devices", 0.0) * GIB
        usable, peak = capacity, required
    else:
        required = (weights + kv) / devices + activations + _RUNTIME_OVERHEAD_GIB * GIB
        fraction = _RESERVED_FRACTION.get(engine)
        if fraction is not None:
            usable = peak = fraction * capacity  # pre-allocated whatever the load
        elif engine == "lmdeploy":
            usable = capacity
            left = max(capacity - weights / devices, 0.0)
            peak = weights / devices + _LMDEPLOY_CACHE_FRACTION * left
        else:
            usable, peak = capacity, required
    prefill_s, decode_s = (timing.prefill_seconds, timing.decode_seconds) if timing else (0, 0)
    borrowed = bool(timing and timing.coefficients.borrowed_from)
    estimate = cpu.EngineEstimate(prefill_s, decode_s, required, usable, notes, borrowed)
    return estimate, peak


def predict(
    spec: ModelSpec,
    q: Quant,
    engine: str,
    hw: Hardware,
    work: Workload,
) -> Prediction:
    """Memory and time of one batch of ``work``; ``fits`` False with reasons in ``notes``."""
    if engine not in _PROFILES:
        raise InvalidRequest(
            f"未知推理引擎 / unknown engine {engine!r}: one of {', '.join(ENGINES)}",
            param="engine",
        )
    if work.input_tokens < 0 or work.output_tokens < 1 or work.batch < 1:
        raise InvalidRequest(
            "需要 input-tokens ≥ 0, output-tokens ≥ 1, batch ≥ 1 / "
            "input-tokens must be ≥ 0, output-tokens ≥ 1 and batch ≥ 1",
            param="tokens",
        )
    device = hw.device
    problems = _check_support(spec, q, engine, hw)
    notes = list(problems)
    supported = not problems
    if supported and q.weight_only_int and device.kind == "gpu" and not device.has("marlin"):
        notes.append(
            f"Marlin 内核需 sm80+，{q.name} 在 {device.name} 上用较慢内核 / Marlin kernels need "
            f"sm80+: {q.name} runs on slower kernels on {device.name}"
        )
    if engine.split("-", maxsplit=1)[0] in ("vllm", "sglang") and device.arch == "sm70":
        notes.append(
            "vLLM 0.21 起需算力 7.5，V100 需固定旧版本 / vLLM 0.21 and later need compute "
            "capability 7.5: on V100 pin an earlier release (its docs list 7.0 up to 0.20)"
        )
    if q.name == "BF16" and device.kind == "gpu" and not device.has("bf16"):
        notes.append(
            f"{device.name} 无 bf16，按 fp16 运行 / no bf16 on {device.name}: runs in fp16"
        )
    weights = weight_bytes(spec, q) + vision_bytes(spec, engine)
    kv = kv_cache_bytes(spec, work)
    if device.kind == "cpu" or engine == "llamacpp":
        est = cpu.predict_llamacpp(spec, q, hw, work, weights, kv)
        peak = est.required_bytes
    else:
        est, peak = _accelerator_estimate(spec, q, engine, hw, work, weights, kv)
    notes.extend(est.notes)
    if device.arch.startswith("ascend") and est.decode_seconds > 0:
        # Held out, not fitted (docs/benchmarks.md): MindIE's quick-start run of Qwen2-7B on
        # 4 NPUs (TPOT 10.7 ms) and vLLM-Ascend's nightly Qwen3-32B-W8A8 TP4 baseline at 72
        # streams (1,065 tok/s) are 1.9x and 1.3x slower than this model predicts.
        notes.append(
            "昇腾速度未校准：两次公开实测比预测慢 1.3–1.9 倍 / Ascend speed is not calibrated: "
            "two published MindIE / vLLM-Ascend runs were 1.3-1.9x slower than predicted"
        )
    required, usable = est.required_bytes, est.usable_bytes
    prefill_s, decode_s = est.prefill_seconds, est.decode_seconds
    fits = supported and required <= usable
    if supported and not fits:
        problems.append(
            f"每卡需 {required / GIB:.1f} GB，可用 {usable / GIB:.1f} GB / "
            f"needs {required / GIB:.1f} GB per device, {usable / GIB:.1f} GB usable"
        )
        notes.append(problems[-1])
    return Prediction(
        model=spec.id,
        quant=q.name,
        engine=engine,
        hardware=str(hw),
        input_tokens=work.input_tokens,
        output_tokens=work.output_tokens,
        batch=work.batch,
        weights_gb=weights / GIB,
        kv_cache_gb=kv / GIB,
        peak_memory_gb=peak / GIB,
        required_memory_gb=required / GIB,
        usable_memory_gb=usable / GIB,
        prefill_seconds=prefill_s,
        decode_seconds=decode_s,
        fits=fits,
        notes=notes,
        problems=problems,
        speed_borrowed=est.borrowed,
    )
