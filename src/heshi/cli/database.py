"""What the commands over the keys-and-usage database share: ``--config``, opening the
(auto-migrated) database, and reading times such as ``2027-01-01`` or ``30d``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import make_url

from heshi.config import HeshiConfig, load_config
from heshi.errors import ConfigError
from heshi.store.db import Database

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="heshi.yaml（用于 store.url 与 home）/ heshi.yaml (for store.url and home).",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str, typer.Option("--since", help="起始：2026-11-01 或 7d / From: 2026-11-01 or 7d.")
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="截止（不含）：2026-12-01 或 1d / Until (exclusive): 2026-12-01 or 1d.",
        show_default=False,
    ),
]
_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


@contextmanager
def open_database(
    config: Path | HeshiConfig | None, *, existing: tuple[str, str] | None = None
) -> Iterator[Database]:
    """The configured database (of a heshi.yaml, or a loaded configuration), migrated to
    the current schema, disposed afterwards. ``existing`` names, in Chinese and English,
    what a command that only reads looks for: such a command refuses a SQLite file that
    is not there rather than leave an empty one behind a mistyped HESHI_HOME."""
    cfg = config if isinstance(config, HeshiConfig) else load_config(config)
    raw = cfg.store.sql_url(cfg.home)
    if existing is not None:
        url = make_url(raw)
        file = url.database if url.get_backend_name() == "sqlite" else None
        if file and file != ":memory:" and not Path(file).exists():
            raise ConfigError(
                f"没有数据库，也就没有{existing[0]} / no database, so no {existing[1]}: {file} "
                f"(HESHI_HOME={cfg.home}; 检查 HESHI_HOME 或 --config / check HESHI_HOME or "
                "--config)"
            )
    db = Database(raw)
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()


def parse_time(text: str, *, option: str, now: datetime, future: bool) -> datetime:
    """``2027-01-01``, an ISO date-time, or a duration ``12h|30d|2w`` from ``now``.

    Durations count forward when ``future`` (expiry) and back otherwise (``--since``).
    Dates and naive times are UTC. Raises ``ConfigError`` naming ``option``.
    """
    match = _DURATION.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return now + delta if future else now - delta
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} 无法解析 {text!r}：请用 2027-01-01、2027-01-01T08:00 或 30d / "
            f"{option}: cannot read {text!r}; use 2027-01-01, 2027-01-01T08:00 or 30d"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
