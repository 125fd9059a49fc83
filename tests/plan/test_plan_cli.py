"""``heshi plan predict``: the JSON contract, CSV rows, local GGUF files, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heshi.cli.main import app
from heshi.plan.fit import calibration_csv

CONTRACT = {
    "weights_gb",
    "kv_cache_gb",
    "peak_memory_gb",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "end_to_end_tokens_per_s",
    "fits",
    "notes",
}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["plan", "predict", *args])
    return result.exit_code, result.stdout, result.stderr


def test_predict_prints_the_contract_as_one_json_object() -> None:
    code, out, _ = _run(
        "--model", "Qwen/Qwen2.5-7B-Instruct", "--quant", "awq-int4", "--engine", "vllm",
        "--hardware", "1x nvidia-a100-80gb", "--input-tokens", "6144", "--output-tokens",
        "2048", "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    assert set(result) >= CONTRACT
    assert result["quant"] == "AWQ" and result["fits"] is True
    seconds = result["total_seconds"]
    assert result["end_to_end_tokens_per_s"] == pytest.approx((6144 + 2048) / seconds, rel=1e-4)
    assert result["peak_memory_gb"] == 72.0  # vLLM reserves 0.9 of the 80 GiB card


def test_rows_file_gives_one_json_line_per_row_in_order(tmp_path: Path) -> None:
    with calibration_csv().open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        published = [next(reader) for _ in range(3)]
    rows = [published[0], {**published[1], "model": "Qwen9-1B"}, published[2]]
    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    code, out, _ = _run("--rows", str(path))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert lines[0]["model"] == "Qwen/Qwen2-0.5B-Instruct" and set(lines[0]) >= CONTRACT
    assert lines[0]["quant"] == published[0]["quantization"]
    assert lines[1] == {"line": 3, "error": lines[1]["error"]}
    assert "Qwen9-1B" in lines[1]["error"]
    assert lines[2]["quant"] == published[2]["quantization"]


def test_a_rows_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("model,quantization\nQwen/Qwen3-8B,BF16\n", encoding="utf-8")
    code, _, err = _run("--rows", str(path))
    assert code == 1
    assert "framework" in err and "hardware" in err


def test_a_local_gguf_file_is_sized_from_its_own_header(tiny_gguf: Path) -> None:
    code, out, _ = _run(
        "--model", str(tiny_gguf), "--engine", "llamacpp", "--hardware", "local",
        "--input-tokens", "16", "--output-tokens", "8", "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    assert result["fits"] is True
    assert result["weights_gb"] < 0.05 < result["required_memory_gb"]  # tiny model + buffers
    assert result["decode_tokens_per_s"] > 0


def test_missing_options_and_unknown_names_are_one_clear_line() -> None:
    code, _, err = _run("--model", "Qwen/Qwen3-8B")
    assert code == 1 and "--engine" in err and "--hardware" in err
    code, _, err = _run(
        "--model", "Qwen/Qwen3-8B", "--quant", "bf16", "--engine", "vllm",
        "--hardware", "3x nvidia-h101",
    )  # fmt: skip
    assert code == 1 and "nearest" in err
    code, _, err = _run(
        "--model", "Qwen/Qwen3-8B", "--quant", "bf16", "--engine", "tensorrt",
        "--hardware", "nvidia-h20-96gb",
    )  # fmt: skip
    assert code == 1 and "unknown engine" in err
