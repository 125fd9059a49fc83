"""The ``heshi`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from heshi import __version__
from heshi.cli import admin as admin_cli
from heshi.cli import aigc as aigc_cli
from heshi.cli import audit as audit_cli
from heshi.cli import bench as bench_cli
from heshi.cli import chat as chat_cli
from heshi.cli import docs as docs_cli
from heshi.cli import evaluate as evaluate_cli
from heshi.cli import guard as guard_cli
from heshi.cli import kb as kb_cli
from heshi.cli import keys as keys_cli
from heshi.cli import models as models_cli
from heshi.cli import plan as plan_cli
from heshi.cli import running as running_cli
from heshi.cli import serve as serve_cli
from heshi.cli import usage as usage_cli

app = typer.Typer(
    name="heshi",
    help="Heshi (合适): run Qwen models on the hardware you have, under the rules you live by.",
    no_args_is_help=True,
    add_completion=False,
)
models_cli.app.command("load")(running_cli.load)
models_cli.app.command("unload")(running_cli.unload)
app.add_typer(models_cli.app, name="models")
app.command("ps")(running_cli.ps)
app.command("chat")(chat_cli.chat)
app.command("serve")(serve_cli.serve)
app.add_typer(keys_cli.app, name="keys")
app.add_typer(kb_cli.app, name="kb")
app.add_typer(docs_cli.app, name="docs")
app.command("usage")(usage_cli.usage)
app.add_typer(plan_cli.app, name="plan")
app.command("bench")(bench_cli.bench)
app.add_typer(admin_cli.app, name="admin")
app.add_typer(guard_cli.app, name="guard")
app.add_typer(evaluate_cli.app, name="eval")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(aigc_cli.app, name="aigc")


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
