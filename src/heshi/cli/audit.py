"""``heshi audit``: verify, export and prune the audit log (local administrators only).

The commands open the configured database directly (the admin API offers the same to
admin and auditor tokens: docs/admin-api.md).
The audit key comes from ``HESHI_AUDIT_KEY`` or ``$HESHI_HOME/audit.key``
(:mod:`heshi.audit.head`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console

from heshi.audit import DEFAULT_RETENTION_DAYS, AuditLog
from heshi.audit.head import HEAD_FILE, HEADS_DIR, audit_key, head_path
from heshi.cli.database import ConfigOption, SinceOption, UntilOption, open_database, parse_time
from heshi.cli.reporting import reporting_errors
from heshi.config import load_config
from heshi.errors import ConfigError

SHOWN_ISSUES = 20

app = typer.Typer(
    help="审计日志：校验、导出、剪除、重设链头（仅限本机管理员）。"
    "/ The audit log: verify, export, prune, rehead (local administrators only).",
    no_args_is_help=True,
    add_completion=False,
)


class Format(StrEnum):
    """Export formats."""

    jsonl = "jsonl"
    csv = "csv"


@contextmanager
def _audit_log(
    config: Path | None, head: Path | None = None, *, keyed: bool = True,
    check_head: bool = False,
) -> Iterator[AuditLog]:  # fmt: skip
    """The configured database's log: ``keyed``, with the audit key of
    ``HESHI_AUDIT_KEY`` or of ``$HESHI_HOME/audit.key``; ``check_head``, with ``head``
    (default: the database's head file in the home) as its head file."""
    cfg = load_config(config)
    with open_database(cfg, existing=("审计记录", "audit records")) as db:
        head_file = (head or head_path(cfg.home, db.url)) if check_head else None
        yield AuditLog(db, key=audit_key(cfg.home) if keyed else None, head=head_file)


@app.command(
    "verify",
    help="校验哈希链、签名与链头文件；完整时退出码 0，否则 1 并指出第一条损坏的记录。"
    "/ Check the hash chain, the signatures and the head file: exit 0 when intact, else 1 "
    "naming the first broken record.",
)
def verify(
    config: ConfigOption = None,
    head: Annotated[
        Path | None,
        typer.Option(
            "--head",
            help=f"链头文件（默认：本库的链头文件，主目录数据库为 $HESHI_HOME/{HEAD_FILE}，"
            f"其他数据库在 $HESHI_HOME/{HEADS_DIR}/ 下）/ The head file (default: the "
            f"database's own — $HESHI_HOME/{HEAD_FILE} for the home's database, a file "
            f"under $HESHI_HOME/{HEADS_DIR}/ for any other).",
            show_default=False,
        ),
    ] = None,
    no_head: Annotated[
        bool,
        typer.Option(
            "--no-head",
            help="不检查链头文件（在另一台机器上校验副本时）/ Do not check a head file (a "
            "copy checked on another machine): deleted newest records go unnoticed.",
        ),
    ] = False,
    unkeyed: Annotated[
        bool,
        typer.Option(
            "--unkeyed",
            help="没有审计密钥时只校验哈希链 / Without the audit key, check the hash chain "
            "only (anyone who can write to the database can rewrite such a chain).",
        ),
    ] = False,
) -> None:
    """Every record's hash, link, sequence number and signature; checkpoint signatures;
    the newest record against the head file written outside the database."""
    with reporting_errors(), _audit_log(config, head, check_head=not no_head) as log:
        report = log.verify()
        keyless = not log.keyed
    typer.echo(report.summary())
    if keyless and report.records and not unkeyed:
        Console(stderr=True).print(
            "没有审计密钥（HESHI_AUDIT_KEY 或 $HESHI_HOME/audit.key）：只校验了哈希链，"
            "它可被任何能写数据库的人重算；加 --unkeyed 接受此结果 / no audit key "
            "(HESHI_AUDIT_KEY or $HESHI_HOME/audit.key): only the hash chain was checked, "
            "which anyone who can write to the database can recompute; add --unkeyed to "
            "accept that",
            style="red", markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1)
    if report.intact:
        return
    err = Console(stderr=True)
    err.print(
        f"审计日志已被篡改 / the audit log has been tampered with: {report.issues[0]}",
        style="red",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for issue in report.issues[1:SHOWN_ISSUES]:
        err.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    if report.issue_count > SHOWN_ISSUES:
        err.print(f"  … {report.issue_count - SHOWN_ISSUES} more / 更多", markup=False)
    raise typer.Exit(1)


@app.command(
    "export",
    help="导出时间范围内的审计记录（JSON Lines 或 CSV）。"
    "/ Export the records of a time range as JSON Lines or CSV.",
)
def export(
    since: SinceOption = "30d",
    until: UntilOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="格式 / Format.")] = Format.jsonl,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="写入文件（默认标准输出）/ Write to FILE (default stdout).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Stream records with ``since <= ts < until`` (UTC) in sequence order."""
    now = datetime.now(UTC)
    with reporting_errors():
        start = parse_time(since, option="--since", now=now, future=False)
        end = None if until is None else parse_time(until, option="--until", now=now, future=False)
        with _audit_log(config, keyed=False) as log:  # an export needs no key
            lines = log.export(start, end, fmt.value)
            if out is None:
                _write(lines, sys.stdout)
            else:
                _write_file(lines, out)


@app.command(
    "prune",
    help=f"删除超过保留期的记录并写入签名检查点（默认 {DEFAULT_RETENTION_DAYS} 天）。"
    f"/ Remove records past retention behind a signed checkpoint "
    f"(default {DEFAULT_RETENTION_DAYS} days).",
)
def prune(
    days: Annotated[
        int, typer.Option("--days", help="保留天数 / Keep this many days.", min=1)
    ] = DEFAULT_RETENTION_DAYS,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help=f"允许少于 {DEFAULT_RETENTION_DAYS} 天 / Allow fewer than "
            f"{DEFAULT_RETENTION_DAYS} days.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Checks the records it removes first and refuses to sign over a broken chain."""
    with reporting_errors():
        if days < DEFAULT_RETENTION_DAYS and not force:
            raise ConfigError(
                f"网络日志须保留至少 {DEFAULT_RETENTION_DAYS} 天（《网络安全法》第二十一条）；"
                f"确需更短请加 --force / logs must be kept at least {DEFAULT_RETENTION_DAYS} "
                f"days (Cybersecurity Law art. 21); add --force to keep fewer"
            )
        with _audit_log(config) as log:
            result = log.prune(days)
    cutoff = result.cutoff.strftime("%Y-%m-%d %H:%M")
    if result.checkpoint_seq is None:
        typer.echo(f"没有早于 {cutoff} UTC 的记录 / nothing older than {cutoff} UTC")
    else:
        typer.echo(
            f"已删除 {result.removed} 条早于 {cutoff} UTC 的记录，检查点 seq "
            f"{result.checkpoint_seq} / removed {result.removed} records older than {cutoff} "
            f"UTC; checkpoint at seq {result.checkpoint_seq}"
        )


@app.command(
    "rehead",
    help="有意换了新数据库后：移走旧链头文件，为本库最新记录写新链头（哈希链须完整）。"
    "/ After replacing the database on purpose: move the old head file aside and note this "
    "database's newest record (its chain must verify).",
)
def rehead(
    config: ConfigOption = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="确认数据库是有意更换的 / Confirm the database was replaced on purpose: the "
            "new head vouches for it as it is now.",
        ),
    ] = False,
) -> None:
    """A head file that names a record the database no longer holds is what deleted newest
    records look like, and also what a database replaced on purpose looks like: only the
    administrator can tell. This keeps the old file (renamed) and starts a new head, and
    records the action in the log."""
    from heshi.admin.service import ADMIN_TENANT, AdminService
    from heshi.cli.admin import cli_actor

    with reporting_errors():
        cfg = load_config(config)
        key = audit_key(cfg.home)
        if key is None:
            raise ConfigError(
                "没有审计密钥（HESHI_AUDIT_KEY 或 $HESHI_HOME/audit.key），无法签署链头 / no "
                "audit key (HESHI_AUDIT_KEY or $HESHI_HOME/audit.key): a head cannot be signed"
            )
        if not yes:
            raise ConfigError(
                "新链头将为数据库的现状作保；确认是有意更换的数据库请加 --yes / the new head "
                "vouches for the database as it is now: add --yes if you replaced it on purpose"
            )
        with open_database(cfg) as db:
            path = head_path(cfg.home, db.url)
            report = AuditLog(db, key=key).verify()  # the chain itself, without the head
            if not report.intact:
                raise ConfigError(
                    f"哈希链本身已损坏，重设链头无法修复 / the chain itself is broken, which a "
                    f"new head would not repair: {report.issues[0]}"
                )
            log = AuditLog(db, key=key, head=path)
            start, kept = log.rehead()
            AdminService(db, log).record(
                cli_actor(), "audit.rehead", ADMIN_TENANT,
                {"head_file": str(path)}, {"old_head_kept_as": str(kept) if kept else None,
                                           "from_seq": start.seq},
            )  # fmt: skip
    typer.echo(
        f"新链头从 seq {start.seq} 开始：{path}"
        + (f"；旧链头保存为 {kept}" if kept else "")
        + f" / new head from seq {start.seq}: {path}"
        + (f"; the old head file is kept as {kept}" if kept else "")
    )


def _write(lines: Generator[str], stream: TextIO) -> None:
    with closing(lines):  # a failed write must not leave the database cursor open
        for line in lines:
            stream.write(line)
    stream.flush()


def _write_file(lines: Generator[str], out: Path) -> None:
    """Write next to ``out`` and rename: a failed export never leaves half a file."""
    folder = out.expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=folder)
    except OSError as exc:
        raise ConfigError(f"无法写入 {out} / cannot write {out}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            _write(lines, stream)
        os.chmod(tmp, 0o600)  # masked, but still personal data: owner only
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
