"""The first five minutes: the serve banner, auth that says why it is on, `--version`,
`keys list` at 80 columns, and a `make serve` that installs no dev tools (the 401's
hint: tests/governance/test_gov_auth.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from heshi import __version__
from heshi.cli.main import app
from tests.loopback import free_port, wait_serving

ROOT = Path(__file__).parents[1]


def run(*args: str, home: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """``heshi ARGS`` in this process (the CLI as a user runs it, without a second
    interpreter's start-up), with its exit code, stdout and stderr."""
    env = {"HESHI_HOME": str(home), "COLUMNS": str(columns)}
    result = CliRunner().invoke(app, list(args), env=env)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def serve_and_read_banner(tiny_gguf: Path, home: Path, *extra: str) -> tuple[str, str]:
    """Start `heshi serve`, wait for its banner, stop it: (banner text, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "heshi", "serve", "--model", str(tiny_gguf), "--name", "tiny",
         "--port", str(port), "--ctx", "256", "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HESHI_HOME": str(home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        hi = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(url + "/v1/chat/completions", json=hi)
        status = r.status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    return err + f"\n[first request: {status}]", url


def test_banner_says_where_what_and_why_auth_is_open_or_required(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    text, url = serve_and_read_banner(tiny_gguf, home)
    assert f"serving at {url}/v1" in text
    assert "models: multilingual-e5-small, tiny" in text  # the built-in embedder too
    assert "no key has been created yet" in text and "[first request: 200]" in text
    assert f"sqlite:///{home}/heshi.db" in text
    assert "guard:  off" in text and "AIGC labels: off" in text
    assert "console: http://127.0.0.1:" in text and "/console" in text

    created = run("keys", "create", "--tenant", "acme", "--name", "bot", home=home)
    assert created.returncode == 0, created.stderr
    assert "This is the first key: from now on every heshi serve" in created.stderr
    again = run("keys", "create", "--tenant", "acme", "--name", "bot2", home=home)
    assert "This is the first key" not in again.stderr
    assert "requires Authorization: Bearer <key>" in again.stderr

    text, _ = serve_and_read_banner(tiny_gguf, home)
    assert "keys required" in text and "holds 2 key(s), 2 active" in text and "--open" in text
    assert "[first request: 401]" in text
    listed = json.loads(run("keys", "list", "--json", home=home).stdout)
    for key in listed:  # revoked keys still require keys; the banner says so
        assert run("keys", "revoke", key["id"], home=home).returncode == 0
    text, _ = serve_and_read_banner(tiny_gguf, home)
    assert "holds 2 key(s), 0 active" in text and "none active: heshi keys create" in text
    assert "[first request: 401]" in text
    text, _ = serve_and_read_banner(tiny_gguf, home, "--open")
    assert "no keys checked (--open" in text and "[first request: 200]" in text


def test_version_flag() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0
        assert result.output.strip() == f"heshi {__version__}"


def test_keys_list_fits_80_columns_and_keeps_ids_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = []
    for tenant, name, extra in [
        ("acme-bank-shanghai-branch", "customer-service-bot-for-credit-cards",
         ["--rpm", "600", "--tpm", "100000", "--budget-tokens", "5000000", "--expires", "30d"]),
        ("物流", "发票处理", ["--models", "qwen2.5-7b-instruct,qwen-max,qwen3-8b"]),
    ]:  # fmt: skip
        out = run("keys", "create", "--tenant", tenant, "--name", name, *extra, "--json", home=home)
        assert out.returncode == 0, out.stderr
        made.append(out.stdout)
    run("keys", "suspend", made[1].split('"id": "')[1].split('"')[0],
        "--reason", "连续三次违规 / three violations in a row", home=home)  # fmt: skip
    listing = run("keys", "list", home=home, columns=80)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert all(cell_len(line.rstrip()) <= 80 for line in lines), listing.stdout
    ids = re.findall(r"key_[0-9a-f]{12}", listing.stdout)
    prefixes = re.findall(r"hs-[A-Za-z0-9_-]{9}…", listing.stdout)
    assert len(ids) == 2 and len(prefixes) == 2
    assert "suspended" in listing.stdout and "three violations" in listing.stdout
    assert "rpm 600, tpm 100000, budget 5000000" in listing.stdout
    assert "物流 / 发票处理" in listing.stdout


def test_make_serve_installs_no_dev_tools() -> None:
    env = {**os.environ, "VENV": "/nonexistent/fresh-venv"}  # -n: nothing is made
    plan = subprocess.run(
        ["make", "-n", "serve"], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert any("-e ." in line for line in installs), plan
    assert not any("[dev" in line or "ruff" in line or "pytest" in line for line in installs)


@pytest.mark.parametrize("flag", ["--help"])
def test_help_mentions_version(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert "--version" in result.output
