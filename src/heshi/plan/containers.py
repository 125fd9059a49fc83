"""The planner's choice as containers: Docker Compose services (``--emit compose``) or
values for the Helm chart ``deploy/helm/heshi`` (``--emit helm``).

The best feasible option on an engine with a published image is taken: vLLM or SGLang
on NVIDIA GPUs, vLLM-Ascend on Ascend NPUs, and on CPU nodes Heshi's own embedded
llama.cpp engine (the ``heshi`` image serving one GGUF). MindIE and LMDeploy are left
to ``--emit mindie|lmdeploy`` (MindIE is configured by editing a file inside its image).
Each backend gets the devices, tensor-parallel size, memory and health check the plan
chose; data-parallel copies become several services (Compose) or replicas (Helm).

Image tags are pinned to releases named in the engines' own documentation; the
calibration's measurements came from engines of that age or older.
"""

from __future__ import annotations

from typing import Any

import yaml

from heshi.errors import InvalidRequest
from heshi.hub.names import short_names
from heshi.plan.emit import (
    _PORTS,
    DEVICES_PER_NODE,
    IMAGES,
    VLLM_SM70_IMAGE,
    _context,
    backend_block,
    backend_name,
    sglang_args,
    vllm_args,
)
from heshi.plan.memory import GIB, KV_BYTES, Workload, kv_cache_bytes
from heshi.plan.modelflags import template_defaults, thinking_off
from heshi.plan.option import Option

TARGETS = ("compose", "helm")
HESHI_IMAGE = "heshi:latest"  # what deploy/compose.yaml builds from the Dockerfile
_SHM_GIB = 16  # tensor-parallel workers exchange tensors through /dev/shm (memory-backed)
_ASCEND_DEVICES = ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
# the host's driver, as vLLM-Ascend's quick start mounts it into the container
_ASCEND_MOUNTS = [
    "/usr/local/dcmi:/usr/local/dcmi",
    "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi",
    "/usr/local/Ascend/driver/lib64/:/usr/local/Ascend/driver/lib64/",
    "/usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info",
    "/etc/ascend_install.info:/etc/ascend_install.info",
]
_HESHI_PORT = 8000
# the engines fetch weights from ModelScope (reachable in China) instead of Hugging Face
_MODELSCOPE = [
    {"name": "VLLM_USE_MODELSCOPE", "value": "true"},
    {"name": "SGLANG_USE_MODELSCOPE", "value": "true"},
]


def containerized(option: Option) -> bool:
    """Whether ``option`` runs on an engine this module writes services for."""
    kind, vendor = option.hardware.device.kind, option.hardware.device.vendor
    if option.tensor_parallel > DEVICES_PER_NODE:
        return False  # several nodes: Ray or SGLang's multi-node launch, not one service
    if option.engine in ("vllm", "sglang"):
        return kind == "gpu" and vendor == "NVIDIA"
    if option.engine == "vllm-ascend":
        return vendor == "Huawei" and kind == "npu"
    return option.engine == "llamacpp" and kind == "cpu" and _short_name(option) is not None


def container_choice(ranked: list[Option]) -> Option:
    """The best feasible option that runs in a container here (InvalidRequest if none)."""
    for option in ranked:
        if option.feasible and containerized(option):
            return option
    if not any(option.feasible for option in ranked):
        raise InvalidRequest(
            "没有可行配置，见上表 / no configuration is feasible here (see the table above)",
            param="emit",
        )
    raise InvalidRequest(
        "没有可容器化部署的可行配置（vLLM/SGLang 于 NVIDIA GPU，vLLM-Ascend 于昇腾，"
        "CPU 上的内置引擎）/ no feasible configuration runs in a container here (vLLM or "
        "SGLang on NVIDIA GPUs, vLLM-Ascend on Ascend, the embedded engine on CPUs); "
        "--emit mindie|lmdeploy|llamacpp prints launch commands instead",
        param="emit",
    )


def _short_name(option: Option) -> str | None:
    """The ``heshi models`` short name of the option's GGUF (e.g. ``qwen3:8b-q4_k_m``):
    the catalog GGUF of this model at this quantization, if one is published."""
    tag = option.q.name.lower()
    for name in short_names():
        if name.model.catalog_id == option.spec.id and name.quant.tag == tag:
            return name.name
    return None


def _port(option: Option) -> int:
    return _HESHI_PORT if option.engine == "llamacpp" else _PORTS[option.engine]


def _slots(option: Option, concurrency: int) -> int:
    share = -(-concurrency // option.replicas)
    return max(1, min(share, option.max_sequences or share))


def _argv(option: Option, context: int, concurrency: int) -> tuple[list[str], list[str]]:
    """(command, args) of one copy, listening on all interfaces."""
    share = -(-concurrency // option.replicas)
    slots = _slots(option, concurrency)
    ctx = str(_context(option, context))
    port = str(_port(option))
    listen = ["--host", "0.0.0.0", "--port", port]
    if option.engine in ("vllm", "vllm-ascend"):
        args = vllm_args(option, option.tensor_parallel, slots, context)
        return ["vllm", "serve"], [*args, *listen]
    if option.engine == "sglang":
        args = sglang_args(option, option.tensor_parallel, share, context)
        return ["python3", "-m", "sglang.launch_server"], [*args, *listen]
    args = ["serve", "--open", "--host", "0.0.0.0", "--port", port]
    args += ["--model", str(_short_name(option)), "--name", option.spec.id]
    args += ["--parallel", str(slots), "--ctx", ctx]
    if option.kv_cache != "f16":
        args += ["--kv-cache", option.kv_cache]
    if thinking_off(option):
        args += ["--no-thinking"]
    return ["heshi"], args


def _pull(option: Option) -> list[str]:
    """What fetches the CPU engine's GGUF into its home before it serves (``heshi serve``
    only opens models already pulled)."""
    return ["models", "pull", str(_short_name(option))]


def _health(option: Option) -> str:
    return "/healthz" if option.engine == "llamacpp" else "/health"


def _image(option: Option) -> str:
    if option.engine == "llamacpp":
        return HESHI_IMAGE
    if option.engine == "vllm" and option.hardware.device.arch == "sm70":
        return VLLM_SM70_IMAGE
    return IMAGES[option.engine]


def _gib(value: float) -> int:
    return max(1, int(-(-value // 1)))


def _host_memory_gib(option: Option, context: int, concurrency: int) -> int:
    """Memory the container needs on the host. The CPU engine holds the weights and the
    KV cache it allocates at load: every slot's full context (llama.cpp's pool is
    ctx × parallel), in the format it is given. A GPU engine's weights pass through host
    memory while loading, and /dev/shm (memory-backed) counts against the limit too."""
    p = option.prediction
    if option.hardware.device.kind == "cpu":
        slots, ctx = _slots(option, concurrency), _context(option, context)
        kv_bytes = KV_BYTES[option.kv_cache]
        pool = Workload(input_tokens=ctx, output_tokens=0, batch=slots, kv_bytes=kv_bytes)
        kv = kv_cache_bytes(option.spec, pool) / GIB
        return _gib((p.weights_gb + kv) * 1.1 + 1.5)
    return max(16, _gib(p.weights_gb * 1.2 + 4)) + _SHM_GIB


def compose(option: Option, context: int, concurrency: int) -> str:
    """A Compose file of the backend services, to use beside ``deploy/compose.yaml``;
    its ``x-heshi-yaml`` block goes into the gateways' heshi.yaml."""
    command, args = _argv(option, context, concurrency)
    name = backend_name(option, option.engine)
    hosts = [name] if option.replicas == 1 else [f"{name}-{i}" for i in range(option.replicas)]
    port = _port(option)
    services: dict[str, Any] = {}
    tp = option.tensor_parallel
    for i, host in enumerate(hosts):
        devices = [str(d) for d in range(i * tp, (i + 1) * tp)]
        service: dict[str, Any] = {
            "image": _image(option),
            "entrypoint": command,
            "command": args,
            "healthcheck": {
                "test": [
                    "CMD",
                    "python3",
                    "-c",
                    "import urllib.request; urllib.request."
                    f"urlopen('http://127.0.0.1:{port}{_health(option)}', timeout=4)",
                ],
                "interval": "15s",
                "timeout": "5s",
                "start_period": "1800s" if option.engine != "llamacpp" else "600s",
                "retries": 3,
            },
            "restart": "unless-stopped",
        }
        memory = f"{_host_memory_gib(option, context, concurrency)}g"
        if option.engine == "llamacpp":
            service["volumes"] = [f"{host}-home:/var/lib/heshi"]
            service["deploy"] = {"resources": {"limits": {"memory": memory}}}
            # the GGUF is pulled into the home first (once: later runs find it there)
            done = {"condition": "service_completed_successfully"}
            service["depends_on"] = {f"{host}-pull": done}
            services[f"{host}-pull"] = {
                "image": _image(option),
                "entrypoint": list(command),
                "command": _pull(option),
                "volumes": list(service["volumes"]),
                "restart": "no",
            }
        else:
            service["volumes"] = ["models:/root/.cache"]
            service["environment"] = {e["name"]: e["value"] for e in _MODELSCOPE}
        if option.engine in ("vllm", "sglang"):
            service["ipc"] = "host"  # tensor-parallel workers share tensors through it
            service["deploy"] = {
                "resources": {
                    "limits": {"memory": memory},
                    "reservations": {
                        "devices": [
                            {"driver": "nvidia", "device_ids": devices, "capabilities": ["gpu"]}
                        ]
                    },
                }
            }
        elif option.engine == "vllm-ascend":
            service["devices"] = [f"/dev/davinci{d}" for d in devices] + _ASCEND_DEVICES
            service["shm_size"] = f"{_SHM_GIB}g"  # tensor-parallel workers share tensors
            service["volumes"] = [*_ASCEND_MOUNTS, "models:/root/.cache"]
            service["deploy"] = {"resources": {"limits": {"memory": memory}}}
        services[host] = service
    names = [f"{h}-home" for h in hosts] if option.engine == "llamacpp" else ["models"]
    volumes: dict[str, dict[str, Any]] = {name: {} for name in names}
    document = {
        "services": services,
        "volumes": volumes,
        "x-heshi-yaml": backend_block(
            option, [(h, h, port) for h in hosts], option.engine, context
        ),
    }
    head = (
        f"# {option.spec.id} {option.q.name} on {option.hardware} ({option.engine}, "
        f"tensor parallel {tp}, {option.replicas} cop{'y' if option.replicas == 1 else 'ies'})\n"
        "#   heshi plan ... --emit compose > deploy/backends.compose.yaml\n"
        "#   docker compose -p heshi -f deploy/compose.yaml -f deploy/backends.compose.yaml up -d\n"
        "# and put x-heshi-yaml's backends and aliases (or routes) in deploy/heshi.compose.yaml\n"
    )
    return head + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def helm(option: Option, context: int, concurrency: int) -> str:
    """Values for ``deploy/helm/heshi``: the backend (copies as its replicas, behind one
    Service) with its devices, memory, startup allowance and health path."""
    command, args = _argv(option, context, concurrency)
    tp = option.tensor_parallel
    memory = f"{_host_memory_gib(option, context, concurrency)}Gi"
    limits: dict[str, Any] = {"memory": memory}
    requests: dict[str, Any] = {"memory": memory}
    if option.engine in ("vllm", "sglang"):
        limits["nvidia.com/gpu"] = tp
        requests["cpu"] = str(max(2, 2 * tp))
    elif option.engine == "vllm-ascend":
        limits["huawei.com/Ascend910"] = tp
        requests["cpu"] = str(max(2, 2 * tp))
    else:
        cpu = option.hardware.device.cpu
        requests["cpu"] = str((cpu.cores if cpu else None) or 4)
    size = f"{_gib(option.prediction.weights_gb * 1.5 + 2)}Gi"
    # weights on a volume that outlives pods and upgrades; several copies would each need
    # one (ReadWriteOnce), so they download into their own emptyDir instead
    cache: dict[str, Any] = {"persistent": option.replicas == 1, "size": size}
    if option.replicas > 1:
        requests["ephemeral-storage"] = size
    backend: dict[str, Any] = {
        "name": backend_name(option, option.engine),
        "engine": "heshi" if option.engine == "llamacpp" else option.engine,
        "context": _context(option, context),
        "command": command,
        "args": args,
        "port": _port(option),
        "model": option.spec.id,
        "alias": option.spec.name.lower(),
        "replicas": option.replicas,
        "resources": {"requests": requests, "limits": limits},
        "healthPath": _health(option),
        "startupSeconds": 600 if option.engine == "llamacpp" else 1800,
        "modelCache": cache,
    }
    if option.engine == "llamacpp":  # the chart's own image, pulling its GGUF first
        backend["init"] = {"command": command, "args": _pull(option)}
        backend["modelPath"] = "/var/lib/heshi"  # HESHI_HOME in the image
        backend["podSecurityContext"] = {"runAsUser": 10001, "runAsGroup": 0, "fsGroup": 0}
        backend["shmSize"] = "1Gi"
    else:
        backend["image"] = _image(option)
        backend["env"] = _MODELSCOPE
        backend["shmSize"] = f"{_SHM_GIB}Gi"
    defaults = template_defaults(option)
    if defaults:  # sent by the gateways with every request (no server switch to pin)
        backend["chatTemplateKwargs"] = defaults
    if option.engine == "vllm-ascend":  # the host's driver, as on Docker (no-op with
        # Ascend Docker Runtime, which mounts the same paths)
        paths = [m.split(":")[0].rstrip("/") for m in _ASCEND_MOUNTS]
        backend["hostMounts"] = [
            {"name": f"ascend-{i}", "path": path} for i, path in enumerate(paths)
        ]
    head = (
        f"# {option.spec.id} {option.q.name} on {option.hardware} ({option.engine}, "
        f"tensor parallel {tp}, {option.replicas} replica(s))\n"
        "#   heshi plan ... --emit helm > backends.yaml\n"
        "#   helm install heshi deploy/helm/heshi -f backends.yaml \\\n"
        "#     --set secrets.adminToken=... --set secrets.postgresPassword=...\n"
    )
    return head + yaml.safe_dump({"backends": [backend]}, sort_keys=False, allow_unicode=True)


def render(target: str, option: Option, context: int, concurrency: int) -> str:
    """``compose`` or ``helm`` output for ``option``."""
    write = compose if target == "compose" else helm
    return write(option, context, concurrency)
