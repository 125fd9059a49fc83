"""The published data the planner is fitted and ranked on, and what it refuses to guess."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from heshi import catalog
from heshi.plan.fit import all_measurements, fit_calibration, load_rows
from heshi.plan.predict import predict
from heshi.plan.quant import quant
from heshi.plan.sources import PARTS, load
from heshi.plan.speed import Workload, calibration


def test_every_published_measurement_resolves_and_carries_its_source() -> None:
    rows = load()
    assert len(rows) >= 100
    assert len({m.source for m in rows}) >= 8
    assert {m.arch for m in rows} == {"dense", "moe"}
    for m in rows:
        assert m.metric in PARTS and m.value > 0 and m.seconds > 0
        assert m.url.startswith("https://")
        # the validation table stays out of every fit
        assert m.hw.device.id != "nvidia-h20-96gb"
    path = resources.files("heshi.plan").joinpath("data").joinpath("published_speed.csv")
    with path.open(encoding="utf-8") as handle:
        assert all(row["quote"].strip() for row in csv.DictReader(handle))


def test_the_shipped_calibration_is_the_fit_of_the_shipped_data() -> None:
    """`python -m heshi.plan.fit` was run after the last change to the data or the model."""
    fitted = fit_calibration(all_measurements(), load_rows())
    shipped = calibration()
    fitted = json.loads(json.dumps(fitted))  # as the file stores it
    assert {e: sorted(g) for e, g in fitted["speed"].items()} == {
        e: sorted(g) for e, g in shipped["speed"].items()
    }
    assert _values(fitted["speed"]) == pytest.approx(_values(shipped["speed"]), rel=1e-6)
    assert fitted["moe"] == _approx(shipped["moe"])
    assert fitted["memory"] == _approx(shipped["memory"])


def _approx(value: object) -> object:
    """``value`` with every float compared approximately (nested dicts and lists)."""
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-6)
    return value


def _values(table: dict) -> list[float]:
    return [
        v
        for engine in sorted(table)
        for group in sorted(table[engine])
        for _, v in sorted(table[engine][group]["values"].items())
    ]


def test_four_bit_moe_kernels_without_measurements_give_no_speed() -> None:
    """No published number outside the held-out H20 table covers GPTQ/AWQ MoE kernels on a
    serving engine; a roofline number would be several times too fast, so there is none."""
    spec = catalog.model("Qwen/Qwen3-30B-A3B")
    hw = catalog.hardware("1x nvidia-h100-80gb")
    out = predict(spec, quant("GPTQ-Int4"), "vllm", hw, Workload(1000, 200)).as_json()
    assert out["decode_tokens_per_s"] is None and out["fits"]
    assert any("MoE" in n and "speed unknown" in n for n in out["notes"])
    bf16 = predict(spec, quant("BF16"), "vllm", hw, Workload(1000, 200)).as_json()
    assert bf16["decode_tokens_per_s"] is not None
    dense = predict(
        catalog.model("Qwen/Qwen3-32B"), quant("AWQ"), "vllm", hw, Workload(1000, 200)
    ).as_json()
    assert dense["decode_tokens_per_s"] is not None  # dense 4-bit kernels are calibrated


def test_fp8_on_an_a100_runs_only_where_marlin_serves_it() -> None:
    spec, hw = catalog.model("Qwen/Qwen3-8B"), catalog.hardware("1x nvidia-a100-80gb")
    ok = predict(spec, quant("FP8"), "vllm", hw, Workload(100, 10))
    refused = predict(spec, quant("FP8"), "lmdeploy", hw, Workload(100, 10))
    assert ok.fits and not ok.problems
    assert not refused.fits and any("FP8" in p for p in refused.problems)


def test_published_quality_scores_resolve_and_quote_their_number() -> None:
    path = resources.files("heshi.catalog").joinpath("data").joinpath("quality.csv")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 200
    seen = set()
    for row in rows:
        spec = catalog.model(row["model"])
        assert row["mode"] in ("thinking", "non-thinking", "n/a")
        assert row["source_url"].startswith("http")
        score = float(row["score"])
        assert 0 <= score <= 100
        assert row["score"].rstrip("0").rstrip(".") in row["quote"] or row["score"] in row["quote"]
        key = (spec.id, row["mode"], row["benchmark"])
        assert key not in seen
        seen.add(key)
    qwen = [s for s in catalog.models().values() if s.id.startswith("Qwen/")]
    with_redux = {m for m, _, b in seen if b == "mmlu_redux"}
    assert len([s for s in qwen if s.id in with_redux]) >= len(qwen) - 2


def test_engines_refuse_what_they_cannot_run_on_ascend() -> None:
    """llama.cpp's CANN backend: F16/Q8_0/Q4_0 and no Gated DeltaNet; MindIE: no Qwen3.5/3.6."""
    npu = catalog.hardware("1x huawei-ascend-910b")
    hybrid, dense = catalog.model("Qwen/Qwen3.6-27B"), catalog.model("Qwen/Qwen3-8B")
    work = Workload(1000, 100)
    assert not predict(dense, quant("Q4_K_M"), "llamacpp", npu, work).fits
    assert predict(dense, quant("Q8_0"), "llamacpp", npu, work).fits
    assert not predict(hybrid, quant("Q8_0"), "llamacpp", npu, work).fits
    assert not predict(hybrid, quant("BF16"), "mindie", npu, work).fits
    assert predict(hybrid, quant("BF16"), "vllm-ascend", npu, work).fits
    assert predict(dense, quant("BF16"), "mindie", npu, work).fits


def test_paged_engines_hold_the_typical_sequence_and_llamacpp_the_full_context() -> None:
    from heshi.plan.presets import PRESETS
    from heshi.plan.recommend import Request, recommend

    req = Request(
        hardware=catalog.hardware("1x nvidia-t4-16gb"),
        preset=PRESETS["customer-service"],
        concurrency=20,
        context=8192,
        models=("Qwen/Qwen3-8B", "Qwen/Qwen2.5-7B-Instruct"),
        ttft_p95_s=0,  # memory is what is checked here
    )
    ranked, _ = recommend(req)
    by_engine = {o.engine: o for o in ranked}
    # vLLM holds ~1,750 tokens a user (prompt + answer): 20 users fit beside 8B AWQ weights
    assert "vllm" in by_engine and by_engine["vllm"].max_sequences >= 20


def test_per_user_speed_pays_for_the_prompts_of_arriving_requests() -> None:
    from heshi.plan.presets import PRESETS
    from heshi.plan.recommend import Request, recommend

    def best(users: int) -> float:
        req = Request(
            hardware=catalog.hardware("1x nvidia-a100-80gb"),
            preset=PRESETS["document-extraction"],  # 6,000-token prompts, 600-token answers
            concurrency=users,
            context=16384,
            models=("Qwen/Qwen3-8B",),
            min_tokens_per_s=0,
        )
        option = next(o for o in recommend(req)[0] if o.engine == "vllm")
        decode_only = option.prediction.as_json()["decode_tokens_per_s"] / users
        assert option.per_user_tokens_per_s < decode_only  # prefill time is taken out
        return option.per_user_tokens_per_s

    assert best(32) < best(4)
