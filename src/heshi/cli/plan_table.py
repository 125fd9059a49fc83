"""The Rich tables ``heshi plan`` prints."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from heshi.plan.option import Option, Request


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value > 0 else "?"


def print_plan(
    req: Request, ranked: list[Option], rejected: list[Option], change: str | None
) -> None:
    console = Console(width=max(Console().width, 150))
    preset = req.preset
    console.print(
        f"{req.hardware} · {preset.name} ({preset.description}; ~{preset.input_tokens} in / "
        f"~{preset.output_tokens} out tokens) · {req.concurrency} users × {req.context} tokens"
        + (f" · llama.cpp KV {req.kv_cache}" if req.kv_cache != "f16" else ""),
        markup=False,
    )
    floor, ttft = req.speed_floor, req.ttft_limit
    if floor or ttft:
        console.print(
            "服务要求 / service level: "
            + (f"≥ {floor:g} tokens/s per user" if floor else "any speed")
            + (f", TTFT p95 ≤ {ttft:g} s" if ttft else "")
            + " (--min-tokens-per-s, --ttft-p95; 0 = none)",
            markup=False,
        )
    if req.hardware.device.id == "local":
        console.print(f"本机 / this machine: {req.hardware.device.notes}", markup=False)
    if ranked:
        table = Table(title="可行配置 / feasible configurations (best first)")
        for header in (
            "model\n模型", "quant\n量化", "engine\n引擎", "TP\n×copies", "headroom GB\n余量",
            "tok/s per user\n单用户", "tok/s total\n总吞吐", "TTFT p95 s", "max seqs\n最大并发",
            "MMLU-Redux\n质量", "C-Eval",
        ):  # fmt: skip
            table.add_column(header, overflow="fold")
        for o in ranked:
            data = o.as_json()
            table.add_row(
                o.spec.id + ("" if o.published else " *"),
                o.q.name,
                o.engine,
                str(o.tensor_parallel) + (f" ×{o.replicas}" if o.replicas > 1 else ""),
                f"{data['memory_headroom_gb']:.1f}",
                _rate(o.per_user_tokens_per_s),
                _rate(o.aggregate_tokens_per_s),
                f"{o.ttft_p95_s:.2f}" if o.ttft_p95_s else "?",
                str(o.max_sequences),
                "—" if o.quality is None else f"{o.quality:g}",
                "—" if o.ceval is None else f"{o.ceval:g}",
            )
        console.print(table)
        for note in ranked[0].prediction.notes:
            console.print(f"• {ranked[0].spec.id}: {note}", markup=False)
        if any(not o.published for o in ranked):
            console.print("* 需自行转换 / no published checkpoint: convert it yourself")
    else:
        console.print("没有可行配置 / nothing fits.", style="red")
        if change:
            console.print(f"最小改动 / smallest change: {change}", markup=False)
    if rejected:
        heading = (
            "更大的模型为何不行 / why larger models were rejected"
            if ranked
            else "为何不行 / why each was rejected"
        )
        console.print(f"\n{heading}:")
        for o in rejected:
            console.print(
                f"• {o.spec.id} {o.q.name} on {o.engine} ×{o.tensor_parallel}: "
                + "; ".join(o.reasons),
                markup=False,
            )
