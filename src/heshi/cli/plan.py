"""``heshi plan``: size a Qwen deployment for the hardware at hand."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from heshi import catalog
from heshi.catalog import ModelSpec
from heshi.cli.reporting import reporting_errors
from heshi.errors import HeshiError, InvalidRequest
from heshi.plan import resolve_hardware
from heshi.plan.fit import resolve_row
from heshi.plan.gguf import spec_from_gguf
from heshi.plan.predict import ENGINES, predict
from heshi.plan.quant import Quant, quant
from heshi.plan.speed import Workload

app = typer.Typer(
    help="为现有硬件规划 Qwen 部署 / Size a Qwen deployment for the hardware at hand.",
    no_args_is_help=True,
)

_ROW_COLUMNS = ("model", "framework", "hardware", "gpu_num", "input_length", "output_length")


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
        result = predict(
            spec,
            q,
            engine.strip().lower(),
            resolve_hardware(hardware),
            Workload(input_tokens, output_tokens, batch),
        ).as_json()
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
                row = resolve_row(
                    {**raw, "speed_tokens_per_s": raw.get("speed_tokens_per_s") or "1"}
                )
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
        table.add_row(key, str(result[key]))
    console = Console()
    console.print(table)
    for note in result["notes"] or []:  # type: ignore[attr-defined]
        console.print(f"• {note}", markup=False)
