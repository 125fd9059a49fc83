"""``heshi admin``: admin tokens for the admin API and the console; the CLI's own actor.

The CLI changes keys and tokens through the same service layer as the admin HTTP API
(:mod:`heshi.admin.service`), so its changes are audited the same way; it acts as
``cli:<login name>`` with the admin role (whoever can run it can open the database).
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from heshi.admin.service import AdminService
from heshi.admin.tokens import Actor
from heshi.audit import AuditLog
from heshi.audit.head import audit_key, head_path
from heshi.cli.database import ConfigOption, open_database
from heshi.cli.reporting import JsonOption, reporting_errors
from heshi.config import HeshiConfig, load_config

app = typer.Typer(
    help="管理令牌（管理 API 与控制台的登录凭据）。/ Admin tokens (credentials for the admin "
    "API and the console).",
    no_args_is_help=True,
    add_completion=False,
)
tokens_app = typer.Typer(
    help="创建、列出、吊销管理令牌。/ Create, list and revoke admin tokens.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(tokens_app, name="tokens")


def cli_actor() -> Actor:
    """The login the process runs as (from the user database, not ``$USER``, which anyone
    can set to another name)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, OSError, AttributeError):
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor(f"cli:{user}", "admin", "cli")


@contextmanager
def admin_service(config: Path | HeshiConfig | None) -> Iterator[AdminService]:
    """The service layer on the configured database, its audit log signed like the
    gateway's (the audit key of ``HESHI_AUDIT_KEY`` or the home, created if missing)."""
    cfg = config if isinstance(config, HeshiConfig) else load_config(config)
    with open_database(cfg) as db:
        log = AuditLog(db, key=audit_key(cfg.home, create=True), head=head_path(cfg.home, db.url))
        yield AdminService(db, log)


@tokens_app.command(
    "create", help="创建管理令牌（只显示一次）。/ Create an admin token (shown once)."
)
def create_token(
    name: Annotated[str, typer.Argument(help="名称，如 张三 / A name, e.g. the person's.")],
    role: Annotated[
        str, typer.Option("--role", help="admin（可修改）| auditor（只读）/ admin | auditor")
    ] = "admin",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    with reporting_errors(), admin_service(config) as service:
        plaintext, token = service.create_admin_token(cli_actor(), name, role)
    if json_output:
        typer.echo(json.dumps({"token": plaintext, **token.as_json()}, ensure_ascii=False))
        return
    typer.echo(f"已创建管理令牌 / created admin token {token.id} ({token.role}, {token.name})")
    typer.echo(plaintext)
    Console(stderr=True).print(
        "请立即妥善保存：只显示这一次。/ Store it now: it is shown only once.",
        style="yellow",
        markup=False,
    )


@tokens_app.command("list", help="列出管理令牌（只显示前缀）。/ List admin tokens (prefixes only).")
def list_tokens(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    with reporting_errors(), admin_service(config) as service:
        tokens = service.list_admin_tokens(cli_actor())
    if json_output:
        typer.echo(json.dumps([t.as_json() for t in tokens], ensure_ascii=False, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for header in ("ID", "NAME 名称", "ROLE 角色", "PREFIX 前缀", "LAST USED 最近使用", "STATUS"):
        table.add_column(header)
    for t in tokens:
        used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "-"
        status = "revoked 已吊销" if t.revoked_at else "active 有效"
        table.add_row(t.id, t.name, t.role, t.prefix + "…", used, status)
    Console().print(table)


@tokens_app.command("revoke", help="吊销管理令牌。/ Revoke an admin token.")
def revoke_token(
    token: Annotated[str, typer.Argument(help="ID 或前缀 / id or prefix")],
    config: ConfigOption = None,
) -> None:
    with reporting_errors(), admin_service(config) as service:
        revoked = service.revoke_admin_token(cli_actor(), token)
    typer.echo(f"已吊销 / revoked: {revoked.id} ({revoked.name})")
