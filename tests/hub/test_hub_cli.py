"""`heshi models …` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from hub_loopback_server import LoopbackHub
from hub_tiny_gguf import CHAT_TEMPLATE, write_tiny_gguf
from typer.testing import CliRunner

from heshi.cli.models import app

REF = "hf:Qwen/Tiny-GGUF/tiny.gguf"


def _env(hub: LoopbackHub) -> dict[str, str | None]:
    return {"HF_ENDPOINT": hub.url, "HF_TOKEN": None, "HESHI_HOME": None}


def test_pull_list_rm_round_trip(hub: LoopbackHub, tmp_path: Path, payload: bytes) -> None:
    hub.serve("/Qwen/Tiny-GGUF/resolve/main/tiny.gguf", payload)
    home = str(tmp_path / "home")
    runner = CliRunner()

    pulled = runner.invoke(app, ["pull", REF, "--home", home], env=_env(hub))
    assert pulled.exit_code == 0, pulled.output
    assert "tiny.gguf" in pulled.stdout

    listed = runner.invoke(app, ["list", "--home", home, "--json"])
    [entry] = json.loads(listed.stdout)
    assert (entry["ref"], entry["size"]) == (REF, len(payload))

    table = runner.invoke(app, ["list", "--home", home], env={"COLUMNS": "200"})
    assert REF in table.stdout
    assert entry["sha256"][:12] in table.stdout

    kept = runner.invoke(app, ["rm", REF, "--home", home], input="n\n")
    assert kept.exit_code == 1
    assert Path(entry["path"]).exists()

    removed = runner.invoke(app, ["rm", REF, "--home", home, "--yes"])
    assert removed.exit_code == 0
    assert not Path(entry["path"]).exists()
    assert json.loads(runner.invoke(app, ["list", "--home", home, "--json"]).stdout) == []


def test_errors_are_red_text_on_stderr_and_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()

    bad = runner.invoke(app, ["pull", "hf:Qwen", "--home", str(tmp_path)])
    assert bad.exit_code == 1
    assert "无效的模型引用 / invalid model ref" in bad.stderr
    assert bad.stdout == ""

    absent = runner.invoke(app, ["rm", REF, "--home", str(tmp_path), "--yes"])
    assert absent.exit_code == 1
    assert "not in the cache" in absent.stderr
    typo = runner.invoke(app, ["rm", "nosuch", "--home", str(tmp_path), "--yes"])
    assert typo.exit_code == 1 and "no pulled model nosuch" in typo.stderr
    assert "heshi models list" in typo.stderr  # where the names are

    not_pulled = runner.invoke(app, ["info", REF, "--home", str(tmp_path)])
    assert not_pulled.exit_code == 1
    assert f"heshi models pull {REF}" in not_pulled.stderr


def test_info_prints_facts_and_full_template_as_json(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    runner = CliRunner()

    as_json = runner.invoke(app, ["info", str(model), "--json"])
    facts = json.loads(as_json.stdout)
    assert facts["architecture"] == "qwen2"
    assert facts["quantization"] == "Q4_K_M"
    assert facts["context_length"] == 2048
    assert facts["parameters"] == 36
    assert facts["chat_template"] == CHAT_TEMPLATE

    table = runner.invoke(app, ["info", str(model)], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "Q4_K_M" in table.stdout
    assert "2048" in table.stdout
    assert "--json for all" in table.stdout


def test_info_on_a_non_gguf_file_fails_clearly(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"PK\x03\x04 not a model")
    result = CliRunner().invoke(app, ["info", str(junk)])
    assert result.exit_code == 1
    assert "not a GGUF file" in result.stderr
