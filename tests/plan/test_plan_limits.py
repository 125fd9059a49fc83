"""What a hostile review of plan v2 broke, each kept broken-proof: unchecked speeds said
so, advice re-checked, modes honoured, bad numbers refused."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.plan.advice import smallest_change
from heshi.plan.predict import predict
from heshi.plan.presets import PRESETS
from heshi.plan.quant import quant
from heshi.plan.recommend import Request, recommend
from heshi.plan.speed import Workload


def _request(
    hardware: str, users: int, workload: str = "customer-service", **kw: object
) -> Request:
    preset = PRESETS[workload]
    return Request(
        hardware=catalog.hardware(hardware),
        preset=preset,
        concurrency=users,
        context=preset.context,
        **kw,  # type: ignore[arg-type]
    )


def _plan(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["plan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_an_option_whose_speed_is_unknown_says_the_service_level_was_not_checked() -> None:
    # 4-bit MoE kernels have no published measurement: their speed is not guessed
    code, out, _ = _plan(
        "--hardware", "1x nvidia-a100-80gb", "--workload", "document-extraction",
        "--concurrency", "4", "--model", "Qwen/Qwen3-30B-A3B", "--json",
    )  # fmt: skip
    assert code == 0
    options = json.loads(out)["options"]
    unknown = [o for o in options if o["quant"] == "GPTQ-Int4"]
    assert unknown and all(o["service_level_checked"] is False for o in unknown)
    assert all(o["per_user_tokens_per_s"] is None for o in unknown)
    known = [o for o in options if o["quant"] == "BF16"]  # ranked before the unknown ones
    assert known and options.index(known[0]) < options.index(unknown[0])


def test_unknown_speeds_are_null_in_predict_not_an_instant_request() -> None:
    out = predict(
        catalog.model("Qwen/Qwen3-30B-A3B"),
        quant("GPTQ-Int4"),
        "vllm",
        catalog.hardware("1x nvidia-a100-80gb"),
        Workload(1000, 100),
    ).as_json()
    assert out["ttft_s"] is None and out["total_seconds"] is None
    assert out["decode_tokens_per_s"] is None


@pytest.mark.parametrize(
    ("hardware", "users"), [("1x nvidia-t4-16gb", 2000), ("1x nvidia-l20-48gb", 4096)]
)
def test_fewer_users_is_suggested_only_when_that_many_are_served(hardware: str, users: int) -> None:
    req = _request(hardware, users)
    ranked, rejected = recommend(req)
    assert not ranked
    change = smallest_change(req, rejected)
    found = re.search(r"serve (\d+) users? at once", change or "")
    if found:  # the suggestion was checked: that many users get a feasible option
        fewer = int(found.group(1))
        assert recommend(Request(**{**req.__dict__, "concurrency": fewer}))[0]


def test_models_that_always_reason_are_not_offered_for_customer_service() -> None:
    chat, _ = recommend(_request("2x nvidia-a100-80gb", 8, models=("Qwen/QwQ-32B",)))
    assert not chat
    reasoning, _ = recommend(
        _request("2x nvidia-a100-80gb", 8, "reasoning", models=("Qwen/QwQ-32B",))
    )
    assert reasoning


@pytest.mark.parametrize(
    "args",
    [
        ("--ttft-p95", "nan"),
        ("--ttft-p95", "inf"),
        ("--ttft-p95", "-2s"),
        ("--min-quality", "ceval=inf"),
        ("--min-quality", "ceval=-5"),
        ("--min-quality", "ceval=1000"),
        ("--top", "0"),
    ],
)
def test_numbers_that_mean_nothing_are_refused_in_one_line(args: tuple[str, str]) -> None:
    code, out, err = _plan("--hardware", "1x nvidia-a100-80gb", *args, "--json")
    assert code != 0
    assert "Traceback" not in out + err
    assert "NaN" not in out and "Infinity" not in out


def test_a_context_beyond_the_model_says_it_was_limited() -> None:
    ranked, _ = recommend(
        Request(
            hardware=catalog.hardware("1x nvidia-a100-80gb"),
            preset=PRESETS["customer-service"],
            concurrency=1,
            context=1_000_000,
            models=("Qwen/Qwen3-8B",),
        )
    )
    assert ranked and any("context limited" in n for n in ranked[0].prediction.notes)
