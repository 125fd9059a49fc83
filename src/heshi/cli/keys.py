"""``heshi keys``: create, list, revoke, suspend and resume API keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from heshi.cli.database import ConfigOption, open_database, parse_time
from heshi.cli.reporting import reporting_errors
from heshi.store.keys import ApiKey, KeyStore

app = typer.Typer(
    help="管理 API 密钥：创建、列出、吊销、暂停、恢复。"
    "/ Manage API keys: create, list, revoke, suspend, resume.",
    no_args_is_help=True,
    add_completion=False,
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="以 JSON 输出 / Print JSON instead of text.")
]
IdArgument = Annotated[
    str, typer.Argument(help="密钥 id 或前缀 / Key id or prefix.", show_default=False)
]


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as JSON: everything but the hash (the plaintext is never stored)."""
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status,
        "status_reason": key.status_reason,
        "models": None if key.models is None else list(key.models),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_tokens": key.budget_tokens,
        "expires_at": _iso(key.expires_at),
        "created_at": _iso(key.created_at),
        "updated_at": _iso(key.updated_at),
    }


@app.command("create", help="创建 API 密钥（只显示一次）。/ Create an API key (shown once).")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="租户 / Tenant.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="名称 / Key name.", show_default=False)],
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="允许的模型，逗号分隔（默认全部）/ Allowed models, comma-separated (default all).",
            show_default=False,
        ),
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="每分钟请求数 / Requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="每分钟 token 数 / Tokens per minute.")
    ] = None,
    budget_tokens: Annotated[
        int | None,
        typer.Option("--budget-tokens", help="总 token 预算 / Lifetime token budget."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="过期时间：2027-01-01 或 30d / Expiry: 2027-01-01 or 30d.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a key and print its plaintext once."""
    with reporting_errors():
        expires_at = (
            None
            if expires is None
            else parse_time(expires, option="--expires", now=datetime.now(UTC), future=True)
        )
        allowed = None if models is None else [m for m in models.split(",") if m.strip()]
        with open_database(config) as db:
            plaintext, key = KeyStore(db).create(
                tenant,
                name,
                models=allowed,
                rpm=rpm,
                tpm=tpm,
                budget_tokens=budget_tokens,
                expires_at=expires_at,
            )
    _print_created(plaintext, key, json_output)


def _print_created(plaintext: str, key: ApiKey, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps({"key": plaintext, "id": key.id, "tenant": key.tenant}))
        return
    typer.echo(f"已创建密钥 / created key {key.id} (tenant {key.tenant}, name {key.name})")
    typer.echo(plaintext)
    Console(stderr=True).print(
        "请立即妥善保存此密钥：它只显示这一次，无法找回。"
        "/ Store this key now: it is shown only once and cannot be recovered.",
        style="yellow",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command("list", help="列出 API 密钥（只显示前缀）。/ List API keys (prefixes only).")
def list_keys(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="只看此租户 / Only this tenant.", show_default=False),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print keys as a table or JSON."""
    with reporting_errors(), open_database(config) as db:
        keys = KeyStore(db).list(tenant)
    if json_output:
        typer.echo(json.dumps([key_json(k) for k in keys], ensure_ascii=False, indent=2))
        return
    if not keys:
        typer.echo("没有 API 密钥 / no API keys")
        return
    table = Table()
    # Ids and prefixes are copied and compared: never cut them; everything else folds.
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("prefix\n前缀", no_wrap=True, min_width=13)
    for header in ("tenant\n租户", "name\n名称", "status\n状态", "models\n模型"):
        table.add_column(header, overflow="fold")
    table.add_column("rpm/tpm/budget\n限额", overflow="fold")
    table.add_column("expires (UTC)\n过期", overflow="fold")
    for key in keys:
        limits = " / ".join(
            "-" if v is None else str(v) for v in (key.rpm, key.tpm, key.budget_tokens)
        )
        table.add_row(
            key.id,
            key.prefix + "…",
            key.tenant,
            key.name,
            key.status + (f" ({key.status_reason})" if key.status_reason else ""),
            "*" if key.models is None else ", ".join(key.models),
            limits,
            "-" if key.expires_at is None else key.expires_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table, markup=False, highlight=False)


@app.command("revoke", help="永久吊销密钥。/ Revoke a key for good.")
def revoke(
    key_id: IdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Revoke a key."""
    with reporting_errors(), open_database(config) as db:
        key = KeyStore(db).revoke(key_id)
    _report(key, "已吊销 / revoked", json_output)


@app.command("suspend", help="暂停密钥，可恢复。/ Suspend a key until resumed.")
def suspend(
    key_id: IdArgument,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="原因（会告知调用方）/ Reason, shown to callers."),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Suspend a key."""
    with reporting_errors(), open_database(config) as db:
        key = KeyStore(db).suspend(key_id, reason)
    _report(key, "已暂停 / suspended", json_output)


@app.command("resume", help="恢复被暂停的密钥。/ Resume a suspended key.")
def resume(
    key_id: IdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Resume a key."""
    with reporting_errors(), open_database(config) as db:
        key = KeyStore(db).resume(key_id)
    _report(key, "已恢复 / resumed", json_output)


def _report(key: ApiKey, done: str, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(key_json(key), ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{done}: {key.id} ({key.prefix}…, tenant {key.tenant})")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
