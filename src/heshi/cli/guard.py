"""``heshi guard``: the compliance guard from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from heshi.cli.reporting import reporting_errors
from heshi.errors import InvalidRequest
from heshi.guard.pii import TYPES, redact, scan

app = typer.Typer(help="合规防护 / The compliance guard.", no_args_is_help=True)


def _types(option: str | None) -> frozenset[str] | None:
    if not option:
        return None
    chosen = frozenset(t.strip() for t in option.split(",") if t.strip())
    unknown = chosen - set(TYPES)
    if unknown:
        raise InvalidRequest(
            f"未知类型 / unknown PII types {', '.join(sorted(unknown))}: one of {', '.join(TYPES)}"
        )
    return chosen


@app.command("scan")
def scan_command(
    source: Annotated[
        str, typer.Argument(help="文件或 - 表示标准输入 / a file, or - for stdin")
    ] = "-",
    jsonl: Annotated[
        Path | None,
        typer.Option("--jsonl", help="JSON Lines with a `text` field, one result line each"),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
    types: Annotated[
        str | None, typer.Option("--types", help="只查这些类型 / only these types, comma list")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--redact", help="redact | mask: print the text with findings replaced"),
    ] = None,
) -> None:
    """查找个人信息 / Find personal information (offsets are characters of the input)."""
    with reporting_errors():
        wanted = _types(types)
        if mode not in (None, "redact", "mask"):
            raise InvalidRequest(
                f"--redact 只能是 redact 或 mask / --redact takes redact or mask, got {mode!r}"
            )
        if jsonl is not None:
            _scan_jsonl(jsonl, wanted)
            return
        text = _read(source)
        findings = scan(text, wanted)
        if mode:
            sys.stdout.write(redact(text, findings, mode))
            return
        if json_output:
            payload = {"findings": [f.as_json() for f in findings]}
            sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
            return
        for f in findings:
            typer.echo(f"{f.start:>7}-{f.end:<7} {f.type:<18} {f.text}")


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"文件不存在 / no such file: {path}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"不是 UTF-8 文本 / not UTF-8 text: {path}") from None


def _scan_jsonl(path: Path, wanted: frozenset[str] | None) -> None:
    """One ``{"id"…, "findings": […]}`` per input line; a bad line gets an ``error``."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"文件不存在 / no such file: {path}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            out: dict[str, Any]
            try:
                record = json.loads(line)
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ValueError("no string field `text`")
            except ValueError as exc:
                out = {"line": number, "error": f"{exc}"}
            else:
                out = {k: v for k, v in record.items() if k != "text"}
                out["findings"] = [f.as_json() for f in scan(text, wanted)]
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
