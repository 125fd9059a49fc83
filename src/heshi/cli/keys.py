"""``heshi keys``: create, list, revoke, suspend and resume API keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from heshi.admin.service import KeySpec
from heshi.cli.admin import admin_service, cli_actor
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
        "budget_cny": key.budget_cny,
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
    budget_cny: Annotated[
        float | None,
        typer.Option(
            "--budget-cny",
            help="总费用预算（元）/ Lifetime spend budget in yuan, at the pricing table's prices.",
        ),
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
        spec = KeySpec(tenant, name, allowed, rpm, tpm, budget_tokens, expires_at, budget_cny)
        with admin_service(config) as service:
            first = service.keys.count() == 0
            plaintext, key = service.create_key(cli_actor(), spec)
    _print_created(plaintext, key, json_output)
    _say_keys_required(first)
    if budget_cny is not None:
        _say_unpriced(config, allowed)


def _say_unpriced(config: Any, allowed: list[str] | None) -> None:
    """A key with a spend budget is refused every model without a price: say which."""
    from heshi.config import load_config

    priced = set(load_config(config).pricing.models)
    missing = [m for m in allowed if m not in priced] if allowed is not None else None
    if missing == []:
        return
    zh, en = (
        ("、".join(missing), ", ".join(missing))
        if missing
        else ("除 pricing 中的模型外的所有模型", "every model but those in pricing")
    )
    typer.echo(
        f"注意：此密钥有费用预算，没有价格的模型会被拒绝：{zh}。在 heshi.yaml 的 pricing 中为其"
        f"定价 / note: this key has a spend budget, so models without a price are refused to it:"
        f" {en}. Price them under pricing in heshi.yaml",
        err=True,
    )


def _say_keys_required(first: bool) -> None:
    """Creating the first key turns auth on for every gateway on this database: say so."""
    if first:
        text = (
            "这是第一个密钥：从现在起，使用此数据库的 heshi serve 要求每个 /v1 请求携带 "
            "Authorization: Bearer <key>（运行中的网关几秒内生效；`heshi serve --open` 不校验"
            "密钥）。/ This is the first key: from now on every heshi serve on this database "
            "requires Authorization: Bearer <key> on /v1 (a running gateway within seconds; "
            "`heshi serve --open` checks no keys)."
        )
    else:
        text = (
            "heshi serve 要求每个 /v1 请求携带 Authorization: Bearer <key>（`--open` 除外）。"
            "/ heshi serve requires Authorization: Bearer <key> on /v1 (unless started --open)."
        )
    Console(stderr=True).print(text, style="cyan", markup=False, highlight=False, soft_wrap=True)


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
    print_keys(keys, Console(highlight=False))


def print_keys(keys: list[ApiKey], console: Console) -> None:
    """Two lines a key, readable in 80 columns: who it is, then what it may do.

    ``id  prefix  status  tenant / name`` (ids and prefixes are copied into commands:
    never cut; a long tenant / name is), then indented and folded at the terminal's
    width: models, limits, expiry, why it is suspended or revoked."""
    console.print(
        "id  prefix 前缀  status 状态  tenant / name 租户 / 名称", style="dim", markup=False
    )
    status_width = max(len(k.status) for k in keys)
    for key in keys:
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(key.id, style="bold")
        head.append(f"  {key.prefix}…  ")
        head.append(key.status.ljust(status_width), style=_STATUS_STYLE.get(key.status, ""))
        head.append(f"  {key.tenant} / {key.name}")
        console.print(head, no_wrap=True, overflow="ellipsis")
        limits = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("rpm", key.rpm),
                ("tpm", key.tpm),
                ("budget", key.budget_tokens),
                ("budget ¥", key.budget_cny),
            )
            if value is not None
        )
        expires = "-" if key.expires_at is None else key.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        detail = Text(
            "models 模型 "
            + ("*" if key.models is None else ", ".join(key.models))
            + " · limits 限额 "
            + (limits or "-")
            + " · expires 过期 "
            + expires
            + (f" · reason 原因 {key.status_reason}" if key.status_reason else ""),
            style="dim",
            overflow="fold",
        )
        console.print(Padding(detail, (0, 0, 0, 4)))


_STATUS_STYLE = {"active": "green", "suspended": "yellow", "revoked": "red"}


@app.command("revoke", help="永久吊销密钥。/ Revoke a key for good.")
def revoke(
    key_id: IdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Revoke a key."""
    with reporting_errors(), admin_service(config) as service:
        key = service.change_key(cli_actor(), key_id, "revoke")
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
    with reporting_errors(), admin_service(config) as service:
        key = service.change_key(cli_actor(), key_id, "suspend", reason)
    _report(key, "已暂停 / suspended", json_output)


@app.command("resume", help="恢复被暂停的密钥。/ Resume a suspended key.")
def resume(
    key_id: IdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Resume a key."""
    with reporting_errors(), admin_service(config) as service:
        key = service.change_key(cli_actor(), key_id, "resume")
    _report(key, "已恢复 / resumed", json_output)


def _report(key: ApiKey, done: str, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(key_json(key), ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{done}: {key.id} ({key.prefix}…, tenant {key.tenant})")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
