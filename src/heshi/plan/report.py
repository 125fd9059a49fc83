"""A plan request from the words people type, and its answer as JSON: what ``heshi plan
--json`` prints and the admin API's plan calculator returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from heshi import catalog
from heshi.errors import InvalidRequest
from heshi.plan import resolve_hardware
from heshi.plan.advice import smallest_change
from heshi.plan.containers import TARGETS, container_choice, render
from heshi.plan.emit import EMITTERS, heshi_backend, launch
from heshi.plan.option import Option, Request
from heshi.plan.presets import PRESETS
from heshi.plan.quality import parse_quality
from heshi.plan.recommend import recommend


def build_request(
    *,
    hardware: str | None,
    workload: str,
    concurrency: int,
    context: int | None = None,
    ttft_p95: str | None = None,
    min_quality: str | None = None,
    models: Sequence[str] = (),
    kv_cache: str = "f16",
    min_tokens_per_s: float | None = None,
) -> Request:
    """A ``Request`` from ``heshi plan``'s options; ``InvalidRequest`` naming a bad one."""
    if not hardware:
        raise InvalidRequest("缺少 --hardware / missing --hardware", param="hardware")
    preset = PRESETS.get(workload)
    if preset is None:
        raise InvalidRequest(
            f"未知负载 / unknown workload {workload!r}: one of {', '.join(PRESETS)}",
            param="workload",
        )
    return Request(
        hardware=resolve_hardware(hardware),
        preset=preset,
        concurrency=concurrency,
        context=context or preset.context,
        ttft_p95_s=seconds(ttft_p95) if ttft_p95 else None,
        min_quality=parse_quality(min_quality),
        models=tuple(catalog.model(m).id for m in models),
        kv_cache=kv_cache.strip().lower(),
        min_tokens_per_s=_rate(min_tokens_per_s),
    )


def _rate(value: float | None) -> float | None:
    if value is not None and not (0 <= value <= 10_000):
        raise InvalidRequest(
            "--min-tokens-per-s 须在 0 到 10000 之间 / --min-tokens-per-s must be 0–10000",
            param="min_tokens_per_s",
        )
    return value


def seconds(text: str) -> float:
    raw = text.strip().lower()
    scale = 1e-3 if raw.endswith("ms") else 1.0
    try:
        value = float(raw.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(
            f"时长须为非负数，如 2s、500ms / durations are non-negative, like 2s or 500ms: "
            f"{text!r}",
            param="ttft_p95",
        )
    return value


def chosen(ranked: list[Option], emit: str | None) -> Option | None:
    """The best feasible option on engine ``emit`` (None without ``emit``)."""
    if not emit:
        return None
    if emit in TARGETS:
        return container_choice(ranked)
    if emit not in EMITTERS:
        raise InvalidRequest(
            f"--emit 的取值 / --emit takes one of {', '.join((*EMITTERS, *TARGETS))}, got {emit!r}",
            param="emit",
        )
    for option in ranked:
        if option.engine == emit:
            return option
    raise InvalidRequest(f"没有可用 {emit} 的配置 / no feasible configuration runs on {emit} here")


def plan_json(req: Request, top: int = 10, emit: str | None = None) -> dict[str, Any]:
    """Ranked options, the larger models rejected and why, the smallest change when nothing
    fits, and with ``emit`` the launch command of the best option on that engine."""
    ranked, rejected = recommend(req)
    change = None if ranked else smallest_change(req, rejected)
    best = chosen(ranked, emit)
    payload: dict[str, Any] = {
        "workload": req.preset.__dict__,
        "hardware": str(req.hardware),
        "hardware_notes": req.hardware.device.notes,
        "concurrency": req.concurrency,
        "context": req.context,
        "service_level": {
            "min_tokens_per_s": req.speed_floor or None,
            "ttft_p95_s": req.ttft_limit or None,
        },
        "options": [o.as_json() for o in ranked[:top]],
        "rejected": [o.as_json() for o in rejected],
        "smallest_change": change,
    }
    if best is not None and emit in TARGETS:
        payload["emitted"] = {"engine": best.engine, "model": best.spec.id, "quant": best.q.name}
        payload[emit] = render(emit, best, req.context, req.concurrency)
    elif best is not None and emit:
        payload["launch"] = launch(best, emit, req.context, req.concurrency)
        payload["heshi_yaml"] = heshi_backend(best, emit, context=req.context)
    return payload
