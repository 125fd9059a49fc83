"""``heshi docs``: fields out of Chinese business documents, as JSON a schema describes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from heshi.apps.docs.schema import BUILT_IN
from heshi.cli.chat import ApiKeyOption
from heshi.cli.database import ConfigOption
from heshi.cli.reporting import JsonOption, UrlOption, counting, files_below, reporting_errors
from heshi.config import load_config

app = typer.Typer(
    help="单据抽取：发票、合同、提单、对账单 → JSON。/ Documents → fields as JSON.",
    no_args_is_help=True,
    add_completion=False,
)


SchemaOption = Annotated[
    str,
    typer.Option(
        "--schema",
        help=f"内置（{', '.join(BUILT_IN)}）或 JSON Schema 文件 / or a JSON Schema file.",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="抽取用的模型（默认内置模型）/ Model (default: the embedded one).",
        show_default=False,
    ),
]
MaxCharsOption = Annotated[
    int, typer.Option("--max-chars", min=200, help="最多读多少字 / Characters read at most.")
]


@app.command("extract", help="从一个文件抽取字段。/ Extract the fields of one file.")
def extract_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="文件 / File: PDF, OFD, DOCX, TXT, MD, HTML, PNG, JPEG, TIFF, BMP, WebP."
        ),
    ],
    schema: SchemaOption,
    url: UrlOption = None,
    key: ApiKeyOption = None,
    model: ModelOption = None,
    max_chars: MaxCharsOption = 4000,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    from heshi.apps.docs.classify import AUTO, NotBuiltIn, classify_and_extract
    from heshi.apps.docs.extract import Extraction
    from heshi.apps.docs.read import document_text
    from heshi.apps.docs.schema import Schema, load_schema
    from heshi.cli.gateway_call import asking

    err = Console(stderr=True)
    with reporting_errors():
        chosen = None if schema == AUTO else load_schema(schema)
        document = document_text(file)  # an unreadable file: one line, exit 1
        name = model or load_config(config).engine.name

        async def run() -> tuple[str | None, Schema, Extraction]:
            async with asking(url, key, config) as ask:
                try:
                    return await classify_and_extract(ask, chosen, document.text, name, max_chars)
                except NotBuiltIn:
                    err.print("类型 / kind: other", markup=False, highlight=False)
                    raise

        kind, chosen, result = asyncio.run(run())
        if kind is not None:
            err.print(f"类型 / kind: {kind}", markup=False, highlight=False)
    for problem in result.problems:
        err.print(f"⚠ {problem.field}: {problem.reason}", style="yellow", markup=False)
    if as_json:
        typer.echo(json.dumps(result.values, ensure_ascii=False))
        return
    table = Table("字段 / field", "值 / value", title=f"{file.name} ({chosen.name})")
    for field, value in result.values.items():
        table.add_row(field, "—" if value is None else str(value))
    Console().print(table)


@app.command(
    "run",
    help="批量抽取目录中的文件，结果逐行写入 JSONL；重跑时跳过已完成的文件。"
    "/ Extract every file below directories into JSON Lines; a rerun skips finished files.",
)
def run_command(
    paths: Annotated[list[Path], typer.Argument(help="文件或目录 / Files or directories.")],
    schema: SchemaOption,
    out: Annotated[Path, typer.Option("--out", help="结果文件（JSONL）/ Results (JSONL).")],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="同时处理的文件数（默认 1；用 --ray 时为集群 CPU 数）/ Files at once "
            "(default 1; with --ray, the cluster's CPUs). Reader processes: at most the cores.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="在 Ray 集群上读取文件：auto 或集群地址 / Read files on a Ray cluster: "
            "auto (this machine's cluster, else a local instance) or its address.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1,
            help="每个文件读取（解析、OCR）的最长秒数 / Seconds a file's reading (parsing, OCR) "
            "may take before it is stopped and the file failed.",
        ),
    ] = 600,
    url: UrlOption = None,
    key: ApiKeyOption = None,
    model: ModelOption = None,
    max_chars: MaxCharsOption = 4000,
    config: ConfigOption = None,
) -> None:
    from heshi.apps.docs.batch import run_batch
    from heshi.apps.docs.classify import AUTO
    from heshi.apps.docs.pool import readers
    from heshi.apps.docs.schema import load_schema
    from heshi.cli.gateway_call import asking

    console = Console(stderr=True)
    with reporting_errors():
        chosen = None if schema == AUTO else load_schema(schema)
        files, missing = files_below(paths, console)
        settings = load_config(config)
        name = model or settings.engine.name

        async def run() -> Any:
            reader = readers(workers or 1, ray, settings.home, timeout)
            in_flight = workers or reader.capacity
            console.print(
                f"读取 / reading: {reader.description}; {in_flight} 个文件同时处理 / files at once",
                markup=False, highlight=False,
            )  # fmt: skip
            finished = False
            try:
                async with asking(url, key, config) as ask:
                    with counting(console, transient=False) as progress:
                        task = progress.add_task("抽取 / extracting", total=len(files))

                        def on_row(row: dict[str, Any]) -> None:
                            if row["status"] == "failed":
                                progress.console.print(
                                    f"失败 / failed  {row['file']}  {row['error']}",
                                    style="red", markup=False, highlight=False,
                                )  # fmt: skip
                            progress.advance(task)  # after the file's line, as kb ingest

                        report = await run_batch(
                            ask, chosen, files, out, model=name, max_chars=max_chars,
                            workers=in_flight, reader=reader, on_row=on_row,
                        )  # fmt: skip
                        finished = True
                        return report
            finally:
                reader.close(finished=finished)

        report = asyncio.run(run())
    typer.echo(
        f"{out}: {report.done} 完成 / done, {report.failed} 失败 / failed, "
        f"{report.skipped} 已完成跳过 / already done; {report.seconds:.1f} s"
    )
    if missing or report.failed:
        raise typer.Exit(1)
