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
from heshi.cli.reporting import reporting_errors
from heshi.config import load_config

app = typer.Typer(
    help="单据抽取：发票、合同、提单、对账单 → JSON。/ Documents → fields as JSON.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("extract", help="从一个文件抽取字段。/ Extract the fields of one file.")
def extract_command(
    file: Annotated[
        Path, typer.Argument(help="文件 / File (PDF, DOCX, TXT, MD, HTML, CSV, XLSX).")
    ],
    schema: Annotated[
        str,
        typer.Option(
            "--schema",
            help=f"内置（{', '.join(BUILT_IN)}）或 JSON Schema 文件 / or a JSON Schema file.",
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option("--url", help="网关地址 / A gateway to ask instead.", show_default=False),
    ] = None,
    key: ApiKeyOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="抽取用的模型（默认内置模型）/ Model (default: the embedded one).",
            show_default=False,
        ),
    ] = None,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=200, help="最多读多少字 / Characters read at most.")
    ] = 4000,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    from heshi.apps.docs.extract import extract
    from heshi.apps.docs.read import document_text
    from heshi.apps.docs.schema import load_schema
    from heshi.cli.gateway_call import asking

    with reporting_errors():
        chosen = load_schema(schema)
        document = document_text(file)  # an unreadable file: one line, exit 1
        name = model or load_config(config).engine.name

        async def run() -> Any:
            async with asking(url, key, config) as ask:
                return await extract(ask, chosen, document.text, name, max_chars)

        result = asyncio.run(run())
    err = Console(stderr=True)
    for problem in result.problems:
        err.print(f"⚠ {problem.field}: {problem.reason}", style="yellow", markup=False)
    if as_json:
        typer.echo(json.dumps(result.values, ensure_ascii=False))
        return
    table = Table("字段 / field", "值 / value", title=f"{file.name} ({chosen.name})")
    for field, value in result.values.items():
        table.add_row(field, "—" if value is None else str(value))
    Console().print(table)
