"""``POST /admin/v1/plan``: the plan calculator (``heshi plan --json`` over HTTP)."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
import asyncio
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from heshi.admin.tokens import Actor
from heshi.plan.presets import PRESETS


class PlanQuery(BaseModel):
    """What ``heshi plan`` takes, as JSON."""

    model_config = ConfigDict(extra="forbid")

    hardware: Annotated[str, Field(min_length=1, max_length=100)]  # "2x nvidia-a100-80gb", "local"
    workload: Annotated[str, Field(max_length=40)] = "customer-service"
    concurrency: Annotated[int, Field(ge=1, le=100_000)] = 8
    context: Annotated[int, Field(ge=256, le=10_000_000)] | None = None
    ttft_p95: Annotated[str, Field(max_length=20)] | None = None  # "2s", "500ms"; "0": none
    min_tokens_per_s: Annotated[float, Field(ge=0, le=10_000)] | None = None  # per user
    min_quality: Annotated[str, Field(max_length=40)] | None = None  # "ceval=75"
    models: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=50)] = []
    kv_cache: Literal["f16", "q8_0"] = "f16"
    top: Annotated[int, Field(ge=1, le=100)] = 10
    emit: Annotated[str, Field(max_length=20)] | None = None


def add_calculator_routes(app: FastAPI, api: Any) -> None:
    """``GET /plan/workloads`` and ``POST /plan``."""
    from heshi.plan.report import build_request, plan_json

    Who = Annotated[Actor, Depends(api.actor)]

    @app.get("/plan/workloads", tags=["plan"])
    def workloads(actor: Who) -> list[dict[str, Any]]:
        """The workload presets: typical prompt and answer tokens, default context."""
        return [p.__dict__ for p in PRESETS.values()]

    @app.post("/plan", tags=["plan"])
    async def plan(actor: Who, body: PlanQuery) -> dict[str, Any]:
        """Configurations that fit the hardware and workload, best first, with reasons for
        the larger models that do not (what ``heshi plan --json`` prints)."""

        def run() -> dict[str, Any]:
            req = build_request(
                hardware=body.hardware, workload=body.workload, concurrency=body.concurrency,
                context=body.context, ttft_p95=body.ttft_p95, min_quality=body.min_quality,
                models=body.models, kv_cache=body.kv_cache, min_tokens_per_s=body.min_tokens_per_s,
            )  # fmt: skip
            return plan_json(req, body.top, body.emit)

        return await asyncio.to_thread(run)  # every model × quantization × engine: not on the loop
