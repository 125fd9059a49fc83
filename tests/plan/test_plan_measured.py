"""``heshi plan --hardware local`` from what ``heshi bench`` measured, and the KV format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.plan import measured, resolve_hardware
from heshi.plan.memory import KV_BYTES, Workload, kv_bytes_per_token
from heshi.plan.predict import predict
from heshi.plan.quant import quant

SPEC = catalog.model("Qwen/Qwen2.5-1.5B-Instruct")
BIGGER = catalog.model("Qwen/Qwen2.5-7B-Instruct")
Q4 = quant("Q4_K_M")
# What a run on a 2-core machine could look like: batching gains, then flattens.
RATES = {1: 12.0, 2: 19.0, 4: 26.0, 8: 30.0}


def _result(**changes: object) -> dict[str, object]:
    result: dict[str, object] = {
        "format": measured.FORMAT,
        "measured_at": "2026-12-05T08:00:00+00:00",
        "machine": measured.this_machine(),
        "model": {"name": "Qwen2.5 1.5B Instruct", "quantization": "Q4_K_M"},
        "effective": measured.effective_figures(SPEC, Q4, 400, 70.0, RATES),
    }
    return result | changes


def test_the_figures_give_back_the_measured_rates_and_scale_with_bytes(bench_home: Path) -> None:
    measured.write_result(_result())
    hw = resolve_hardware("local")
    assert "heshi bench 2026-12-05" in hw.device.notes
    one = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, 1)).as_json()
    # the model it was measured with, at one stream: its own measured rate
    assert one["decode_tokens_per_s"] == pytest.approx(RATES[1], rel=0.02)
    assert any("heshi bench" in note for note in one["notes"])
    for streams, rate in RATES.items():
        p = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, streams)).as_json()
        # a line through the measured steps: each within 15% of what was measured
        assert p["decode_tokens_per_s"] == pytest.approx(rate, rel=0.15), streams
    prefill = predict(SPEC, Q4, "llamacpp", hw, Workload(400, 1, 1)).as_json()
    assert prefill["prefill_tokens_per_s"] == pytest.approx(70.0, rel=0.01)
    big = predict(BIGGER, Q4, "llamacpp", hw, Workload(8, 64, 1)).as_json()
    # a 7B model reads about 4.5x the bytes of a 1.5B one per token
    assert 3.5 < one["decode_tokens_per_s"] / big["decode_tokens_per_s"] < 5.5


def test_one_disturbed_phase_does_not_tilt_the_line(bench_home: Path) -> None:
    # a real run while tests ran beside it: 4 streams fell to half of one
    noisy = {1: 30.28, 2: 32.98, 4: 15.91, 8: 28.81}
    assert measured.noisy_counts(noisy) == [4]
    measured.write_result(_result(effective=measured.effective_figures(SPEC, Q4, 400, 70.0, noisy)))
    hw = resolve_hardware("local")
    for streams in (1, 2, 8):
        p = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, streams)).as_json()
        assert p["decode_tokens_per_s"] == pytest.approx(noisy[streams], rel=0.2), streams


def test_streams_are_never_free(bench_home: Path) -> None:
    # rates that grow with the streams as if batching cost nothing
    free = measured.effective_figures(SPEC, Q4, 400, 70.0, {1: 30.0, 2: 60.0, 4: 120.0})
    measured.write_result(_result(effective=free))
    hw = resolve_hardware("local")
    wide = predict(SPEC, Q4, "llamacpp", hw, Workload(8, 64, 64)).as_json()
    # each stream costs at least its matrix work at the prefill compute rate: 70 tok/s
    assert wide["decode_tokens_per_s"] <= 70.0 * 1.01


def test_effective_figures_need_one_stream_and_another() -> None:
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, 0.0, RATES)
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, 70.0, {1: 30.0})
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, 70.0, {2: 30.0, 4: 40.0})
    with pytest.raises(ValueError):
        measured.effective_figures(SPEC, Q4, 400, float("nan"), RATES)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("read_bandwidth_gb_s", float("nan"), "not positive"),
        ("read_bandwidth_gb_s", float("inf"), "not positive"),
        ("prefill_tflops", -1.0, "not positive"),
        ("decode_sequence_gflops", 0, "not positive"),
        ("decode_sequence_gflops", None, "not a number"),
        ("read_bandwidth_gb_s", True, "not a number"),
        ("prefill_tflops", "0.2", "not a number"),
    ],
)
def test_hand_edited_figures_are_checked(
    bench_home: Path, field: str, value: object, said: str
) -> None:
    result = _result()
    result["effective"] = dict(result["effective"]) | {field: value}  # type: ignore[call-overload]
    path = measured.bench_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # written as Python's json does (NaN and Infinity included, as a hand edit could)
    path.write_text(json.dumps(result), encoding="utf-8")
    figures, why = measured.read_measured()
    assert figures is None and why is not None and said in why
    plan = CliRunner().invoke(app, ["plan", "--hardware", "local", "--json", "--top", "1"])
    assert plan.exit_code == 0 and "NaN" not in plan.stdout and "Infinity" not in plan.stdout
    assert said in json.loads(plan.stdout)["hardware_notes"]


def test_a_file_from_another_engine_build_is_ignored(bench_home: Path) -> None:
    measured.write_result(_result(engine={"features": ["AVX512", "MADE_UP"]}))
    figures, why = measured.read_measured()
    assert figures is None and why is not None and "make native-engine" in why
    measured.write_result(_result(engine={"features": measured.engine_features()}))
    assert measured.read_measured()[0] is not None


def _plan(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_q8_0_kv_cache_fits_more_sequences_and_is_in_the_launch_command(bench_home: Path) -> None:
    measured.write_result(_result())
    common = ("--hardware", "local", "--model", "Qwen/Qwen2.5-7B-Instruct",
              "--context", "32768", "--concurrency", "2",
              "--min-tokens-per-s", "0", "--ttft-p95", "0")  # memory, not speed  # fmt: skip
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
        app, ["plan", "predict", "--model", "Qwen/Qwen2.5-7B-Instruct", "--quant", "AWQ",
              "--engine", "vllm", "--hardware", "1x nvidia-a100-80gb", "--kv-cache", "q8_0"],
    )  # fmt: skip
    assert result.exit_code == 1 and "llama.cpp" in result.stderr
    result = CliRunner().invoke(
        app, ["plan", "--hardware", "1x hygon-c86-7380", "--kv-cache", "q4"]
    )
    assert result.exit_code == 1 and "--kv-cache" in result.stderr
    result = CliRunner().invoke(
        app, ["plan", "predict", "--model", "Qwen/Qwen2.5-7B-Instruct", "--quant", "Q4_K_M",
              "--engine", "llamacpp", "--hardware", "local", "--kv-cache", "int4"],
    )  # fmt: skip
    assert result.exit_code == 1 and "--kv-cache" in result.stderr


def test_on_this_machine_only_what_meets_the_service_level_is_recommended(
    bench_home: Path,
) -> None:
    # measured here: 1.5B Q4_K_M prefills at 70 tokens/s, decodes ~30 tokens/s alone
    measured.write_result(_result())
    chat = _plan("--hardware", "local", "--concurrency", "4")
    assert chat["service_level"] == {"min_tokens_per_s": 8.0, "ttft_p95_s": 3.0}
    for option in chat["options"]:  # type: ignore[attr-defined]
        assert option["per_user_tokens_per_s"] >= 8 and option["ttft_p95_s"] <= 3
    # a 1,500-token prompt at 70 tokens/s alone takes 21 s: no chat here, and it says
    # which GPU would do instead of offering a model nobody could wait for
    assert chat["options"] == []
    assert "service level" in str(chat["smallest_change"])
    assert "nvidia" in str(chat["smallest_change"])
    reasons = [r for o in chat["rejected"] for r in o["reasons"]]  # type: ignore[attr-defined]
    assert reasons and all("TTFT" in r or "per user" in r or "GB" in r for r in reasons)
    # without a service level the same machine "fits" models — the old, dishonest answer
    loose = _plan("--hardware", "local", "--concurrency", "4",
                  "--min-tokens-per-s", "0", "--ttft-p95", "0")  # fmt: skip
    assert loose["options"]
    # batch extraction tolerates a minute to the first token; a small model qualifies
    small = "Qwen/Qwen2.5-0.5B-Instruct"
    batch = _plan("--hardware", "local", "--workload", "document-extraction",
                  "--concurrency", "1", "--model", small)  # fmt: skip
    assert [o["model"] for o in batch["options"]][:1] == [small]  # type: ignore[index]
