"""``heshi plan --hardware local`` from what ``heshi bench`` measured, and the KV format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.plan import cpu, measured, resolve_hardware
from heshi.plan.memory import KV_BYTES, Workload, kv_bytes_per_token
from heshi.plan.predict import predict
from heshi.plan.quant import quant

SPEC = catalog.model("Qwen/Qwen2.5-1.5B-Instruct")
BIGGER = catalog.model("Qwen/Qwen2.5-7B-Instruct")
Q4 = quant("Q4_K_M")
# What a run on a 2-core machine could look like: batching gains, then flattens.
RATES = {1: 12.0, 2: 19.0, 4: 26.0, 8: 30.0}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HESHI_HOME", str(tmp_path))
    for cached in (measured.measured_here, cpu.local_machine):
        cached.cache_clear()
    yield tmp_path
    for cached in (measured.measured_here, cpu.local_machine):
        cached.cache_clear()


def _result(**changes: object) -> dict[str, object]:
    result: dict[str, object] = {
        "format": measured.FORMAT,
        "measured_at": "2026-12-05T08:00:00+00:00",
        "machine": measured.this_machine(),
        "model": {"name": "Qwen2.5 1.5B Instruct", "quantization": "Q4_K_M"},
        "effective": measured.effective_figures(SPEC, Q4, 400, 70.0, RATES),
    }
    return result | changes


def test_the_figures_give_back_the_measured_rates_and_scale_with_bytes(home: Path) -> None:
    measured.write_result(_result())
    hw = resolve_hardware("local")
    assert "heshi bench 2026-12-05" in hw.device.notes
    for streams, rate in RATES.items():
        p = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, streams)).as_json()
        # a straight line through four step times: each within 15% of what was measured
        assert p["decode_tokens_per_s"] == pytest.approx(rate, rel=0.15), streams
        assert any("heshi bench" in note for note in p["notes"])
    prefill = predict(SPEC, Q4, "llamacpp", hw, Workload(400, 1, 1)).as_json()
    assert prefill["prefill_tokens_per_s"] == pytest.approx(70.0, rel=0.01)
    one = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, 1)).as_json()
    big = predict(BIGGER, Q4, "llamacpp", hw, Workload(8, 64, 1)).as_json()
    # a 7B model reads about 4.5x the bytes of a 1.5B one per token
    assert 3.5 < one["decode_tokens_per_s"] / big["decode_tokens_per_s"] < 5.5


def test_a_file_from_another_machine_or_a_broken_one_is_ignored_and_said(home: Path) -> None:
    other = {"cpu": "Some Other CPU", "cores": 64}
    measured.write_result(_result(machine=other))
    figures, why = measured.read_measured()
    assert figures is None and why is not None and "another machine" in why
    hw = resolve_hardware("local")
    assert "run heshi bench" in hw.device.notes and "another machine" in hw.device.notes
    measured.bench_path().write_text("{not json", encoding="utf-8")
    assert "cannot be read" in (measured.read_measured()[1] or "")
    measured.write_result(_result(format=99))
    assert "another format" in (measured.read_measured()[1] or "")
    broken = _result()
    del broken["effective"]
    measured.write_result(broken)
    assert "incomplete" in (measured.read_measured()[1] or "")
    measured.bench_path().unlink()
    assert measured.read_measured() == (None, None)


def test_effective_figures_need_rates() -> None:
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, 0.0, RATES)
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, 70.0, {})
    flat = measured.effective_figures(SPEC, Q4, 400, 70.0, {1: 30.0, 2: 60.0, 4: 120.0})
    assert flat["decode_sequence_gflops"] is None  # streams that cost nothing extra


def _plan(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_q8_0_kv_cache_fits_more_sequences_and_is_in_the_launch_command(home: Path) -> None:
    measured.write_result(_result())
    common = ("--hardware", "local", "--model", "Qwen/Qwen2.5-7B-Instruct",
              "--context", "32768", "--concurrency", "2")  # fmt: skip
    f16 = _plan(*common)
    q8 = _plan(*common, "--kv-cache", "q8_0", "--emit", "llamacpp")
    pick = {o["quant"]: o for o in f16["options"]}  # type: ignore[attr-defined]
    pick8 = {o["quant"]: o for o in q8["options"]}  # type: ignore[attr-defined]
    assert pick8["Q4_K_M"]["kv_cache"] == "q8_0" and pick["Q4_K_M"]["kv_cache"] == "f16"
    ratio = pick8["Q4_K_M"]["max_concurrent_sequences"] / pick["Q4_K_M"]["max_concurrent_sequences"]
    assert ratio == pytest.approx(2.0 / KV_BYTES["q8_0"], rel=0.05)
    assert "-ctk q8_0 -ctv q8_0" in str(q8["launch"])
    # 8 streams × 4096 tokens of the 1.5B model: the saving measured in
    # benchmarks/results/engine-kv-2026-12-05.json was 420 MiB
    saved = 8 * 4096 * (kv_bytes_per_token(SPEC) - kv_bytes_per_token(SPEC, KV_BYTES["q8_0"]))
    assert saved / 2**20 == pytest.approx(420, abs=1)


def test_a_bad_kv_format_is_one_clear_line() -> None:
    result = CliRunner().invoke(
        app, ["plan", "--hardware", "1x hygon-c86-7380", "--kv-cache", "q4"]
    )
    assert result.exit_code == 1 and "--kv-cache" in result.stderr
    result = CliRunner().invoke(
        app, ["plan", "predict", "--model", "Qwen/Qwen2.5-7B-Instruct", "--quant", "Q4_K_M",
              "--engine", "llamacpp", "--hardware", "local", "--kv-cache", "int4"],
    )  # fmt: skip
    assert result.exit_code == 1 and "--kv-cache" in result.stderr
