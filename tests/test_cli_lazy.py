"""``heshi`` imports a subcommand's module only when that subcommand runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from heshi.cli.main import app

HEAVY = ("sqlalchemy", "pypinyin", "heshi.gateway", "heshi.admin", "heshi.guard", "heshi.apps")

PROBE = """
import json, sys
from heshi.cli.main import main
sys.argv = ["heshi", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def _imported(tmp_path: Path, *args: str) -> tuple[str, list[str]]:
    """What ``heshi ARGS`` printed, and which heavy modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={"HESHI_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    *printed, last = done.stdout.strip().splitlines()
    return "\n".join(printed), json.loads(last)


def test_version_and_plan_import_nothing_they_do_not_use(tmp_path: Path) -> None:
    out, heavy = _imported(tmp_path, "--version")
    assert out.startswith("heshi ") and heavy == []
    plan = ("plan", "--hardware", "1x nvidia-t4-16gb", "--concurrency", "8")
    out, heavy = _imported(tmp_path, *plan)
    assert "vllm serve" in out or "llama-server" in out or "lmdeploy" in out, out
    assert heavy == []
    out, heavy = _imported(tmp_path, "guard", "scan", "--help")
    assert "scan" in out and "heshi.guard" in heavy  # the command's own module is loaded


def test_every_command_is_listed_and_an_unknown_one_is_refused() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0
    for name in ("ps", "chat", "serve", "usage", "bench", "version", "models", "keys", "kb",
                 "docs", "plan", "admin", "guard", "eval", "audit", "aigc"):  # fmt: skip
        assert f"│ {name} " in listed.output, name
    # models' load and unload come from the running engines' module
    models = runner.invoke(app, ["models", "--help"])
    assert "│ load " in models.output and "│ unload " in models.output
    unknown = runner.invoke(app, ["bogus"])
    assert unknown.exit_code == 2 and "bogus" in unknown.output
