"""The launch commands turn reasoning and tool calls into OpenAI fields: without the
parser flags a vLLM or SGLang backend returns ``<think>`` inside ``content`` and never
fills ``tool_calls`` (and vLLM refuses ``tool_choice: auto``)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app
from heshi.plan.modelflags import parser_flags


@pytest.mark.parametrize(
    ("model", "vllm", "sglang"),
    [
        (
            "Qwen/Qwen3-8B",
            "--reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser hermes",
            "--reasoning-parser qwen3 --tool-call-parser qwen25",
        ),
        (
            "Qwen/Qwen3.6-27B",
            "--reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder",
            "--reasoning-parser qwen3 --tool-call-parser qwen3_coder",
        ),
        (
            "Qwen/Qwen2.5-7B-Instruct",
            "--enable-auto-tool-choice --tool-call-parser hermes",
            "--tool-call-parser qwen25",
        ),
        (
            "Qwen/QwQ-32B",
            "--reasoning-parser deepseek_r1 --enable-auto-tool-choice --tool-call-parser hermes",
            "--reasoning-parser deepseek-r1 --tool-call-parser qwen25",
        ),
        (
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "--reasoning-parser deepseek_r1",
            "--reasoning-parser deepseek-r1",
        ),
        ("THUDM/glm-4-9b-chat", "", ""),
    ],
)
def test_each_family_gets_its_parsers(model: str, vllm: str, sglang: str) -> None:
    assert " ".join(parser_flags(model, "vllm")) == vllm
    assert " ".join(parser_flags(model, "vllm-ascend")) == vllm
    assert " ".join(parser_flags(model, "sglang")) == sglang


def test_the_emitted_commands_and_services_carry_them() -> None:
    runner = CliRunner()
    base = ["plan", "--hardware", "2x nvidia-a100-80gb", "--concurrency", "32"]
    for engine in ("vllm", "sglang"):
        out = runner.invoke(app, [*base, "--model", "Qwen/Qwen3-8B", "--emit", engine])
        assert out.exit_code == 0, out.output
        assert "--reasoning-parser qwen3" in out.stdout, out.stdout
    out = runner.invoke(app, [*base, "--model", "Qwen/Qwen3-8B", "--emit", "compose"])
    assert out.exit_code == 0, out.output
    (service,) = yaml.safe_load(out.stdout)["services"].values()
    args = " ".join(service["command"])
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in args
