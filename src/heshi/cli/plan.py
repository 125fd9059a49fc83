"""``heshi plan``: size a Qwen deployment for the hardware at hand."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from heshi import catalog
from heshi.catalog import ModelSpec
from heshi.cli.plan_table import print_plan
from heshi.cli.reporting import reporting_errors
from heshi.errors import HeshiError, InvalidRequest
from heshi.plan import resolve_hardware
from heshi.plan.advice import smallest_change
from heshi.plan.containers import TARGETS, render
from heshi.plan.emit import EMITTERS, heshi_backend, launch
from heshi.plan.fit import resolve_row
from heshi.plan.gguf import spec_from_gguf
from heshi.plan.memory import KV_BYTES
from heshi.plan.predict import ENGINES, predict
from heshi.plan.presets import PRESETS
from heshi.plan.quant import Quant, quant
from heshi.plan.recommend import recommend
from heshi.plan.report import build_request, chosen, plan_json
from heshi.plan.speed import Workload

app = typer.Typer(
    help="为现有硬件规划 Qwen 部署 / Size a Qwen deployment for the hardware at hand.",
    no_args_is_help=True,
    invoke_without_command=True,
)

_ROW_COLUMNS = ("model", "framework", "hardware", "gpu_num", "input_length", "output_length")


@app.callback()
def plan(
    ctx: typer.Context,
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", help='e.g. "2x nvidia-v100-32gb", "8x huawei-ascend-910b"'),
    ] = None,
    workload: Annotated[
        str,
        typer.Option("--workload", help=f"{' | '.join(PRESETS)} / 负载类型"),
    ] = "customer-service",
    concurrency: Annotated[int, typer.Option("--concurrency", help="同时在线用户 / users")] = 8,
    context: Annotated[
        int | None, typer.Option("--context", help="每用户上下文 token / context per user")
    ] = None,
    ttft_p95: Annotated[
        str | None,
        typer.Option(
            "--ttft-p95",
            help="首 token 延迟 p95 上限，如 2s（默认按负载；0 不限）/ e.g. 2s (default: the "
            "workload's; 0: none)",
        ),
    ] = None,
    min_tokens_per_s: Annotated[
        float | None,
        typer.Option(
            "--min-tokens-per-s",
            help="每用户最低 token/s（默认按负载；0 不限）/ tokens/s each user needs "
            "(default: the workload's; 0: none)",
        ),
    ] = None,
    min_quality: Annotated[
        str | None, typer.Option("--min-quality", help="e.g. ceval=75 / 最低公开分数")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="只考虑这些模型 / only these models")
    ] = None,
    emit: Annotated[
        str | None,
        typer.Option(
            "--emit",
            help=f"{' | '.join(EMITTERS)}: launch command of the best fit; compose | helm: "
            "its backend services for deploy/compose.yaml or values for deploy/helm/heshi "
            "(only the YAML goes to stdout) / 启动命令或容器编排",
        ),
    ] = None,
    kv_cache: Annotated[
        str,
        typer.Option(
            "--kv-cache",
            help="llama.cpp KV 缓存格式 f16 | q8_0（q8_0 省约一半内存）/ llama.cpp's KV cache "
            "format: f16 | q8_0 (q8_0 takes about half the memory)",
        ),
    ] = "f16",
    top: Annotated[int, typer.Option("--top", min=1, help="显示前 N 个 / show N options")] = 10,
    json_output: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
) -> None:
    """推荐适合该硬件与负载的配置 / Rank the configurations that fit hardware and workload.

    Example: heshi plan --hardware "2x nvidia-v100-32gb" --workload customer-service
    --concurrency 50 --context 8192 --ttft-p95 2s
    """
    if ctx.invoked_subcommand is not None:
        return
    with reporting_errors():
        req = build_request(
            hardware=hardware, workload=workload, concurrency=concurrency, context=context,
            ttft_p95=ttft_p95, min_quality=min_quality, models=model or (), kv_cache=kv_cache,
            min_tokens_per_s=min_tokens_per_s,
        )  # fmt: skip
        known = emit in (*EMITTERS, *TARGETS)
        if json_output:
            try:
                payload = plan_json(req, top, emit)
            except InvalidRequest as exc:
                if not known:
                    raise
                # nothing runs on that engine: the plan still says why, then the error
                payload = {**plan_json(req, top, None), "error": exc.message}
                typer.echo(json.dumps(payload, ensure_ascii=False, indent=1))
                raise
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=1))
            return
        ranked, rejected = recommend(req)
        change = None if ranked else smallest_change(req, rejected)
        try:
            best = chosen(ranked, emit)
        except InvalidRequest:
            if known:  # the table, the reasons and the smallest change before the error
                with contextlib.redirect_stdout(sys.stderr):
                    print_plan(req, ranked[:top], rejected, change)
            raise
        if best is not None and emit in TARGETS:
            with contextlib.redirect_stdout(sys.stderr):  # stdout: the YAML alone
                print_plan(req, ranked[:top], rejected, change)
            typer.echo(render(emit, best, req.context, concurrency), nl=False)
            return
        print_plan(req, ranked[:top], rejected, change)
        if best is not None and emit:
            typer.echo(f"\n# {emit}: {best.spec.id} {best.q.name}, {best.hardware}")
            typer.echo(launch(best, emit, req.context, concurrency))
            typer.echo("\n# heshi.yaml")
            typer.echo(heshi_backend(best, emit, context=req.context))


@app.command("predict")
def predict_command(
    model: Annotated[
        str | None,
        typer.Option("--model", help="HF id (Qwen/Qwen3-8B) or a .gguf file / 模型"),
    ] = None,
    quant_name: Annotated[
        str | None,
        typer.Option("--quant", help="BF16, FP8, GPTQ-Int8, GPTQ-Int4, AWQ, Q4_K_M… / 量化"),
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help=f"{' | '.join(ENGINES)} / 推理引擎")
    ] = None,
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", help='"2x nvidia-a100-80gb", or "local" / 硬件'),
    ] = None,
    input_tokens: Annotated[int, typer.Option("--input-tokens", help="输入 token 数")] = 1024,
    output_tokens: Annotated[int, typer.Option("--output-tokens", help="输出 token 数")] = 256,
    batch: Annotated[int, typer.Option("--batch", help="并发序列数 / sequences at once")] = 1,
    kv_cache: Annotated[
        str, typer.Option("--kv-cache", help="KV 缓存格式 / KV cache format: f16 | q8_0")
    ] = "f16",
    rows: Annotated[
        Path | None,
        typer.Option(
            "--rows",
            help="CSV with the columns of qwen_speed_calibration.csv: one JSON line per row",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
) -> None:
    """预测一种配置的显存与速度 / Predict memory and speed of one configuration.

    Prints weights, KV cache and peak memory per device (GiB, as the engine reports it),
    prefill / decode / end-to-end tokens per second, whether it fits, and notes.
    """
    with reporting_errors():
        if rows is not None:
            _predict_rows(rows)
            return
        missing = [
            name
            for name, value in (
                ("--model", model),
                ("--engine", engine),
                ("--hardware", hardware),
            )
            if not value
        ]
        if missing:
            raise InvalidRequest(
                f"缺少参数 / missing {', '.join(missing)} (or give --rows FILE.csv)"
            )
        assert model and engine and hardware
        spec, q = _model_and_quant(model, quant_name)
        kv_cache = kv_cache.strip().lower()
        if kv_cache not in KV_BYTES:
            raise InvalidRequest(
                f"--kv-cache 取 f16 或 q8_0 / --kv-cache takes f16 or q8_0, got {kv_cache!r}",
                param="kv_cache",
            )
        if kv_cache != "f16" and engine.strip().lower() != "llamacpp":
            raise InvalidRequest(
                "q8_0 KV 缓存仅用于 llama.cpp / a q8_0 KV cache is llama.cpp's: other engines "
                "are planned with a 16-bit cache",
                param="kv_cache",
            )
        result = predict(
            spec,
            q,
            engine.strip().lower(),
            resolve_hardware(hardware),
            Workload(input_tokens, output_tokens, batch, KV_BYTES[kv_cache]),
        ).as_json() | {"kv_cache": kv_cache}
        if json_output:
            typer.echo(json.dumps(result, ensure_ascii=False))
        else:
            _print_prediction(result)


def _model_and_quant(model: str, quant_name: str | None) -> tuple[ModelSpec, Quant]:
    """A catalog model, or a local ``.gguf`` file (its own architecture and bits)."""
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf") or path.is_file():
        spec, q = spec_from_gguf(path)
        if quant_name and quant_name.strip().upper() not in ("", q.name.upper()):
            raise InvalidRequest(
                f"文件量化为 {q.name} / {path.name} is {q.name}, not {quant_name}",
                param="quant",
            )
        return spec, q
    if not quant_name:
        raise InvalidRequest("缺少 --quant / missing --quant", param="quant")
    return catalog.model(model), quant(quant_name)


def _predict_rows(path: Path) -> None:
    """One JSON line per CSV row, in input order; a bad row prints an ``error`` object."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in _ROW_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise InvalidRequest(f"CSV 缺少列 / the CSV lacks columns: {', '.join(absent)}")
        for number, raw in enumerate(reader, start=2):
            try:
                row = resolve_row(raw)
                result = predict(row.spec, row.q, row.engine, row.hw, row.work).as_json()
            except (HeshiError, ValueError, KeyError) as exc:
                message = exc.message if isinstance(exc, HeshiError) else str(exc)
                result = {"line": number, "error": message}
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


def _print_prediction(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key in (
        "model",
        "quant",
        "engine",
        "hardware",
        "weights_gb",
        "kv_cache_gb",
        "peak_memory_gb",
        "required_memory_gb",
        "usable_memory_gb",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "end_to_end_tokens_per_s",
        "ttft_s",
        "fits",
    ):
        value = result[key]
        table.add_row(key, "? (unknown / 未知)" if value is None else str(value))
    console = Console()
    console.print(table)
    for note in result["notes"] or []:  # type: ignore[attr-defined]
        console.print(f"• {note}", markup=False)
