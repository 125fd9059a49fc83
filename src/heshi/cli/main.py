"""The ``heshi`` command.

Each subcommand's module is imported only when that subcommand runs (or ``heshi --help``
lists them all): importing all of them — the gateway, SQLAlchemy, pypinyin, the admin
service — took 2.3 s before any command started, and ``heshi plan`` needs none of it.
"""

from __future__ import annotations

import functools
import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from heshi import __version__

# name → (module under heshi.cli, attribute): one command function or a Typer of
# subcommands, in the order ``heshi --help`` lists them (``version`` after the functions)
_COMMANDS: dict[str, tuple[str, str]] = {
    "ps": ("running", "ps"),
    "chat": ("chat", "chat"),
    "serve": ("serve", "serve"),
    "usage": ("usage", "usage"),
    "bench": ("bench", "bench"),
    "models": ("models", "app"),
    "keys": ("keys", "app"),
    "kb": ("kb", "app"),
    "docs": ("docs", "app"),
    "plan": ("plan", "app"),
    "admin": ("admin", "app"),
    "guard": ("guard", "app"),
    "eval": ("evaluate", "app"),
    "audit": ("audit", "app"),
    "aigc": ("aigc", "app"),
}


@functools.cache
def _load(name: str) -> Any:
    """The click command ``heshi NAME`` runs, its module imported now."""
    module, attribute = _COMMANDS[name]
    target = getattr(importlib.import_module(f"heshi.cli.{module}"), attribute)
    if name == "models":  # load and unload live beside ps, with the running engines
        running = importlib.import_module("heshi.cli.running")
        target.command("load")(running.load)
        target.command("unload")(running.unload)
    command: Any
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group even with one subcommand
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """``heshi``'s own commands, and the rest from ``_COMMANDS`` when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        functions = [n for n, (_, attribute) in _COMMANDS.items() if attribute != "app"]
        groups = [n for n in _COMMANDS if n not in functions]
        return [*functions, *super().list_commands(ctx), *groups]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in _COMMANDS:
            return _load(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="heshi",
    help="Heshi (合适): run Qwen models on the hardware you have, under the rules you live by.",
    no_args_is_help=True,
    add_completion=False,
    cls=_LazyGroup,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"heshi {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="显示版本并退出 / Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Heshi (合适): run Qwen models on the hardware you have, under the rules you live by."""


@app.command("version")
def version() -> None:
    """Print the Heshi version. / 显示版本。"""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
