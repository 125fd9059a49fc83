"""Every ``heshi …`` command line in the docs and README is a command the CLI accepts: its
subcommands exist and its options and arguments parse (nothing is run). A renamed flag or
command fails here before a reader meets it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

# Typer carries its own copy of click; its usage error is what a bad command line raises
from typer._click.exceptions import UsageError

from heshi.cli.main import app

ROOT = Path(__file__).parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_BLOCK = re.compile(r"```(?:bash|sh|console|shell)\n(.*?)```", re.S)


def command_lines(path: Path) -> list[str]:
    found = []
    for block in _BLOCK.findall(path.read_text("utf-8")):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip().removeprefix("$ ")
            for prefix in (".venv/bin/heshi ", "heshi "):
                if line.startswith(prefix):
                    found.append("heshi " + line.removeprefix(prefix))
    return found


COMMANDS = [
    pytest.param(line, id=f"{path.name}:{line[:60]}")
    for path in DOCS
    for line in dict.fromkeys(command_lines(path))
]


def parse(argv: list[str]) -> Any:
    """Parse ``argv`` down the command tree as the CLI would before running, without
    running anything; a bad command line raises UsageError."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("heshi", list(argv), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, command, remaining = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, remaining, parent=ctx, resilient_parsing=False)
    return ctx


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(
    "argv",
    [
        ["kb", "evaluate", "q.json"],  # no such command
        ["kb", "eval", "q.json"],  # --kb missing
        ["kb", "ask", "--kb", "x", "--jsn", "q"],  # a misspelt option
    ],
)
def test_a_wrong_command_line_is_caught(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(argv)


def argvs(line: str) -> list[list[str]]:
    """The command lines of a docs line: synopsis notation read as the reader would
    (``[--json]`` — the option is given; ``jsonl|csv`` — one of them; ``…`` — more of
    the same; ``A / B`` — two commands), and stopped at a pipe or redirection."""
    out: list[list[str]] = [[]]
    for given in shlex.split(line, comments=True):
        if given in ("|", ">", "&&", ";", "&"):
            break
        if given == "/":
            out.append([])
            continue
        word = given.replace("[", "").replace("]", "")
        word = word.split("|")[0]
        if word and word != "…":
            out[-1].append(word)
    return [argv[1:] for argv in out if argv and argv[0] == "heshi"]


@pytest.mark.parametrize("line", COMMANDS)
def test_each_documented_command_parses(line: str) -> None:
    for argv in argvs(line):
        try:
            parse(argv)
        except UsageError as exc:
            message = exc.format_message()
            if "does not exist" in message:  # a file of the reader's own, named as an example
                continue
            pytest.fail(f"{line!r}: {message}")
