"""Launch commands (or config) for a planned configuration, and its ``heshi.yaml`` block.

Flags are each engine's documented CLI: ``vllm serve`` (vLLM), ``python -m
sglang.launch_server`` (SGLang), ``llama-server`` (llama.cpp), ``lmdeploy serve
api_server`` (LMDeploy), and for MindIE the fields of ``mindie-service/conf/config.json``
to set (https://www.hiascend.com/document/detail/zh/mindie/21RC1/mindiellm/llmdev/
mindie_llm0004.html). More devices than one node holds (8) become tensor parallel inside
a node and pipeline parallel across nodes, on a Ray cluster for vLLM.
"""

from __future__ import annotations

import json
import re
import shlex

import yaml

from heshi.errors import InvalidRequest
from heshi.plan.recommend import Option

EMITTERS = ("vllm", "sglang", "llamacpp", "lmdeploy", "mindie", "vllm-ascend")
DEVICES_PER_NODE = 8
# Not the engines' defaults where those collide with Heshi's own: vLLM's 8000 is Heshi's
# default port, and Ray's 6379 is Redis's (which Heshi's replicas share quotas through).
_PORTS = {"vllm": 8001, "vllm-ascend": 8001, "sglang": 30000, "llamacpp": 8080,
          "lmdeploy": 23333, "mindie": 1025}  # fmt: skip
_RAY_PORT = 6380


def _repo(option: Option) -> str:
    """The checkpoint to serve: the published repo of that quantization, else the base."""
    return option.spec.quantizations.get(option.q.name, option.spec.id)


def _split(option: Option) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel) for the option's devices."""
    devices = option.tensor_parallel
    if devices <= DEVICES_PER_NODE:
        return devices, 1
    return DEVICES_PER_NODE, devices // DEVICES_PER_NODE


def _context(option: Option, context: int) -> int:
    return min(context, option.spec.context or context)


def parser_flags(model_id: str, engine: str) -> list[str]:
    """The flags that turn a model's reasoning and tool calls into OpenAI fields on vLLM
    (vLLM-Ascend) and SGLang: without them ``<think>`` stays inside ``content`` and tool
    calls never fill ``tool_calls`` (vLLM also refuses ``tool_choice: auto``).

    Qwen2/2.5/3 and QwQ call tools in the Hermes format (``<tool_call>{json}``); Qwen3.5
    and 3.6 in Qwen3-Coder's XML format. vLLM's ``qwen3`` reasoning parser covers Qwen3
    and Qwen3.5 (docs.vllm.ai, vllm.reasoning.qwen3_reasoning_parser); QwQ and the R1
    distillations think in DeepSeek-R1's format (SGLang's ``deepseek-r1`` covers R1 and
    R1-Distill, ``qwen3`` the Qwen3 family: docs.sglang.io/docs/advanced_features/
    separate_reasoning).
    """
    name = model_id.lower()
    sglang = engine == "sglang"
    reasoning = tools = None
    if "qwq" in name or "deepseek-r1" in name:
        reasoning = "deepseek-r1" if sglang else "deepseek_r1"
    elif "qwen3" in name:
        reasoning = "qwen3"
    if "qwen3.5" in name or "qwen3.6" in name:
        tools = "qwen3_coder"
    elif any(f in name for f in ("qwen2", "qwen3", "qwq")) and "deepseek" not in name:
        tools = "qwen25" if sglang else "hermes"
    flags = ["--reasoning-parser", reasoning] if reasoning else []
    if tools and sglang:
        flags += ["--tool-call-parser", tools]
    elif tools:
        flags += ["--enable-auto-tool-choice", "--tool-call-parser", tools]
    return flags


def _join(argv: list[str]) -> str:
    """The command on several lines: the program and positionals, then one flag per line."""
    first = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    lines = [" ".join(shlex.quote(a) for a in argv[:first])]
    i = first
    while i < len(argv):
        flag = [argv[i]]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flag.append(argv[i + 1])
        lines.append(" ".join(shlex.quote(a) for a in flag))
        i += len(flag)
    return " \\\n  ".join(lines)


def vllm(option: Option, context: int, concurrency: int) -> str:
    tp, pp = _split(option)
    argv = ["vllm", "serve", _repo(option), "--served-model-name", option.spec.id]
    argv += ["--tensor-parallel-size", str(tp)]
    if pp > 1:
        argv += ["--pipeline-parallel-size", str(pp), "--distributed-executor-backend", "ray"]
    argv += ["--max-model-len", str(_context(option, context))]
    argv += ["--max-num-seqs", str(max(1, min(concurrency, option.max_sequences or concurrency)))]
    argv += ["--gpu-memory-utilization", "0.9"]
    if not option.hardware.device.has("bf16"):
        argv += ["--dtype", "float16"]
    argv += parser_flags(option.spec.id, "vllm")
    argv += ["--port", str(_PORTS["vllm"])]
    command = _join(argv)
    if pp > 1:
        ray = (
            f"# {pp} nodes × {tp} devices: start Ray first\n"
            f"ray start --head --port {_RAY_PORT}                 # on the first node\n"
            f"ray start --address <first-node-ip>:{_RAY_PORT}     # on every other node\n"
        )
        command = ray + command
    return command


def sglang(option: Option, context: int, concurrency: int) -> str:
    tp, pp = _split(option)
    argv = ["python", "-m", "sglang.launch_server", "--model-path", _repo(option)]
    argv += ["--served-model-name", option.spec.id, "--tp", str(tp)]
    if pp > 1:
        argv += ["--nnodes", str(pp), "--node-rank", "<0..n-1>", "--dist-init-addr",
                 "<first-node-ip>:5000"]  # fmt: skip
        argv[argv.index("--tp") + 1] = str(tp * pp)
    argv += ["--context-length", str(_context(option, context))]
    argv += ["--max-running-requests", str(concurrency), "--mem-fraction-static", "0.88"]
    argv += parser_flags(option.spec.id, "sglang")
    argv += ["--port", str(_PORTS["sglang"])]
    return _join(argv)


def llamacpp(option: Option, context: int, concurrency: int) -> str:
    slots = max(1, min(concurrency, option.max_sequences or concurrency))
    repo = option.spec.quantizations.get(option.q.name)
    argv = ["llama-server"]
    if repo:
        argv += ["-hf", f"{repo}:{option.q.name}"]
    else:
        stem = option.spec.name.lower()
        argv += ["-m", f"{stem}-{option.q.name.lower()}.gguf"]
    # One context shared by the slots: each gets context tokens.
    argv += ["-c", str(_context(option, context) * slots), "-np", str(slots), "-cb"]
    if option.hardware.device.kind != "cpu":
        argv += ["-ngl", "999"]
    if option.kv_cache != "f16":  # a quantized V cache needs flash attention
        argv += ["-fa", "on", "-ctk", option.kv_cache, "-ctv", option.kv_cache]
    argv += ["--host", "0.0.0.0", "--port", str(_PORTS["llamacpp"])]
    command = " ".join(shlex.quote(a) for a in argv)
    if not repo:
        command = (
            f"# no published {option.q.name} GGUF: convert {option.spec.id} with llama.cpp's "
            f"convert_hf_to_gguf.py, then llama-quantize … {option.q.name}\n" + command
        )
    return command


def lmdeploy(option: Option, context: int, concurrency: int) -> str:
    tp, _ = _split(option)
    argv = ["lmdeploy", "serve", "api_server", _repo(option), "--model-name", option.spec.id]
    argv += ["--tp", str(option.tensor_parallel if option.tensor_parallel <= 8 else tp)]
    argv += ["--session-len", str(_context(option, context))]
    argv += ["--max-batch-size", str(concurrency), "--cache-max-entry-count", "0.8"]
    argv += ["--enable-prefix-caching"]  # the plan counts on it (shared system prompts)
    if option.q.kind in ("awq", "gptq"):
        argv += ["--model-format", "awq" if option.q.kind == "awq" else "gptq"]
    argv += ["--server-port", str(_PORTS["lmdeploy"])]
    return _join(argv)


def mindie(option: Option, context: int, concurrency: int) -> str:
    devices = list(range(min(option.tensor_parallel, DEVICES_PER_NODE)))
    name = re.sub(r"[^a-z0-9]+", "-", option.spec.name.lower()).strip("-")
    fields = {
        "BackendConfig": {
            "npuDeviceIds": [devices],
            "ModelDeployConfig": {
                "maxSeqLen": _context(option, context),
                "maxInputTokenLen": _context(option, context),
                "ModelConfig": [
                    {
                        "modelName": name,
                        "modelWeightPath": f"/data/models/{option.spec.id}",
                        "worldSize": len(devices),
                        "backendType": "atb",
                    }
                ],
            },
            "ScheduleConfig": {"maxBatchSize": concurrency},
        }
    }
    return (
        "# set these fields in {MindIE}/latest/mindie-service/conf/config.json, then:\n"
        "#   cd {MindIE}/latest/mindie-service && ./bin/mindieservice_daemon\n"
        + json.dumps(fields, indent=2, ensure_ascii=False)
    )


def vllm_ascend(option: Option, context: int, concurrency: int) -> str:
    return "# vLLM-Ascend (the vllm-ascend plugin on CANN) takes vLLM's flags:\n" + vllm(
        option, context, concurrency
    )


_EMIT = {
    "vllm": vllm,
    "sglang": sglang,
    "llamacpp": llamacpp,
    "lmdeploy": lmdeploy,
    "mindie": mindie,
    "vllm-ascend": vllm_ascend,
}


def launch(option: Option, engine: str, context: int, concurrency: int) -> str:
    """The launch command (or config) of ``option`` on ``engine``; for data-parallel
    copies, one command per copy, each on its own devices and port."""
    if engine not in _EMIT:
        raise InvalidRequest(
            f"未知引擎 / unknown engine {engine!r} for --emit: one of {', '.join(EMITTERS)}",
            param="emit",
        )
    if option.replicas == 1:
        return _EMIT[engine](option, context, concurrency)
    share = -(-concurrency // option.replicas)
    one = _EMIT[engine](option, context, share)
    visible = "ASCEND_RT_VISIBLE_DEVICES" if engine == "vllm-ascend" else "CUDA_VISIBLE_DEVICES"
    tp = option.tensor_parallel
    copies = [f"# {option.replicas} copies of {tp} device(s) each, {share} users apiece"]
    for i in range(option.replicas):
        devices = ",".join(str(d) for d in range(i * tp, (i + 1) * tp))
        port = _PORTS[engine] + i
        command = re.sub(rf"(--(?:server-)?port) {_PORTS[engine]}\b", rf"\1 {port}", one)
        copies.append(f"{visible}={devices} {command}")
    return "\n".join(copies)


def backend_name(option: Option, engine: str) -> str:
    """The name of ``option``'s backend on ``engine`` (a heshi.yaml key, a service name)."""
    return re.sub(r"[^a-z0-9]+", "-", f"{engine}-{option.spec.name}".lower()).strip("-")


def backend_block(option: Option, servers: list[tuple[str, str, int]]) -> dict[str, object]:
    """heshi.yaml's backends for ``servers`` ((backend name, host, port) each) and the
    public name: an alias for one, a least-busy route for several copies."""
    upstream = option.spec.id  # llama-server answers to any model name; the others to this
    public = option.spec.name.lower()
    backends = {
        name: {"base_url": f"http://{host}:{port}/v1", "models": [upstream], "timeout": 300}
        for name, host, port in servers
    }
    names = [name for name, _, _ in servers]
    if len(names) == 1:
        alias = {"backend": names[0], "model": upstream}
        return {"backends": backends, "aliases": {public: alias}}
    targets = [{"backend": n, "model": upstream} for n in names]
    return {
        "backends": backends,
        "routing": {"routes": {public: {"targets": targets, "balance": "least-busy"}}},
    }


def heshi_backend(option: Option, engine: str, host: str = "127.0.0.1") -> str:
    """The ``heshi.yaml`` lines that put the launched server(s) behind Heshi's gateway:
    a backend and an alias, or for copies a backend each and a route sharing them."""
    name = backend_name(option, engine)
    if option.replicas == 1:
        servers = [(name, host, _PORTS[engine])]
    else:
        servers = [(f"{name}-{i}", host, _PORTS[engine] + i) for i in range(option.replicas)]
    return yaml.safe_dump(backend_block(option, servers), sort_keys=False, allow_unicode=True)
