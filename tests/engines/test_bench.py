"""``heshi bench`` on the tiny real GGUF: it measures, writes where ``heshi plan`` reads,
keeps llama.cpp's log out of the terminal, and refuses bad input clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heshi.cli.main import app
from heshi.engines.bench import StreamTrace, window_rate
from heshi.errors import EngineError
from heshi.plan import measured


def test_bench_measures_writes_and_plan_uses_it(
    tiny_gguf: Path, bench_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = CliRunner().invoke(
        app, ["bench", "--model", str(tiny_gguf), "--threads", "1", "--streams", "1,2", "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    saved = json.loads((bench_home / "bench" / "local.json").read_text(encoding="utf-8"))
    assert saved == printed
    assert saved["machine"] == measured.this_machine()
    assert [run["streams"] for run in saved["decode"]] == [1, 2]
    assert all(run["tokens_per_s"] > 0 and run["ttft_s"] > 0 for run in saved["decode"])
    assert set(saved["decode_tokens_per_s"]) == {"1", "2"}
    assert saved["prefill_tokens"] >= 300 and saved["prefill_tokens_per_s"] > 0
    assert saved["ttft_s"] > 0 and saved["engine"]["threads"] == 1
    assert saved["effective"]["read_bandwidth_gb_s"] > 0
    engine = saved["engine"]
    assert engine["features"] and all(" " not in f and ":" not in f for f in engine["features"])
    assert not set(engine["unused_cpu_features"]) & set(engine["features"])
    # llama.cpp's per-request log went to a file, not to the terminal
    log = (bench_home / "bench" / "engine.log").read_text(encoding="utf-8", errors="replace")
    assert "print_timing" in log
    assert "print_timing" not in capfd.readouterr().err
    # the planner now takes this machine's figures from the file
    plan = CliRunner().invoke(
        app,
        ["plan", "predict", "--model", str(tiny_gguf), "--engine", "llamacpp",
         "--hardware", "local", "--input-tokens", "16", "--output-tokens", "8", "--json"],
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    prediction = json.loads(plan.stdout)
    assert any("heshi bench" in note for note in prediction["notes"])
    # the model it was measured with is predicted at its own measured one-stream rate
    assert prediction["decode_tokens_per_s"] == pytest.approx(
        saved["decode_tokens_per_s"]["1"], rel=0.05
    )


def test_bad_streams_and_a_missing_model_are_one_clear_line(bench_home: Path) -> None:
    for streams in ("0,2", "a,b", "", "1,65", "1", "2,4", "8"):
        result = CliRunner().invoke(app, ["bench", "--streams", streams])
        assert result.exit_code == 1 and "--streams" in result.stderr, streams
    result = CliRunner().invoke(app, ["bench", "--model", str(bench_home / "nope.gguf")])
    assert result.exit_code == 1 and "nope.gguf" in result.stderr
    assert not (bench_home / "bench" / "local.json").exists()


def test_an_embedding_engine_config_is_measured_generating(
    tiny_gguf: Path, bench_home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "heshi.yaml"
    config.write_text(
        f"home: {bench_home}\nengine: {{model: {tiny_gguf}, embeddings: true, threads: 1}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["bench", "-c", str(config), "--streams", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decode"][1]["tokens_per_s"] > 0
    log = (bench_home / "bench" / "engine.log").read_text(encoding="utf-8", errors="replace")
    assert "print_timing" in log and "embeddings required" not in log  # generating


def test_a_home_it_cannot_write_is_one_clear_line(tiny_gguf: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the home's bench folder would go", encoding="utf-8")
    config = tmp_path / "heshi.yaml"
    config.write_text(f"home: {blocked}\nengine: {{threads: 1}}\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["bench", "-c", str(config), "--model", str(tiny_gguf), "--streams", "1,2"]
    )
    assert result.exit_code == 1 and "HESHI_HOME" in result.stderr
    assert "Traceback" not in result.output


def _trace(times: list[float], start: float = 0.0) -> StreamTrace:
    return StreamTrace(started=start, times=times, tokens=list(range(1, len(times) + 1)))


def test_the_window_counts_only_tokens_while_every_stream_decodes() -> None:
    # stream a: a token every 0.1 s from 1.0; stream b starts decoding at 2.0
    a = _trace([1.0 + 0.1 * i for i in range(31)])  # to 4.0
    b = _trace([2.0 + 0.2 * i for i in range(16)])  # to 5.0
    # window 2.0 .. 4.0: a makes 20 tokens, b makes 10
    assert window_rate([a, b]) == pytest.approx(30 / 2.0)
    # streams that never overlap: tokens after each one's first over the whole span
    c = _trace([0.0, 1.0, 2.0])
    d = _trace([3.0, 4.0])
    assert window_rate([c, d]) == pytest.approx(3 / 4.0)
    with pytest.raises(EngineError):
        window_rate([_trace([1.0])])
