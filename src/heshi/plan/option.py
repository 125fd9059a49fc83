"""One planned configuration and what is predicted for it (:class:`Option`), and what a
plan is asked for (:class:`Request`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heshi.catalog import Hardware, ModelSpec
from heshi.plan import quality as scores
from heshi.plan.predict import Prediction
from heshi.plan.presets import Preset
from heshi.plan.quant import Quant


@dataclass
class Option:
    """One configuration and what the planner predicts for it."""

    spec: ModelSpec
    q: Quant
    engine: str
    tensor_parallel: int
    hardware: Hardware
    prediction: Prediction
    max_sequences: int
    per_user_tokens_per_s: float
    aggregate_tokens_per_s: float
    ttft_p95_s: float
    quality: float | None  # the ranking score (MMLU-Redux in the workload's mode)
    feasible: bool
    reasons: list[str] = field(default_factory=list)
    published: bool = True  # a published checkpoint exists in this quantization
    kv_cache: str = "f16"  # the KV cache's number format (llama.cpp: f16 or q8_0)
    # data-parallel copies, each on ``tensor_parallel`` devices and serving its share of the
    # users; ``max_sequences`` and the speeds above are one copy's, but for the aggregate
    replicas: int = 1
    floor_score: float | None = None  # the --min-quality benchmark's score, when asked
    mode: str = "non-thinking"  # the mode the workload runs
    quality_mode: str | None = None  # the mode the ranking score was published for

    @property
    def ceval(self) -> float | None:
        found = scores.score(self.spec, "ceval", self.mode)
        return found.value if found else None

    @property
    def speed_known(self) -> bool:
        return self.prediction.as_json()["decode_tokens_per_s"] is not None

    @property
    def devices(self) -> int:
        return self.tensor_parallel * self.replicas

    @property
    def headroom_gb(self) -> float:
        return self.prediction.usable_memory_gb - self.prediction.required_memory_gb

    def as_json(self) -> dict[str, Any]:
        known = self.speed_known
        released = scores.generation(self.spec)
        return {
            "model": self.spec.id,
            "quant": self.q.name,
            "engine": self.engine,
            "tensor_parallel": self.tensor_parallel,
            "replicas": self.replicas,
            "devices": str(self.hardware)
            if self.replicas == 1
            else f"{self.replicas}× {self.hardware}",
            "weights_gb": round(self.prediction.weights_gb, 2),
            "memory_headroom_gb": round(
                self.prediction.usable_memory_gb - self.prediction.required_memory_gb, 2
            ),
            "max_concurrent_sequences": self.max_sequences * self.replicas,
            "kv_cache": self.kv_cache,
            # null when the device has no speed figures (the notes say so)
            "per_user_tokens_per_s": round(self.per_user_tokens_per_s, 1) if known else None,
            "aggregate_tokens_per_s": round(self.aggregate_tokens_per_s, 1) if known else None,
            "ttft_p95_s": round(self.ttft_p95_s, 3) if known else None,
            "quality": self.quality,
            "quality_basis": f"{scores.RANK_BY} ({self.quality_mode or self.mode})",
            "ceval": self.ceval,
            "released": released.isoformat() if released else None,
            "published_checkpoint": self.published,
            "feasible": self.feasible,
            # false: speed unknown, so only memory and kernels were checked
            "service_level_checked": known,
            "reasons": self.reasons,
            "notes": self.prediction.notes,
        }


@dataclass(frozen=True)
class Request:
    hardware: Hardware
    preset: Preset
    concurrency: int
    context: int
    ttft_p95_s: float | None = None  # None: the preset's; 0: no limit
    min_quality: tuple[str, float] | None = None  # (metric, value), e.g. ("ceval", 75)
    models: tuple[str, ...] = ()  # restrict to these (ids); empty = every Qwen model
    kv_cache: str = "f16"  # llama.cpp's KV cache format: f16 or q8_0 (others keep 16-bit)
    min_tokens_per_s: float | None = None  # per user; None: the preset's; 0: no floor

    @property
    def ttft_limit(self) -> float:
        """The TTFT p95 an option must meet (0: none)."""
        return self.preset.ttft_p95_s if self.ttft_p95_s is None else self.ttft_p95_s

    @property
    def speed_floor(self) -> float:
        """The tokens/s each user must get (0: none)."""
        return (
            self.preset.min_tokens_per_s if self.min_tokens_per_s is None else self.min_tokens_per_s
        )
