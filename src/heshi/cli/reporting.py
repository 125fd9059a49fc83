"""How ``heshi`` commands report — a failure as one red message and exit status 1, files
worked through with a progress bar — and the options several of them share."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from heshi.errors import HeshiError

JsonOption = Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="网关地址，如 http://127.0.0.1:8000/v1（默认在本进程中运行）/ A gateway to ask "
        "instead (default: one built in this process).",
        show_default=False,
    ),
]


class _Counting(Progress):
    """A progress bar on a terminal; elsewhere (a log file, CI, a pipe), where a bar is not
    drawn, a plain line at every tenth of the work, and after any item that ends a minute
    or more after the last line."""

    def __init__(self, *columns: ProgressColumn, **options: Any) -> None:
        super().__init__(*columns, **options)
        self._step: dict[TaskID, int] = {}  # tenths of each task already said
        self._last = time.monotonic()  # when a line was last said

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.console.is_terminal:
            return
        task = self._tasks[task_id]
        total = int(task.total or 0)
        done = int(task.completed)
        step = done * 10 // total if total else 0
        now = time.monotonic()
        if step > self._step.get(task_id, 0) or now - self._last >= 60:
            self._step[task_id] = step
            self._last = now
            elapsed = int(task.elapsed or 0)
            share = f" ({done * 100 // total}%)" if total else ""
            self.console.print(
                f"{task.description}: {done}/{total or '?'}{share}, "
                f"{elapsed // 60}m{elapsed % 60:02d}s",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip


def counting(console: Console, *, transient: bool = True) -> Progress:
    """A progress bar of items done out of all, with the time elapsed (plain lines where
    the console is not a terminal)."""
    return _Counting(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=transient,
    )  # fmt: skip


def files_below(paths: Iterable[Path], console: Console) -> tuple[list[Path], bool]:
    """The files below ``paths`` (files and directories) that a reader takes, and whether
    any path was missing — each missing one said in red, each file of a type no reader
    takes found in a directory said in yellow and left out. With nothing to work on, the
    command ends here with exit status 1."""
    from heshi.apps.kb.ingest import expand

    given = list(paths)
    missing = [p for p in given if not p.exists() and not p.is_symlink()]
    for path in missing:
        console.print(f"不存在 / not found: {path}", style="red", markup=False)
    skipped: list[Path] = []
    files = list(expand((p for p in given if p not in missing), skipped))
    for path in skipped:
        console.print(
            f"跳过 / skipped      {path}  不支持的文件类型 / unsupported file type "
            f"{path.suffix or '(none)'}",
            style="yellow", markup=False, highlight=False,
        )  # fmt: skip
    if not files:
        if not missing:
            console.print(
                "没有可处理的文件 / no file to work on: "
                + ", ".join(str(p) for p in given),
                style="red", markup=False, highlight=False,
            )  # fmt: skip
        raise typer.Exit(1)
    return files, bool(missing)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a HeshiError into a red message on stderr and exit status 1."""
    try:
        yield
    except HeshiError as exc:
        Console(stderr=True).print(
            exc.message, style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from exc
