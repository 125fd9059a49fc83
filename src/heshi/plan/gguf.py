"""Plan for a GGUF file you already have: architecture and real bits per weight from its
header (no tensor data is read)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from heshi.catalog import ModelSpec, MoE
from heshi.errors import ModelFileError
from heshi.hub.gguf_header import GGUFHeaderError, read_gguf_header
from heshi.hub.gguf_info import read_gguf_info
from heshi.plan.quant import Quant


def _int(fields: dict[str, Any], key: str) -> int:
    value = fields.get(key)
    if not isinstance(value, int):
        raise ModelFileError(f"GGUF 缺少 {key} / the GGUF header has no {key}")
    return value


def _moe(fields: dict[str, Any], arch: str) -> MoE | None:
    """Experts from the header (``qwen2moe``/``qwen3moe``…): all of them are resident."""
    experts = fields.get(f"{arch}.expert_count")
    if not isinstance(experts, int) or experts <= 1:
        return None
    shared = fields.get(f"{arch}.expert_shared_feed_forward_length")
    return MoE(
        experts=experts,
        experts_per_token=_int(fields, f"{arch}.expert_used_count"),
        moe_intermediate_size=_int(fields, f"{arch}.expert_feed_forward_length"),
        shared_expert_intermediate_size=shared if isinstance(shared, int) else None,
    )


def spec_from_gguf(path: Path) -> tuple[ModelSpec, Quant]:
    """The model's architecture and a ``Quant`` with the file's measured bits per weight."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    info = read_gguf_info(path)  # validates the file (missing, truncated, not GGUF)
    try:
        header = read_gguf_header(path)
    except (GGUFHeaderError, OSError) as exc:  # pragma: no cover - read_gguf_info checked
        raise ModelFileError(
            f"GGUF 头部无法读取 / cannot read the GGUF header of {path}: {exc}"
        ) from exc
    fields = header.fields
    arch = info.architecture or ""
    sizes: dict[str, tuple[int, float]] = {}
    for tensor in header.tensors:
        try:
            per_block, size = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.ggml_type)]
        except (ValueError, KeyError) as exc:
            raise ModelFileError(
                f"{path}: 未知张量类型 / unknown tensor type {tensor.ggml_type} in {tensor.name}"
            ) from exc
        count = math.prod(tensor.shape)
        sizes[tensor.name] = (count, count / per_block * size)
    names = set(sizes)
    embedding = sizes.get("token_embd.weight")
    if embedding is None:
        raise ModelFileError(f"{path}: no token_embd.weight tensor")
    heads = _int(fields, f"{arch}.attention.head_count")
    if heads <= 0:
        raise ModelFileError(f"{path}: attention.head_count must be positive")
    hidden = _int(fields, f"{arch}.embedding_length")
    head_count_kv = fields.get(f"{arch}.attention.head_count_kv")
    kv_heads = head_count_kv if isinstance(head_count_kv, int) else heads
    key_length = fields.get(f"{arch}.attention.key_length")
    block = [v for k, v in sizes.items() if k.startswith("blk.") and k.endswith(".weight")]
    block_params = sum(c for c, _ in block)
    head_tensors = [sizes[n] for n in ("token_embd.weight", "output.weight") if n in sizes]
    spec = ModelSpec(
        id=str(path),
        name=info.name or path.stem,
        family=arch,
        layers=_int(fields, f"{arch}.block_count"),
        hidden_size=hidden,
        intermediate_size=fields.get(f"{arch}.feed_forward_length"),
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=key_length if isinstance(key_length, int) else hidden // heads,
        vocab_size=embedding[0] // hidden,
        context=info.context_length,
        tied_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
        moe=_moe(fields, arch),
        source_url=str(path),
    )
    q = Quant(
        name=info.quantization,
        linear_bits=8 * sum(b for _, b in block) / max(block_params, 1),
        embedding_bits=8
        * sum(b for _, b in head_tensors)
        / max(sum(c for c, _ in head_tensors), 1),
        kind="gguf",
    )
    return spec, q
