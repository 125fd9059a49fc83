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
from heshi.plan.modelflags import (
    model_flags,
    template_defaults,
    thinking_note,
)
from heshi.plan.option import Option

EMITTERS = ("vllm", "sglang", "llamacpp", "lmdeploy", "mindie", "vllm-ascend")
DEVICES_PER_NODE = 8
# Not the engines' defaults where those collide with Heshi's own: vLLM's 8000 is Heshi's
# default port, and Ray's 6379 is Redis's (which Heshi's replicas share quotas through).
_PORTS = {"vllm": 8001, "vllm-ascend": 8001, "sglang": 30000, "llamacpp": 8080,
          "lmdeploy": 23333, "mindie": 1025}  # fmt: skip
_RAY_PORT = 6380
# The releases the commands are written for (and the images --emit compose|helm runs).
IMAGES = {
    "vllm": "vllm/vllm-openai:v0.28.0",
    "sglang": "lmsysorg/sglang:v0.5.18",
    # the Atlas A2 image of docs.vllm.ai/projects/ascend/zh-cn/latest/getting_started/
    # quick_start.html
    "vllm-ascend": "quay.io/ascend/vllm-ascend:v0.23.0",
}
# vLLM's docs list compute capability 7.0 (V100) up to 0.20; later releases need 7.5
VLLM_SM70_IMAGE = "vllm/vllm-openai:v0.20.0"


def pinned(option: Option, engine: str) -> str:
    """A comment naming the release the command's flags were written for."""
    image = IMAGES.get(engine)
    if engine == "vllm" and option.hardware.device.arch == "sm70":
        image = VLLM_SM70_IMAGE
    if image is None:
        return ""
    version = image.rsplit(":v", maxsplit=1)[-1]
    package = {"vllm": "vllm", "sglang": "sglang", "vllm-ascend": "vllm-ascend"}[engine]
    return f"# {package} {version}（镜像 / image {image}）\n"


def _repo(option: Option) -> str:
    """The checkpoint to serve: a MindIE W8A8 converted here (:func:`weights_note`), the
    published repo of that quantization, else the base."""
    if option.q.kind == "w8a8" and option.engine == "mindie":
        return _converted_w8a8(option)
    return option.spec.quantizations.get(option.q.name, option.spec.id)


def _local(repo: str) -> str:
    """Where a node keeps a downloaded checkpoint (MindIE and msModelSlim read no hub ids)."""
    return repo if repo.startswith("/") else f"/data/models/{repo}"


def _converted_w8a8(option: Option) -> str:
    return f"/data/models/{option.spec.name}-W8A8"


def weights_note(option: Option) -> str:
    """For MindIE, which reads a local directory: how the weights get there — downloaded
    from ModelScope, and for W8A8 quantized with msModelSlim and marked, as MindIE's W8A8
    guide does (Ascend/MindIE-LLM docs/zh/user_guide/feature/w8a8.md)."""
    base = _local(option.spec.id)
    download = f"#   modelscope download --model {option.spec.id} --local_dir {base}\n"
    if option.q.kind != "w8a8":
        return "# 权重 / weights:\n" + download
    target = _repo(option)
    return (
        "# 权重 / weights: download, quantize with msModelSlim, mark it W8A8\n" + download
        + f"#   msmodelslim quant --model_path {base} --save_path {target} --device npu "
        f"--model_type {option.spec.name} --quant_type w8a8 --trust_remote_code True\n"
        + f'#   then add "quantize": "w8a8" to {target}/config.json\n'
    )  # fmt: skip


def _hub_env(option: Option) -> tuple[str, ...]:
    """vLLM reads ModelScope ids when told to: for repos published there alone."""
    return ("VLLM_USE_MODELSCOPE=true",) if _repo(option) in option.spec.modelscope_only else ()


def _split(option: Option) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel) for the option's devices."""
    devices = option.tensor_parallel
    if devices <= DEVICES_PER_NODE:
        return devices, 1
    return DEVICES_PER_NODE, devices // DEVICES_PER_NODE


def _context(option: Option, context: int) -> int:
    return min(context, option.spec.context or context)


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


def vllm_args(option: Option, tp: int, sequences: int, context: int) -> list[str]:
    """``vllm serve``'s arguments for one server (launch commands and container services
    alike), without the listening address."""
    args = [_repo(option), "--served-model-name", option.spec.id]
    args += ["--tensor-parallel-size", str(tp), "--max-model-len", str(_context(option, context))]
    args += ["--max-num-seqs", str(sequences), "--gpu-memory-utilization", "0.9"]
    if not option.hardware.device.has("bf16"):
        args += ["--dtype", "float16"]
    return args + model_flags(option, "vllm")


def sglang_args(option: Option, tp: int, running: int, context: int) -> list[str]:
    """``sglang.launch_server``'s arguments for one server, without the listening address."""
    args = ["--model-path", _repo(option), "--served-model-name", option.spec.id]
    args += ["--tp", str(tp), "--context-length", str(_context(option, context))]
    args += ["--max-running-requests", str(running), "--mem-fraction-static", "0.88"]
    return args + model_flags(option, "sglang")


def vllm(option: Option, context: int, concurrency: int) -> str:
    return pinned(option, "vllm") + _vllm(option, context, concurrency)


def _vllm(option: Option, context: int, concurrency: int, env: tuple[str, ...] = ()) -> str:
    """``vllm serve`` (after ``env``), with the Ray lines first beyond one node."""
    tp, pp = _split(option)
    sequences = max(1, min(concurrency, option.max_sequences or concurrency))
    argv = [*env, "vllm", "serve", *vllm_args(option, tp, sequences, context)]
    if pp > 1:
        argv += ["--pipeline-parallel-size", str(pp), "--distributed-executor-backend", "ray"]
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
    argv = ["python", "-m", "sglang.launch_server", *sglang_args(option, tp * pp, concurrency,
                                                                 context)]  # fmt: skip
    if pp > 1:
        argv += ["--nnodes", str(pp), "--node-rank", "<0..n-1>", "--dist-init-addr",
                 "<first-node-ip>:5000"]  # fmt: skip
    argv += ["--port", str(_PORTS["sglang"])]
    return pinned(option, "sglang") + thinking_note(option, "sglang") + _join(argv)


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
    argv += model_flags(option, "llamacpp")
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
    return thinking_note(option, "lmdeploy") + _join(argv)


def mindie(option: Option, context: int, concurrency: int) -> str:
    """The fields of MindIE Service's config.json this plan sets (its nesting: ServerConfig
    and BackendConfig at the top, ModelDeployConfig/ScheduleConfig inside BackendConfig,
    ModelConfig a list). Plain HTTP on the node, as the heshi.yaml block reaches it:
    MindIE's default is HTTPS with certificates to provide. ``maxIterTimes`` caps every
    answer's tokens (default 512: a reasoning answer would be cut), so it is the context;
    ``npuMemSize`` -1 sizes the KV cache from what the weights leave."""
    devices = list(range(min(option.tensor_parallel, DEVICES_PER_NODE)))
    name = served_name(option, "mindie")
    ctx = _context(option, context)
    fields = {
        "ServerConfig": {
            "ipAddress": "127.0.0.1",
            "port": _PORTS["mindie"],
            "httpsEnabled": False,
            "interCommTLSEnabled": False,
        },
        "BackendConfig": {
            "npuDeviceIds": [devices],
            "ModelDeployConfig": {
                "maxSeqLen": ctx,
                "maxInputTokenLen": ctx,
                "truncation": False,
                "ModelConfig": [
                    {
                        "modelName": name,
                        "modelWeightPath": _local(_repo(option)),
                        "worldSize": len(devices),
                        "backendType": "atb",
                        "npuMemSize": -1,
                    }
                ],
            },
            "ScheduleConfig": {
                "maxBatchSize": concurrency,
                "maxPrefillTokens": ctx,
                "maxIterTimes": ctx,
            },
        },
    }
    return (
        "# set these fields in {MindIE}/latest/mindie-service/conf/config.json, then:\n"
        "#   cd {MindIE}/latest/mindie-service && ./bin/mindieservice_daemon\n"
        "# httpsEnabled false: Heshi on this node reaches it over plain HTTP on 127.0.0.1; "
        "across a network keep HTTPS and point base_url at https:// with its certificates\n"
        + thinking_note(option, "mindie")
        + weights_note(option)
        + json.dumps(fields, indent=2, ensure_ascii=False)
    )


def vllm_ascend(option: Option, context: int, concurrency: int) -> str:
    head = "# vLLM-Ascend (the vllm-ascend plugin on CANN) takes vLLM's flags:\n"
    command = _vllm(option, context, concurrency, _hub_env(option))
    return pinned(option, "vllm-ascend") + head + command


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
    lines = _EMIT[engine](option, context, share).split("\n")
    # the comments (what to run first, how thinking goes off) once, before the copies
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    notes, one = lines[:first], "\n".join(lines[first:])
    visible = "ASCEND_RT_VISIBLE_DEVICES" if engine == "vllm-ascend" else "CUDA_VISIBLE_DEVICES"
    tp = option.tensor_parallel
    copies = [f"# {option.replicas} copies of {tp} device(s) each, {share} users apiece", *notes]
    for i in range(option.replicas):
        devices = ",".join(str(d) for d in range(i * tp, (i + 1) * tp))
        port = _PORTS[engine] + i
        command = re.sub(rf"(--(?:server-)?port) {_PORTS[engine]}\b", rf"\1 {port}", one)
        copies.append(f"{visible}={devices} {command} &")  # all copies run at once
    return "\n".join([*copies, "wait"])


def backend_name(option: Option, engine: str) -> str:
    """The name of ``option``'s backend on ``engine`` (a heshi.yaml key, a service name)."""
    return re.sub(r"[^a-z0-9]+", "-", f"{engine}-{option.spec.name}".lower()).strip("-")


def served_name(option: Option, engine: str) -> str:
    """The model name the launched server answers to: MindIE its config's ``modelName``,
    the others the catalog id (``--served-model-name``; llama-server answers to any)."""
    if engine == "mindie":
        return re.sub(r"[^a-z0-9]+", "-", option.spec.name.lower()).strip("-")
    return option.spec.id


def backend_block(
    option: Option, servers: list[tuple[str, str, int]], engine: str, context: int = 0
) -> dict[str, object]:
    """heshi.yaml's backends for ``servers`` ((backend name, host, port) each) and the
    public name: an alias for one, a least-busy route for several copies.

    With the server's ``context`` (its --max-model-len) the gateway knows the window: a
    request that sets no ``max_tokens`` is sent half of it, not 8,192 — vLLM refuses
    (400) a request whose prompt plus ``max_tokens`` passes --max-model-len."""
    upstream = served_name(option, engine)
    public = option.spec.name.lower()
    window: dict[str, object] = {}
    if context:
        ctx = _context(option, context)
        window = {"context": ctx, "max_output_tokens": max(1, ctx // 2)}
    defaults = template_defaults(option)
    if defaults:
        window["chat_template_kwargs"] = defaults  # no server-wide switch
    names = [name for name, _, _ in servers]
    # One server also answers to its upstream name (``models``) beside the public alias;
    # where the two are the same name (MindIE serves the short one) the name is declared
    # once, by the backend. Copies serve one name each: only the route declares it.
    solo = len(names) == 1
    backends = {
        name: {
            "base_url": f"http://{host}:{port}/v1",
            **({"models": [upstream]} if solo else {}),
            "timeout": 300,
            **window,
        }
        for name, host, port in servers
    }
    if solo and upstream == public:
        return {"backends": backends}
    if solo:
        alias = {"backend": names[0], "model": upstream}
        return {"backends": backends, "aliases": {public: alias}}
    targets = [{"backend": n, "model": upstream} for n in names]
    return {
        "backends": backends,
        "routing": {"routes": {public: {"targets": targets, "balance": "least-busy"}}},
    }


def heshi_backend(option: Option, engine: str, host: str = "127.0.0.1", context: int = 0) -> str:
    """The ``heshi.yaml`` lines that put the launched server(s) behind Heshi's gateway:
    a backend and an alias, or for copies a backend each and a route sharing them."""
    name = backend_name(option, engine)
    if option.replicas == 1:
        servers = [(name, host, _PORTS[engine])]
    else:
        servers = [(f"{name}-{i}", host, _PORTS[engine] + i) for i in range(option.replicas)]
    block = backend_block(option, servers, engine, context)
    return yaml.safe_dump(block, sort_keys=False, allow_unicode=True)
