"""Weight quantizations the planner knows: how many bytes a parameter takes, and where.

Linear layers of the transformer blocks are what quantization shrinks; embeddings and the
output head (lm_head) stay in 16-bit in GPTQ, AWQ and FP8 checkpoints. Group-wise formats
add per-group scales and zeros:

- GPTQ (``Qwen/*-GPTQ-Int4|Int8``): group size 128, an fp16 scale per group and a packed
  zero point of the same bit width, plus ``g_idx`` (one int32 per input row).
- AWQ (``Qwen/*-AWQ``, 4-bit): group size 128, fp16 scales, 4-bit packed zeros.
- FP8: one byte per weight, per-channel or per-tensor scales (negligible).
- W8A8 (Ascend, made with msModelSlim: ``msmodelslim quant … --quant_type w8a8``): int8
  weights with per-channel scales and int8 activations, for vLLM-Ascend
  (``--quantization ascend``) and MindIE only (Ascend/MindIE-LLM docs/zh/user_guide/
  feature/w8a8.md; vllm-project/vllm-ascend docs/source/user_guide/feature_guide/
  quantization.md).
- GGUF: every tensor, embeddings included, in a llama.cpp block format. Q4_0 stores
  blocks of 32 weights as 16 bytes of 4-bit values plus an fp16 scale: 4.5 bits. The effective
  bits per weight of the k-quant mixes are derived from the sizes llama.cpp's
  ``tools/quantize/quantize.cpp`` prints for Llama-3-8B (8.03 B parameters): Q4_K_M
  4.58 GiB, Q5_K_M 5.33 GiB, Q6_K 6.14 GiB, Q8_0 7.96 GiB
  (https://github.com/ggml-org/llama.cpp/blob/master/tools/quantize/quantize.cpp).
"""

from __future__ import annotations

from dataclasses import dataclass

from heshi.errors import InvalidRequest

_LLAMA3_8B_PARAMS = 8.03e9


def _gguf_bits(gib: float) -> float:
    return gib * 2**30 * 8 / _LLAMA3_8B_PARAMS


@dataclass(frozen=True)
class Quant:
    """How one quantization stores weights."""

    name: str  # canonical spelling, e.g. "GPTQ-Int4"
    linear_bits: float  # bits per weight of the block linears, overhead included
    embedding_bits: float  # bits per weight of embeddings and lm_head
    kind: str  # "float" | "gptq" | "awq" | "fp8" | "w8a8" | "gguf"
    group_size: int | None = None

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"

    @property
    def weight_only_int(self) -> bool:
        """Integer weights dequantized on the fly (GPTQ/AWQ): needs their kernels."""
        return self.kind in ("gptq", "awq")


def _grouped(bits: int, group: int, zero_bits: int) -> float:
    return bits + (16 + zero_bits) / group  # weight + (fp16 scale + packed zero) per group


QUANTS: dict[str, Quant] = {
    q.name: q
    for q in (
        Quant("BF16", 16, 16, "float"),
        Quant("FP16", 16, 16, "float"),
        Quant("FP8", 8, 16, "fp8"),
        Quant("W8A8", 8, 16, "w8a8"),
        Quant("GPTQ-Int8", _grouped(8, 128, 8), 16, "gptq", 128),
        Quant("GPTQ-Int4", _grouped(4, 128, 4), 16, "gptq", 128),
        Quant("AWQ", _grouped(4, 128, 4), 16, "awq", 128),
        Quant("Q8_0", _gguf_bits(7.96), _gguf_bits(7.96), "gguf"),
        Quant("Q6_K", _gguf_bits(6.14), _gguf_bits(6.14), "gguf"),
        Quant("Q5_K_M", _gguf_bits(5.33), _gguf_bits(5.33), "gguf"),
        Quant("Q4_K_M", _gguf_bits(4.58), _gguf_bits(4.58), "gguf"),
        Quant("Q4_0", 4.5, 4.5, "gguf"),
    )
}

_ALIASES = {
    "AWQ-INT4": "AWQ",
    "AWQINT4": "AWQ",
    "INT4-AWQ": "AWQ",
    "GPTQINT4": "GPTQ-Int4",
    "GPTQ-INT4": "GPTQ-Int4",
    "GPTQINT8": "GPTQ-Int8",
    "GPTQ-INT8": "GPTQ-Int8",
    "BFLOAT16": "BF16",
    "FLOAT16": "FP16",
    "F16": "FP16",
    "Q4_K": "Q4_K_M",
    "Q5_K": "Q5_K_M",
    "W8A8-DYNAMIC": "W8A8",
}


def quant(name: str) -> Quant:
    """The quantization called ``name`` (case-insensitive; ``AWQ`` = ``AWQ-INT4``)."""
    key = name.strip().upper()
    canonical = _ALIASES.get(key) or _ALIASES.get(key.replace("_", "-"))
    if canonical is None:
        canonical = next((q for q in QUANTS if q.upper() == key), None)
    if canonical is None:
        raise InvalidRequest(
            f"未知量化方式 / unknown quantization {name!r}: one of {', '.join(QUANTS)}",
            param="quant",
        )
    return QUANTS[canonical]
