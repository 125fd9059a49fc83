"""Facts the planner sizes with: Qwen-family models and the accelerators they run on.

The data are package files under ``heshi/catalog/data/`` (``models.json``,
``accelerators.json``), each entry with the public source it came from; ``SOURCES.md``
there says which values are unverified. This module loads them once and resolves the
names people type (``Qwen/Qwen3-8B``, ``qwen3-8b``, ``Qwen2.5-7B-Instruct``;
``nvidia-a100-80gb``, ``A100 80GB``, ``2x nvidia-v100-32gb``) to entries, suggesting
the nearest names when one is unknown.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from heshi.errors import InvalidRequest


class UnknownName(InvalidRequest):
    """A model or accelerator name the catalog does not have (suggestions in the text)."""

    code = "unknown_name"


@dataclass(frozen=True)
class MoE:
    experts: int
    experts_per_token: int
    moe_intermediate_size: int
    shared_expert_intermediate_size: int | None = None


@dataclass(frozen=True)
class HybridAttention:
    """Qwen3.5-style layers: only ``full_attention_layers`` keep a growing KV cache."""

    full_attention_layers: int
    linear_attention_layers: int
    linear_key_heads: int
    linear_value_heads: int
    linear_key_head_dim: int
    linear_value_head_dim: int


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts of one model (its config.json) plus published variants."""

    id: str  # Hugging Face id, e.g. "Qwen/Qwen2.5-7B-Instruct"
    name: str
    family: str
    layers: int
    hidden_size: int
    intermediate_size: int | None
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    context: int | None
    tied_embeddings: bool
    qkv_bias: bool  # Qwen2/2.5 attention projections carry biases; Qwen3 does not
    moe: MoE | None = None
    hybrid: HybridAttention | None = None
    # Multi-head latent attention (DeepSeek-V3/R1): the cache holds one compressed
    # latent (kv_lora_rank) plus the rotary key part per token and layer, not K and V.
    mla_cache_dim: int | None = None
    params_total_b: float | None = None  # as officially stated
    params_active_b: float | None = None
    # name -> repo id; Qwen's own repos carry the same id on Hugging Face and ModelScope
    quantizations: dict[str, str] = field(default_factory=dict)
    modelscope_only: frozenset[str] = frozenset()  # repos published on ModelScope alone
    quality: dict[str, float | None] = field(default_factory=dict)
    quality_source: str | None = None
    source_url: str = ""


@dataclass(frozen=True)
class CpuSpec:
    cores: int | None
    sockets: int | None
    memory_channels: int | None
    memory_type: str | None


@dataclass(frozen=True)
class Accelerator:
    """One accelerator (or a CPU server as one device) and what runs on it."""

    id: str  # lowercase slug, e.g. "nvidia-a100-80gb"
    name: str
    vendor: str
    kind: str  # "gpu" | "npu" | "cpu"
    memory_gb: float | None
    bandwidth_gb_s: float | None
    fp16_tflops: float | None
    bf16_tflops: float | None
    int8_tops: float | None
    fp8_tflops: float | None
    arch: str
    features: dict[str, bool]
    engines: tuple[str, ...]
    interconnect: str
    interconnect_gb_s: float | None
    aliases: tuple[str, ...] = ()
    cpu: CpuSpec | None = None
    verified: bool = True
    source_url: str = ""
    notes: str = ""

    def has(self, feature: str) -> bool:
        return bool(self.features.get(feature, False))

    @property
    def compute_tflops(self) -> float | None:
        """Dense half-precision tensor throughput: bf16 where supported, else fp16."""
        return self.bf16_tflops if self.has("bf16") and self.bf16_tflops else self.fp16_tflops


@dataclass(frozen=True)
class Hardware:
    """``count`` identical devices in one deployment (e.g. ``2x nvidia-v100-32gb``)."""

    count: int
    device: Accelerator

    def __str__(self) -> str:
        return f"{self.count}x {self.device.id}"


def _data(name: str) -> Any:
    return json.loads(
        resources.files("heshi.catalog").joinpath("data").joinpath(name).read_text("utf-8")
    )


def _model(raw: dict[str, Any]) -> ModelSpec:
    heads = int(raw["attention_heads"])
    hidden = int(raw["hidden_size"])
    moe = raw.get("moe")
    hybrid = raw.get("hybrid_attention")
    quality = dict(raw.get("quality") or {})
    quality_source = quality.pop("source_url", None)
    family = str(raw.get("family", ""))
    return ModelSpec(
        id=raw["id"],
        name=raw.get("name") or raw["id"].split("/")[-1],
        family=family,
        layers=int(raw["layers"]),
        hidden_size=hidden,
        intermediate_size=raw.get("intermediate_size"),
        attention_heads=heads,
        kv_heads=int(raw.get("kv_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        vocab_size=int(raw["vocab_size"]),
        context=raw.get("context"),
        tied_embeddings=bool(raw.get("tied_embeddings")),
        # Qwen1.5/2/2.5 and their distills use q/k/v biases (config has no flag for it).
        qkv_bias=family.startswith(("Qwen2", "QwQ", "DeepSeek-R1-Distill")),
        moe=MoE(
            experts=int(moe["experts"]),
            experts_per_token=int(moe["experts_per_token"]),
            moe_intermediate_size=int(moe["moe_intermediate_size"]),
            shared_expert_intermediate_size=moe.get("shared_expert_intermediate_size"),
        )
        if moe
        else None,
        hybrid=HybridAttention(**{k: int(hybrid[k]) for k in HybridAttention.__annotations__})
        if hybrid
        else None,
        mla_cache_dim=(raw["mla"]["kv_lora_rank"] + raw["mla"]["qk_rope_head_dim"])
        if raw.get("mla")
        else None,
        params_total_b=raw.get("params_total_b"),
        params_active_b=raw.get("params_active_b"),
        quantizations=dict(raw.get("quantizations") or {}),
        modelscope_only=frozenset(raw.get("modelscope_only") or ()),
        quality={k: v for k, v in quality.items() if isinstance(v, int | float) or v is None},
        quality_source=quality_source,
        source_url=raw.get("source_url", ""),
    )


def _accelerator(raw: dict[str, Any]) -> Accelerator:
    cpu = raw.get("cpu")
    return Accelerator(
        id=raw["id"],
        name=raw["name"],
        vendor=raw.get("vendor", ""),
        kind=raw.get("kind", "gpu"),
        memory_gb=raw.get("memory_gb"),
        bandwidth_gb_s=raw.get("memory_bandwidth_gb_s"),
        fp16_tflops=raw.get("fp16_tflops"),
        bf16_tflops=raw.get("bf16_tflops"),
        int8_tops=raw.get("int8_tops"),
        fp8_tflops=raw.get("fp8_tflops"),
        arch=raw.get("arch") or "",
        features={k: bool(v) for k, v in (raw.get("features") or {}).items()},
        engines=tuple(raw.get("engines") or ()),
        interconnect=raw.get("interconnect") or "",
        interconnect_gb_s=raw.get("interconnect_gb_s"),
        aliases=tuple(raw.get("aliases") or ()),
        cpu=CpuSpec(
            cores=cpu.get("cores"),
            sockets=cpu.get("sockets"),
            memory_channels=cpu.get("memory_channels"),
            memory_type=cpu.get("memory_type"),
        )
        if cpu
        else None,
        verified=bool(raw.get("verified", True)),
        source_url=raw.get("source_url", ""),
        notes=raw.get("notes", ""),
    )


@cache
def models() -> dict[str, ModelSpec]:
    """Every sizable model, by Hugging Face id."""
    return {m.id: m for m in (_model(raw) for raw in _data("models.json")["models"])}


@cache
def accelerators() -> dict[str, Accelerator]:
    """Every accelerator and CPU server, by id."""
    items = (_accelerator(raw) for raw in _data("accelerators.json")["accelerators"])
    return {a.id: a for a in items}


def _key(name: str) -> str:
    """Case, spaces, dashes and underscores do not matter when matching names."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@cache
def _model_index() -> dict[str, ModelSpec]:
    index: dict[str, ModelSpec] = {}
    for spec in models().values():
        for name in (spec.id, spec.name, spec.id.split("/")[-1]):
            index.setdefault(_key(name), spec)
    return index


@cache
def _accelerator_index() -> dict[str, Accelerator]:
    index: dict[str, Accelerator] = {}
    for acc in accelerators().values():
        for name in (acc.id, acc.name, *acc.aliases):
            index.setdefault(_key(name), acc)
    return index


def _unknown(kind_zh: str, kind_en: str, name: str, choices: list[str]) -> UnknownName:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    if not near:  # try the lowercase forms, which catch "a100" → "nvidia-a100-80gb"
        lowered = {c.lower(): c for c in choices}
        near = [
            lowered[c]
            for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.3)
        ]
    hint = f"；最接近的 / nearest: {', '.join(near)}" if near else ""
    return UnknownName(f"未知{kind_zh} / unknown {kind_en} {name!r}{hint}", param=kind_en)


def model(name: str) -> ModelSpec:
    """The model called ``name`` (HF id or short name, any case); ``UnknownName`` if none."""
    found = _model_index().get(_key(name))
    if found is None:
        raise _unknown("模型", "model", name, list(models()))
    return found


def accelerator(name: str) -> Accelerator:
    """The accelerator called ``name`` (id, name or alias, any case)."""
    found = _accelerator_index().get(_key(name))
    if found is None:
        raise _unknown("加速卡", "accelerator", name, list(accelerators()))
    return found


_HARDWARE = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(.+?)\s*$", re.IGNORECASE)


def hardware(text: str) -> Hardware:
    """``"2x nvidia-v100-32gb"`` (also ``2×``, ``2*``; no count = 1) as a ``Hardware``."""
    match = _HARDWARE.match(text)
    if not match or not match.group(2):
        raise InvalidRequest(
            f"无法解析硬件 / cannot parse hardware {text!r}: write e.g. '2x nvidia-v100-32gb'",
            param="hardware",
        )
    count = int(match.group(1) or 1)
    if not 1 <= count <= 4096:
        raise InvalidRequest(
            f"设备数量无效 / device count must be 1..4096, got {count}", param="hardware"
        )
    return Hardware(count, accelerator(match.group(2)))


__all__ = [
    "Accelerator",
    "CpuSpec",
    "Hardware",
    "HybridAttention",
    "MoE",
    "ModelSpec",
    "UnknownName",
    "accelerator",
    "accelerators",
    "hardware",
    "model",
    "models",
]
