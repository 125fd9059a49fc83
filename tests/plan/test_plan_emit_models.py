"""What a model needs from its launch command beyond its size: thinking off for workloads
that run without it, the vision encoder left out of a text service (and counted where an
engine keeps it), and on Ascend the W8A8 checkpoints and MindIE's own config fields."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from typer.testing import CliRunner

from heshi import catalog
from heshi.cli.main import app
from heshi.config import HeshiConfig
from heshi.plan.emit import heshi_backend, launch
from heshi.plan.memory import vision_bytes, vision_parameters
from heshi.plan.predict import predict
from heshi.plan.presets import PRESETS
from heshi.plan.quant import quant
from heshi.plan.recommend import Request, recommend
from heshi.plan.speed import Workload

runner = CliRunner()


def _plan(*args: str) -> str:
    out = runner.invoke(app, ["plan", *args])
    assert out.exit_code == 0, out.output
    return out.stdout


def _best(hardware: str, workload: str, model: str, engine: str, users: int = 16, q: str = ""):
    request = Request(
        hardware=catalog.hardware(hardware), preset=PRESETS[workload], concurrency=users,
        context=8192, models=(model,),
    )  # fmt: skip
    ranked, _ = recommend(request)
    return next(o for o in ranked if o.engine == engine and o.q.name == (q or o.q.name))


def test_a_chat_workload_turns_thinking_off_where_the_engine_has_a_server_switch() -> None:
    flag = """--default-chat-template-kwargs '{"enable_thinking": false}'"""
    chat = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B",
                 "--emit", "vllm")  # fmt: skip
    assert flag in chat
    thinking = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B",
                     "--workload", "reasoning", "--emit", "vllm")  # fmt: skip
    assert "enable_thinking" not in thinking  # the reasoning workload keeps it
    older = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen2.5-7B-Instruct",
                  "--emit", "vllm")  # fmt: skip
    assert "enable_thinking" not in older  # Qwen2.5 never thinks
    gguf = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B",
                 "--emit", "llamacpp")  # fmt: skip
    assert """--chat-template-kwargs '{"enable_thinking": false}'""" in gguf
    # no server-wide switch (LMDeploy) or none to pin (SGLang): Heshi sends it with every
    # request (the heshi.yaml block), and the comment says other clients must
    for engine in ("sglang", "lmdeploy"):
        text = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B",
                     "--emit", engine)  # fmt: skip
        assert "chat_template_kwargs" in text and "--default-chat-template-kwargs" not in text
        block = yaml.safe_load(text[text.index("# heshi.yaml") :])
        config = HeshiConfig.model_validate({"home": "/tmp/x", **block})
        (backend,) = config.backends.values()
        assert backend.chat_template_kwargs == {"enable_thinking": False}
    compose = _plan("--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B",
                    "--emit", "compose")  # fmt: skip
    service = next(iter(yaml.safe_load(compose)["services"].values()))
    assert "--default-chat-template-kwargs" in service["command"]


def test_the_vision_encoder_is_counted_from_the_config_and_left_out_of_text_services() -> None:
    # from vision_config (depth 27, 1152 wide, 4304 MLP, 2x2 merger into the text width)
    assert vision_parameters(catalog.model("Qwen/Qwen3.5-27B")) == pytest.approx(460.7e6, rel=1e-3)
    assert vision_parameters(catalog.model("Qwen/Qwen3.6-35B-A3B")) == pytest.approx(
        446.6e6, rel=1e-3
    )
    assert vision_parameters(catalog.model("Qwen/Qwen3-32B")) == 0  # text-only checkpoint
    spec = catalog.model("Qwen/Qwen3.5-27B")
    assert vision_bytes(spec, "sglang") == 2 * vision_parameters(spec)
    assert vision_bytes(spec, "vllm") == vision_bytes(spec, "vllm-ascend") == 0
    # the engine that keeps it needs that much more memory for the same weights and work
    hw, work = catalog.hardware("1x nvidia-h100-80gb"), Workload(1000, 100, 1)
    kept = predict(spec, quant("BF16"), "lmdeploy", hw, work).required_memory_gb
    spec_text = type(spec)(**{**spec.__dict__, "family": "Qwen3 (text)"})
    text_only = predict(spec_text, quant("BF16"), "lmdeploy", hw, work).required_memory_gb
    assert kept - text_only == pytest.approx(vision_bytes(spec, "lmdeploy") / 2**30, rel=1e-6)
    vllm = _plan("--hardware", "1x nvidia-h100-80gb", "--model", "Qwen/Qwen3.5-27B",
                 "--emit", "vllm")  # fmt: skip
    assert "--language-model-only" in vllm
    sglang = _plan("--hardware", "1x nvidia-h100-80gb", "--model", "Qwen/Qwen3.5-27B",
                   "--emit", "sglang")  # fmt: skip
    assert "--language-model-only" not in sglang


def test_ascend_serves_w8a8_from_modelscope_with_vllm_ascends_loader() -> None:
    option = _best("1x huawei-ascend-910b", "customer-service", "Qwen/Qwen3-8B", "vllm-ascend")
    assert option.q.name == "W8A8" and option.published
    assert option.speed_known  # the 910B now has bandwidth and FLOPS figures
    assert any("not calibrated" in n for n in option.prediction.notes)  # and says how far
    command = launch(option, "vllm-ascend", 8192, 16)
    assert "VLLM_USE_MODELSCOPE=true vllm serve vllm-ascend/Qwen3-8B-W8A8" in command
    assert "--quantization ascend" in command
    # MindIE reads local directories and its own W8A8 recipe: a model its list marks W8A8
    # is downloaded, quantized with msModelSlim and marked, all on the node
    converted = _best("1x huawei-ascend-910b", "customer-service", "Qwen/Qwen2.5-14B-Instruct",
                      "mindie", q="W8A8")  # fmt: skip
    assert not converted.published
    text = launch(converted, "mindie", 8192, 16)
    base, target = (
        "/data/models/Qwen/Qwen2.5-14B-Instruct",
        "/data/models/Qwen2.5-14B-Instruct-W8A8",
    )
    assert f"modelscope download --model Qwen/Qwen2.5-14B-Instruct --local_dir {base}" in text
    assert f"msmodelslim quant --model_path {base} --save_path {target}" in text
    assert f'"quantize": "w8a8" to {target}/config.json' in text
    fields = json.loads(text[text.index("\n{") :])
    path = fields["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelWeightPath"]
    assert path == target
    # the published vLLM-Ascend checkpoints are vLLM-Ascend's: MindIE converts its own, and
    # vLLM-Ascend is not offered a conversion msModelSlim marks MindIE-only
    request = Request(
        hardware=catalog.hardware("1x huawei-ascend-910b"), preset=PRESETS["customer-service"],
        concurrency=16, context=8192, models=("Qwen/Qwen3-32B", "Qwen/Qwen3-14B"),
    )  # fmt: skip
    ranked, _ = recommend(request)
    w8a8 = {(o.spec.name, o.engine, o.published) for o in ranked if o.q.name == "W8A8"}
    assert ("Qwen3-14B", "vllm-ascend", False) not in w8a8
    assert all(not published for _, engine, published in w8a8 if engine == "mindie")


def test_quantizations_go_where_their_kernels_are() -> None:
    npu, gpu = catalog.hardware("1x huawei-ascend-910b"), catalog.hardware("1x nvidia-a100-80gb")
    assert catalog.hardware("1x huawei-ascend-910b4").device.id == "huawei-ascend-910b-32gb"
    work = Workload(1000, 100, 1)
    qwen3 = catalog.model("Qwen/Qwen3-8B")
    awq = predict(qwen3, quant("AWQ"), "vllm-ascend", npu, work)
    assert not awq.fits and any("W8A8" in n for n in awq.notes)  # not "needs sm75+"
    on_gpu = predict(qwen3, quant("W8A8"), "vllm", gpu, work)
    assert not on_gpu.fits and any("vLLM-Ascend" in n for n in on_gpu.notes)
    # MindIE's model list marks Qwen3-8B ✗ for W8A8: vLLM-Ascend runs it
    assert not predict(qwen3, quant("W8A8"), "mindie", npu, work).fits
    assert predict(qwen3, quant("W8A8"), "vllm-ascend", npu, work).fits
    # int8 weights and activations: half the bytes of BF16 and no slower prompt processing
    # (never a weight-only kernel's calibration)
    long = Workload(2000, 200, 1)
    bf16 = predict(qwen3, quant("BF16"), "vllm-ascend", npu, long).as_json()
    w8a8 = predict(qwen3, quant("W8A8"), "vllm-ascend", npu, long).as_json()
    assert w8a8["prefill_tokens_per_s"] >= bf16["prefill_tokens_per_s"]
    assert w8a8["decode_tokens_per_s"] > 1.5 * bf16["decode_tokens_per_s"]
    # every Ascend speed says it is not calibrated, llama.cpp's (CANN) too
    moe = catalog.model("Qwen/Qwen3-30B-A3B")
    for q, engine in (("Q8_0", "llamacpp"), ("BF16", "mindie"), ("W8A8", "vllm-ascend")):
        notes = predict(moe, quant(q), engine, npu, work).notes
        assert any("not calibrated" in n for n in notes), (engine, notes)


def test_mindie_config_serves_plain_http_under_the_name_heshi_asks_for() -> None:
    option = _best("1x huawei-ascend-910b", "reasoning", "Qwen/Qwen3-14B", "mindie", users=8)
    text = launch(option, "mindie", 16384, 8)
    fields = json.loads(text[text.index("\n{") :])
    server = fields["ServerConfig"]
    assert server["httpsEnabled"] is False and server["port"] == 1025
    schedule = fields["BackendConfig"]["ScheduleConfig"]
    assert schedule["maxIterTimes"] == 16384  # not MindIE's 512: a reasoning answer is longer
    assert (
        schedule["maxPrefillTokens"]
        >= fields["BackendConfig"]["ModelDeployConfig"]["maxInputTokenLen"]
    )
    model = fields["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert model["npuMemSize"] == -1
    block = yaml.safe_load(heshi_backend(option, "mindie"))
    config = HeshiConfig.model_validate({"home": "/tmp/x", **block})
    backend = next(iter(config.backends.values()))
    assert backend.base_url == "http://127.0.0.1:1025/v1"
    # the name MindIE serves is the public one: declared once, by the backend
    assert backend.models == [model["modelName"]] == ["qwen3-14b"] and not config.aliases


def test_copies_put_the_notes_once_and_each_command_on_its_own_devices() -> None:
    option = _best("2x huawei-ascend-910b", "customer-service", "Qwen/Qwen3-8B", "vllm-ascend")
    copies = type(option)(**{**option.__dict__, "replicas": 2, "tensor_parallel": 1})
    text = launch(copies, "vllm-ascend", 8192, 64)
    starts = [line for line in text.split("\n") if line and not line.startswith(("#", "  "))]
    assert starts.pop() == "wait" and len(starts) == 2, text
    assert starts[0].startswith("ASCEND_RT_VISIBLE_DEVICES=0 VLLM_USE_MODELSCOPE=true vllm serve")
    assert starts[1].startswith("ASCEND_RT_VISIBLE_DEVICES=1 VLLM_USE_MODELSCOPE=true vllm serve")
    assert text.count("# vLLM-Ascend") == 1


@pytest.mark.parametrize(
    ("hardware", "model", "engine"),
    [("1x nvidia-a100-80gb", "Qwen/Qwen3.5-27B", "vllm"),
     ("1x nvidia-a100-80gb", "Qwen/Qwen3-8B", "sglang"),
     ("1x huawei-ascend-310p-duo", "Qwen/Qwen2.5-7B-Instruct", "vllm-ascend"),
     ("1x huawei-ascend-910b", "Qwen/Qwen3-8B", "vllm-ascend")],
)  # fmt: skip
def test_a_container_service_runs_the_command_the_launch_line_prints(
    hardware: str, model: str, engine: str
) -> None:
    """One argument list for both: the compose service's flags are the launch command's
    (a vLLM-Ascend service on a chip without bf16 gets --dtype float16 too)."""
    from heshi.plan.containers import compose

    option = _best(hardware, "customer-service", model, engine, users=8)
    lines = launch(option, engine, 8192, 8).replace("\\\n", " ").split("\n")
    printed = shlex.split(next(line for line in lines if not line.startswith("#")))
    service = next(iter(yaml.safe_load(compose(option, 8192, 8))["services"].values()))
    ran = (
        service["command"]
        if isinstance(service["command"], list)
        else shlex.split(service["command"])
    )
    drop = {"--host", "--port"}

    def pairs(argv: list[str]) -> set[tuple[str, str]]:
        flags = [i for i, a in enumerate(argv) if a.startswith("--") and a not in drop]
        value = [a if not a.startswith("--") else "" for a in [*argv[1:], ""]]
        return {(argv[i], value[i]) for i in flags}

    assert pairs(ran) <= pairs(printed) | {("--max-num-seqs", "8")}, (ran, printed)
    assert {f for f, _ in pairs(printed)} == {f for f, _ in pairs(ran)}


@pytest.mark.parametrize(
    "args",
    [
        ["--hardware", "8x huawei-ascend-910b", "--workload", "reasoning", "--concurrency", "16",
         "--emit", "mindie"],
        ["--hardware", "6x nvidia-a100-80gb", "--concurrency", "600", "--model",
         "Qwen/Qwen3-8B", "--emit", "vllm"],
        ["--hardware", "1x nvidia-a100-80gb", "--model", "Qwen/Qwen3-8B", "--emit", "sglang"],
        ["--hardware", "6x nvidia-a100-80gb", "--concurrency", "600", "--model",
         "Qwen/Qwen3-8B", "--emit", "compose"],
    ],
)  # fmt: skip
def test_the_printed_heshi_yaml_block_is_one_heshi_serve_starts_with(args: list[str]) -> None:
    """The gateway's own start-up checks (every public name declared once, every alias and
    route on a known backend), not only the schema — a MindIE served name equal to its alias,
    or copies each declaring the same model, made `heshi serve` refuse the block."""
    from heshi.cli.serve import build_engines
    from heshi.routing.names import NameTable

    text = _plan(*args)
    if "--emit" in args and args[args.index("--emit") + 1] == "compose":
        block = yaml.safe_load(text)["x-heshi-yaml"]
    else:
        block = yaml.safe_load(text[text.index("# heshi.yaml") :])
    config = HeshiConfig.model_validate({"home": "/tmp/x", "engine": {"enabled": False}, **block})
    names = NameTable(config, build_engines(config))
    public = [m.id for m in names.public_models()]
    assert public and all(names.chain(name) for name in public)
    wanted = {"qwen3-8b"} if "Qwen/Qwen3-8B" in args else set()
    assert wanted <= set(public), public
    targets = {t.backend for name in public for t in names.chain(name)[0].targets}
    assert targets == set(config.backends)  # every server launched is reachable by a name
    # /v1/models tells clients each name's window, routes onto copies included
    windows = {b.context for b in config.backends.values()}
    assert all(m.context_length in windows for m in names.public_models()), windows


def test_emit_with_nothing_feasible_on_that_engine_still_says_why() -> None:
    args = ["plan", "--hardware", "1x nvidia-t4-16gb", "--concurrency", "5000", "--emit", "vllm"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1
    assert "no feasible configuration runs on vllm" in out.stderr
    assert "rejected" in out.stderr or "smallest" in out.stderr or "instead" in out.stderr
    assert out.stdout == ""  # nothing a script would take for a command
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    assert "no feasible configuration runs on vllm" in payload["error"]
    assert "launch" not in payload and "rejected" in payload
