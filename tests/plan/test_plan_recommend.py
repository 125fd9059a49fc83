"""``heshi plan``: ranked options, plain reasons for rejections, launch commands."""

from __future__ import annotations

import itertools
import json
import shlex

import pytest
import yaml
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.config import HeshiConfig
from heshi.plan.advice import smallest_change
from heshi.plan.emit import EMITTERS, heshi_backend, launch
from heshi.plan.memory import Workload
from heshi.plan.predict import predict
from heshi.plan.presets import PRESETS
from heshi.plan.queueing import ttft_quantile
from heshi.plan.recommend import Request, recommend


def _request(hardware: str, concurrency: int = 50, context: int = 8192, **kw: object) -> Request:
    return Request(
        hardware=catalog.hardware(hardware),
        preset=PRESETS["customer-service"],
        concurrency=concurrency,
        context=context,
        **kw,  # type: ignore[arg-type]
    )


def test_two_v100s_get_ranked_options_that_fit_and_reasons_for_larger_models() -> None:
    ranked, rejected = recommend(_request("2x nvidia-v100-32gb"))
    assert ranked
    for option in ranked:
        assert option.feasible and not option.reasons
        assert option.max_sequences * option.replicas >= 50  # copies share the users
        assert option.engine in catalog.accelerator("nvidia-v100-32gb").engines
        assert option.q.kind not in ("awq", "fp8")  # no such kernels on sm70
    best = ranked[0]
    assert best.prediction.required_memory_gb <= best.prediction.usable_memory_gb
    assert rejected and all(o.reasons for o in rejected)
    reasons = " ".join(r for o in rejected for r in o.reasons)
    assert "KV cache for 50×8k tokens needs" in reasons or "weights alone need" in reasons


def test_a_ttft_bound_and_a_quality_floor_filter_options() -> None:
    ranked, _ = recommend(
        _request("1x nvidia-a100-80gb", concurrency=8, min_quality=("ceval", 80.0))
    )
    assert ranked and all(o.floor_score is not None and o.floor_score >= 80 for o in ranked)
    tight, _ = recommend(_request("1x nvidia-a100-80gb", concurrency=8, ttft_p95_s=0.05))
    loose, _ = recommend(_request("1x nvidia-a100-80gb", concurrency=8, ttft_p95_s=10.0))
    assert len(tight) < len(loose)
    assert all(o.ttft_p95_s <= 0.05 for o in tight)


def test_when_nothing_fits_the_smallest_change_is_named() -> None:
    req = _request("1x nvidia-t4-16gb", concurrency=400, context=32768,
                   models=("Qwen/Qwen2.5-7B-Instruct",))  # fmt: skip
    ranked, rejected = recommend(req)
    assert not ranked
    change = smallest_change(req, rejected)
    assert change is not None and ("users at once" in change or "context" in change)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "lmdeploy", "llamacpp"])
def test_launch_commands_carry_the_plan(engine: str) -> None:
    ranked, _ = recommend(_request("2x nvidia-a100-80gb", concurrency=32))
    option = next(o for o in ranked if o.engine == engine)
    command = launch(option, engine, 8192, 32)
    argv = shlex.split(command.replace("\\\n", " ").split("\n")[-1])
    text = " ".join(argv)
    assert str(option.tensor_parallel) in text or engine == "llamacpp"
    assert "8192" in text or engine == "llamacpp"
    block = yaml.safe_load(heshi_backend(option, engine))
    config = HeshiConfig.model_validate({"home": "/tmp/x", **block})  # a valid heshi.yaml
    targets = [a.backend for a in config.aliases.values()] + [
        t.backend for r in config.routing.routes.values() for t in r.targets
    ]
    assert targets and all(t in config.backends for t in targets)
    # the engine never listens where Heshi itself does, and heshi.yaml points at it
    port = HeshiConfig.model_validate({"home": "/tmp/x"}).server.port
    assert f"--port {port}" not in text and f":{port}/" not in heshi_backend(option, engine)
    for backend in config.backends.values():  # every server launched is one heshi.yaml names
        assert backend.base_url.split(":")[-1].split("/")[0] in command or engine == "mindie"
    # told the server's window, the gateway never sends prompt + max_tokens past it
    sized = yaml.safe_load(heshi_backend(option, engine, context=8192))
    for backend in sized["backends"].values():
        assert backend["context"] == 8192 and backend["max_output_tokens"] == 4096


def test_more_devices_than_a_node_become_pipeline_stages_on_ray() -> None:
    ranked, _ = recommend(_request("8x nvidia-a100-80gb", concurrency=8))
    option = ranked[0]
    big = type(option)(**{**option.__dict__, "tensor_parallel": 16})
    command = launch(big, "vllm", 8192, 8)
    assert "--pipeline-parallel-size 2" in command and "ray start --head" in command
    assert ":6379" not in command and "port 6379" not in command  # Redis's port
    assert "--tensor-parallel-size 8" in command


def test_ascend_gets_mindie_config_and_an_unknown_speed_is_said_as_unknown() -> None:
    ranked, _ = recommend(_request("8x huawei-ascend-910b", concurrency=16))
    option = next(o for o in ranked if o.engine == "mindie")
    text = launch(option, "mindie", 8192, 16)
    fields = json.loads(text[text.index("\n{") :])
    assert fields["BackendConfig"]["ModelDeployConfig"]["maxSeqLen"] == 8192
    assert "mindie" in EMITTERS
    # 4-bit MoE kernels have no published measurement: memory checked, speed unknown
    moe, _ = recommend(_request("1x nvidia-a100-80gb", concurrency=8,
                                models=("Qwen/Qwen3-30B-A3B",)))  # fmt: skip
    option = next(o for o in moe if o.q.name == "GPTQ-Int4" and o.engine == "vllm")
    assert any("speed unknown" in n for n in option.prediction.notes)
    unknown = option.as_json()  # said as unknown, not as 0 tokens/s in 0 s
    assert unknown["per_user_tokens_per_s"] is None and unknown["ttft_p95_s"] is None


def test_cli_prints_a_table_and_json() -> None:
    args = ["plan", "--hardware", "2x nvidia-v100-32gb", "--concurrency", "50", "--context",
            "8192", "--ttft-p95", "2s"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout
    assert "feasible configurations" in result.stdout and "rejected" in result.stdout
    result = CliRunner().invoke(app, [*args, "--json", "--emit", "vllm"])
    data = json.loads(result.stdout)
    commands = [line for line in data["launch"].split("\n") if not line.startswith("#")]
    assert data["options"] and commands[0].startswith("vllm serve")
    assert data["launch"].startswith("# vllm 0.")  # the release its flags are written for
    bad = CliRunner().invoke(app, ["plan", "--hardware", "2x v100", "--workload", "chat"])
    assert bad.exit_code == 1 and "unknown workload" in bad.stderr


def test_published_gguf_checkpoints_are_pulled_not_converted() -> None:
    # Qwen publishes Qwen/Qwen3-8B-GGUF with Q4_K_M (catalog/data/SOURCES.md)
    ranked, _ = recommend(_request("1x nvidia-t4", concurrency=8))
    option = next(o for o in ranked if o.engine == "llamacpp" and o.spec.id == "Qwen/Qwen3-8B")
    command = launch(option, "llamacpp", 8192, 8)
    assert f"-hf Qwen/Qwen3-8B-GGUF:{option.q.name}" in command
    assert "no published" not in command


def test_data_parallel_copies_are_an_option_beside_tensor_parallelism() -> None:
    ranked, _ = recommend(_request("2x nvidia-a100-80gb", concurrency=64))
    copies = [o for o in ranked if o.replicas == 2]
    assert copies, "no data-parallel option on two devices"
    option = copies[0]
    assert option.tensor_parallel == 1 and option.as_json()["replicas"] == 2
    # each copy serves half the users: its per-user speed is a copy's at 32 users, and
    # the aggregate is two copies'
    alone, _ = recommend(_request("1x nvidia-a100-80gb", concurrency=32))
    same = next(
        o for o in alone
        if (o.spec.id, o.q.name, o.engine) == (option.spec.id, option.q.name, option.engine)
    )  # fmt: skip
    assert option.per_user_tokens_per_s == pytest.approx(same.per_user_tokens_per_s)
    assert option.aggregate_tokens_per_s == pytest.approx(2 * same.aggregate_tokens_per_s)
    command = launch(option, option.engine, 8192, 64)
    assert command.count("CUDA_VISIBLE_DEVICES=") == 2
    # pasted into a shell, both start (each in the background), and the shell waits
    assert command.count(" &\n") == 2 and command.endswith("\nwait")
    block = yaml.safe_load(heshi_backend(option, option.engine))
    config = HeshiConfig.model_validate({"home": "/tmp/x", **block})
    route = next(iter(config.routing.routes.values()))
    assert len(route.targets) == 2 and len(config.backends) == 2
    ports = {b.base_url.split(":")[-1].split("/")[0] for b in config.backends.values()}
    assert len(ports) == 2 and all(p in command for p in ports)


def test_a_shared_system_prompt_is_prefilled_once_on_engines_with_a_prefix_cache() -> None:
    cached, _ = recommend(_request("1x nvidia-t4", concurrency=8))
    option = next(o for o in cached if o.engine == "vllm")
    work = Workload(1500 - 400, 1, 1)  # customer-service: 1,500 tokens, 400 of them shared
    fresh = predict(option.spec, option.q, "vllm", option.hardware, work)
    queued = ttft_quantile(8, fresh.prefill_seconds, option.prediction.decode_seconds)
    assert option.ttft_p95_s == pytest.approx(queued)
    # the shared start changes the prefill the queue is built on, not only its last step
    full = predict(option.spec, option.q, "vllm", option.hardware, Workload(1500, 1, 1))
    assert queued < ttft_quantile(8, full.prefill_seconds, option.prediction.decode_seconds)
    assert "--enable-prefix-caching" in launch(
        next(o for o in cached if o.engine == "lmdeploy"), "lmdeploy", 8192, 8
    )


def test_ranking_is_service_level_then_published_quality_then_generation_then_cost() -> None:
    """Options checked against the service level come first; quality (MMLU-Redux in the
    workload's mode) decides, a point counting as equal; among equals a published
    checkpoint, then the newer generation, then fewer devices."""
    ranked, _ = recommend(_request("2x nvidia-a100-80gb", concurrency=32))
    known = [o for o in ranked if o.speed_known]
    assert known and ranked[: len(known)] == known
    top = known[0]
    # the basis says which mode's score ranked it (Qwen3.5/3.6 publish thinking scores only)
    assert top.as_json()["quality_basis"] == f"mmlu_redux ({top.quality_mode})"
    assert top.mode == "non-thinking"
    for part in (known, ranked[len(known) :]):
        for i, a in enumerate(part):
            later = [b.quality for b in part[i + 1 :] if b.quality is not None]
            assert a.quality is None or all(q <= a.quality + 1.0 for q in later)
    from heshi.plan import quality

    for a, b in itertools.pairwise(known):
        if a.quality is None or b.quality is None or abs(a.quality - b.quality) > 0.5:
            continue  # clearly different quality: the order says nothing about the rest
        if a.published != b.published:
            assert a.published
        elif quality.generation(a.spec) != quality.generation(b.spec):
            assert quality.generation(a.spec) > quality.generation(b.spec)  # type: ignore[operator]


def test_equal_quality_goes_to_fewer_devices() -> None:
    ranked, _ = recommend(_request("8x nvidia-h20-96gb", concurrency=16, models=("Qwen/Qwen3-8B",)))
    same = [o for o in ranked if o.q.name == ranked[0].q.name and o.engine == ranked[0].engine]
    assert same[0].devices == min(o.devices for o in same)


def test_published_scores_carry_sources_and_the_workload_picks_the_mode() -> None:
    from heshi.plan import quality

    spec = catalog.model("Qwen/Qwen3-8B")
    fast, slow = (
        quality.score(spec, "mmlu_redux", "non-thinking"),
        quality.score(spec, "mmlu_redux", "thinking"),
    )
    assert fast is not None and slow is not None and slow.value > fast.value  # 87.5 vs 79.5
    assert fast.source_url.startswith("https://")
    assert quality.mode_for("reasoning") == "thinking"
    assert quality.mode_for("customer-service") == "non-thinking"
    # Qwen3.5 publishes thinking only: it stands in for both modes
    q35 = quality.score(catalog.model("Qwen/Qwen3.5-27B"), "mmlu_redux", "non-thinking")
    assert q35 is not None and q35.mode == "thinking"
    newer = quality.generation(catalog.model("Qwen/Qwen3-8B"))
    older = quality.generation(catalog.model("Qwen/Qwen2.5-7B-Instruct"))
    assert newer and older and newer > older
    assert quality.generation(catalog.model("Qwen/Qwen3.5-27B")) > newer
