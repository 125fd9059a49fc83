"""``heshi usage``: one tenant's usage from the ledger, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from heshi.cli.database import ConfigOption, SinceOption, UntilOption, open_database, parse_time
from heshi.cli.reporting import reporting_errors
from heshi.store.keys import KeyStore
from heshi.store.usage import UsageRow, usage_report


class GroupBy(StrEnum):
    """How ``heshi usage`` groups rows."""

    model = "model"
    key = "key"
    day = "day"
    endpoint = "endpoint"
    reason = "reason"


_GROUP_HEADERS = {
    "model": "model\n模型",
    "key": "key\n密钥",
    "day": "day (UTC)\n日期",
    "endpoint": "endpoint\n接口",
    "reason": "reason\n结果",
}


def usage(
    tenant: Annotated[
        str,
        typer.Option("--tenant", help="租户（必填）/ Tenant (required).", show_default=False),
    ],
    since: SinceOption = "30d",
    until: UntilOption = None,
    by: Annotated[
        GroupBy,
        typer.Option(
            "--by",
            help="分组：模型、密钥、日期、接口或结果（如 quota.key.rpm）/ Group by model, key, "
            "day, endpoint (chat, guard…) or reason (ok, quota.key.rpm, client_gone…).",
        ),
    ] = GroupBy.model,
    csv_output: Annotated[bool, typer.Option("--csv", help="以 CSV 输出 / Print CSV.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """按模型、密钥或日期查看一个租户的用量。/ Show one tenant's usage by model, key or day.

    Requests, prompt/completion tokens, errors and mean latency from the usage ledger.
    """
    now = datetime.now(UTC)
    with reporting_errors():
        start = parse_time(since, option="--since", now=now, future=False)
        end = None if until is None else parse_time(until, option="--until", now=now, future=False)
        with open_database(config) as db:
            rows = usage_report(db, tenant=tenant, since=start, until=end, by=by.value)
            # Names make key ids readable; the lookup is limited to this tenant's keys.
            names = {k.id: k.name for k in KeyStore(db).list(tenant)} if by is GroupBy.key else {}
    if json_output:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], ensure_ascii=False, indent=2))
    elif csv_output:
        _print_csv(rows, by.value)
    else:
        _print_table(rows, by.value, names, title=f"{tenant}: {_span(start, end)}")


def _print_csv(rows: list[UsageRow], by: str) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    fields = [f.name for f in dataclasses.fields(UsageRow)]
    writer.writerow([by, *fields[1:]])
    for row in rows:
        values = dataclasses.asdict(row)
        writer.writerow(["" if values[f] is None else _cell(values[f]) for f in fields])


def _print_table(rows: list[UsageRow], by: str, names: dict[str, str], *, title: str) -> None:
    if not rows:
        typer.echo(f"没有用量记录 / no usage recorded ({title})")
        return
    console = Console()
    # every column in a wide terminal; in a narrow one (80 columns) the numbers would
    # squeeze the label column to nothing: prompt and completion give way to their total
    narrow = console.width < _FULL_WIDTH
    shown = [i for i in range(len(_NUMBER_HEADERS)) if not (narrow and i in _NARROW_DROPS)]
    table = Table(title=title, title_justify="left")
    table.add_column(_GROUP_HEADERS[by], overflow="fold", min_width=8)
    for i in shown:
        table.add_column(_NUMBER_HEADERS[i], justify="right", no_wrap=True)
    for row in rows:
        label = row.group or "-"
        if row.group in names:
            label = f"{row.group} ({names[row.group]})"
        numbers = _numbers(row)
        table.add_row(label, *(numbers[i] for i in shown))
    if len(rows) > 1:
        table.add_section()
        total = _numbers(_sum(rows))
        table.add_row("total / 合计", *(total[i] for i in shown))
    console.print(table, markup=False, highlight=False)
    if narrow:
        typer.echo(
            "（终端较窄：省略了输入、输出列；加宽终端或用 --csv/--json 查看 / a narrow terminal: "
            "prompt and completion left out; widen it or use --csv or --json)",
            err=True,
        )


_NUMBER_HEADERS = (
    "requests\n请求",
    "prompt\n输入",
    "completion\n输出",
    "total\n合计",
    "errors\n错误",
    "latency ms\n平均延迟",
    "TTFT ms\n首字延迟",
    "cost\n花费",
)
_NARROW_DROPS = (1, 2)  # prompt, completion: their sum stays
_FULL_WIDTH = 110


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _numbers(row: UsageRow) -> list[str]:
    return [
        f"{row.requests:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        f"{row.total_tokens:,}",
        f"{row.errors:,}",
        _ms(row.mean_latency_ms),
        _ms(row.mean_ttft_ms),
        "-" if row.cost is None else f"{row.cost:,.4f}",
    ]


def _sum(rows: list[UsageRow]) -> UsageRow:
    requests = sum(r.requests for r in rows)
    latency = sum((r.mean_latency_ms or 0.0) * r.requests for r in rows) / max(requests, 1)
    return UsageRow(
        group=None,
        requests=requests,
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        total_tokens=sum(r.total_tokens for r in rows),
        errors=sum(r.errors for r in rows),
        mean_latency_ms=latency,
        # Group TTFT means cover only streamed requests, whose count the report does not
        # carry, so they cannot be combined exactly; show none rather than a wrong one.
        mean_ttft_ms=None,
        cost=None if all(r.cost is None for r in rows) else sum(r.cost or 0.0 for r in rows),
    )


def _cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _span(start: datetime, end: datetime | None) -> str:
    fmt = "%Y-%m-%d %H:%M"
    return f"{start.strftime(fmt)} → {end.strftime(fmt) if end else 'now'} UTC"
