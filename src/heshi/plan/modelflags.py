"""What a model needs from its launch command beyond its size: the reasoning and tool-call
parsers of its family, thinking off for a workload that runs without it, and the vision
encoder left out of a text service."""

from __future__ import annotations

import json

from heshi.plan.memory import vision_parameters
from heshi.plan.option import Option


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


def thinks_by_default(model_id: str) -> bool:
    """Qwen3 and Qwen3.5/3.6 think unless the chat template is told not to (their model
    cards: "operate in thinking mode by default"; off with ``enable_thinking: false``)."""
    name = model_id.lower()
    return name.startswith("qwen/qwen3") and "2507" not in name and "coder" not in name


_NO_THINKING = json.dumps({"enable_thinking": False})


def model_flags(option: Option, engine: str) -> list[str]:
    """The flags a model needs beyond its size: reasoning and tool-call parsers, thinking
    off for a workload that runs without it (vLLM's ``--default-chat-template-kwargs``,
    vLLM ≥ 0.14; llama.cpp's ``--chat-template-kwargs``; a request can still turn it on),
    and a text-only server that leaves the vision encoder of Qwen3.5/3.6 unloaded (vLLM's
    ``--language-model-only``, which the model cards name for text-only serving;
    llama-server's ``--no-mmproj``, as ``-hf`` would fetch the projector too)."""
    vision = vision_parameters(option.spec) > 0
    quiet = thinking_off(option)
    if engine == "llamacpp":
        flags = ["--chat-template-kwargs", _NO_THINKING] if quiet else []
        return flags + (["--no-mmproj"] if vision else [])
    flags = parser_flags(option.spec.id, engine)
    if option.q.kind == "w8a8":
        flags += ["--quantization", "ascend"]  # vLLM-Ascend's msModelSlim loader
    if engine in ("vllm", "vllm-ascend"):
        flags += ["--default-chat-template-kwargs", _NO_THINKING] if quiet else []
        flags += ["--language-model-only"] if vision else []
    return flags


def template_defaults(option: Option) -> dict[str, object] | None:
    """The ``chat_template_kwargs`` a backend's heshi.yaml entry sends with every request:
    thinking off where the workload runs without it and the engine has no switch."""
    if option.engine in _TEMPLATE_SWITCH and thinking_off(option):
        return {"enable_thinking": False}
    return None


def thinking_off(option: Option) -> bool:
    """The workload runs without thinking on a model that thinks unless told not to."""
    return option.mode == "non-thinking" and thinks_by_default(option.spec.id)


# Engines whose requests take chat_template_kwargs but whose servers have no switch to pin:
# the heshi.yaml block sends {"enable_thinking": false} with every request Heshi forwards
_TEMPLATE_SWITCH = ("sglang", "lmdeploy")


def thinking_note(option: Option, engine: str) -> str:
    """For engines without a server-wide switch: how this workload turns thinking off."""
    if not thinking_off(option) or engine in ("vllm", "vllm-ascend", "llamacpp"):
        return ""
    via = (
        "Heshi 按 heshi.yaml 代发 / the heshi.yaml block below sends it for requests through "
        "Heshi; other clients"
        if engine in _TEMPLATE_SWITCH
        else "requests"
    )
    return (
        f"# {option.spec.name} 默认先思考 / thinks by default: {via} turn it off with "
        f"chat_template_kwargs {_NO_THINKING}\n"
    )
