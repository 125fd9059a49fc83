"""How every ``heshi`` command reports a failure: one red message, exit status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from heshi.errors import HeshiError


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
