"""Sizing from a GGUF header: architecture, real bits per weight, MoE experts."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from heshi.errors import ModelFileError
from heshi.plan.gguf import spec_from_gguf
from heshi.plan.memory import parameter_counts


def _write(path: Path, arch: str, extra: dict[str, int]) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_context_length(256)
    for key, value in extra.items():
        writer.add_uint32(f"{arch}.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((32, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_moe_metadata_is_read_and_every_expert_is_counted(tmp_path: Path) -> None:
    experts = {"expert_count": 8, "expert_used_count": 2, "expert_feed_forward_length": 4}
    path = _write(tmp_path / "moe.gguf", "qwen3moe", experts)
    spec, q = spec_from_gguf(path)
    assert spec.moe is not None
    assert (spec.moe.experts, spec.moe.experts_per_token, spec.moe.moe_intermediate_size) == (
        8,
        2,
        4,
    )
    p = parameter_counts(spec)
    assert p.linear > p.active_linear  # all experts resident, two read per token
    assert q.kind == "gguf" and q.linear_bits == pytest.approx(32.0)  # F32 tensors


def test_dense_files_stay_dense_and_broken_headers_are_clear(tmp_path: Path) -> None:
    spec, _ = spec_from_gguf(_write(tmp_path / "dense.gguf", "qwen2", {}))
    assert spec.moe is None and spec.kv_heads == 1 and spec.vocab_size == 32
    with pytest.raises(ModelFileError):
        spec_from_gguf(tmp_path / "missing.gguf")
