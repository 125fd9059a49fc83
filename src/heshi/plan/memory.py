"""How much accelerator memory a model needs: weights, KV cache, activations, overhead.

All sizes are bytes unless a name says ``_gb`` (GiB, 2**30 bytes: what ``torch.cuda``
and ``nvidia-smi`` report as "GB", and what Qwen's published measurements use).

Parameters are counted from the architecture (config.json), not taken from the model
card, so the split the quantizations need is exact: block linears (quantized), embeddings
and lm_head (kept 16-bit except in GGUF), norms and biases (16-bit). For Qwen2.5-7B the
count is 7.62 B against the card's 7.61 B.

KV cache per token uses the key/value heads, not the attention heads (grouped-query
attention): Qwen2.5-7B has 28 query heads but 4 KV heads, so 2 × 28 layers × 4 × 128 ×
2 bytes = 56 KiB per token, one seventh of what a calculator assuming full multi-head
attention gets. Qwen3.5-style hybrid models keep a KV cache only in their full-attention
layers; their linear-attention layers hold a fixed recurrent state per sequence instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from heshi.catalog import ModelSpec
from heshi.plan.quant import Quant

GIB = float(2**30)
# Transformers before 4.45 computes the logits of every prompt position at prefill (fp32
# plus a bf16 copy); Qwen's Qwen2 speed tables were measured with 4.38.2.
LEGACY_TRANSFORMERS = "transformers-4.38"
MEMORY_FEATURES = ("activations", "logits", "devices")


# Bytes per cached key/value element: f16, or llama.cpp's q8_0 (blocks of 32 int8 values
# and one f16 scale: 34 bytes per 32 values).
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32}


@dataclass(frozen=True)
class Workload:
    """One batch: ``batch`` sequences of ``input_tokens`` prompt and ``output_tokens`` out,
    their KV cache stored in ``kv_bytes`` bytes per element."""

    input_tokens: int
    output_tokens: int
    batch: int = 1
    kv_bytes: float = KV_BYTES["f16"]


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a model by where they live (``active_*``: what one token reads)."""

    embedding: int  # input token embeddings
    lm_head: int  # 0 when tied to the embeddings
    linear: int  # matrices of the transformer blocks (experts included)
    small: int  # norms, biases, router gates: kept 16-bit
    active_linear: int  # block matrices one token multiplies (MoE: routed + shared)

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.linear + self.small


def parameter_counts(spec: ModelSpec) -> ParamCounts:
    """Exact for Qwen2/2.5/3 dense and MoE configs; an estimate for hybrid layers."""
    h, hd = spec.hidden_size, spec.head_dim
    q_out, kv_out = spec.attention_heads * hd, spec.kv_heads * hd
    attention = h * q_out + 2 * h * kv_out + q_out * h
    attn_small = 2 * h  # input and post-attention RMSNorm
    if spec.qkv_bias:
        attn_small += q_out + 2 * kv_out
    if spec.family.startswith("Qwen3"):
        attn_small += 2 * hd  # q_norm and k_norm
    if spec.moe is not None:
        moe = spec.moe
        expert = 3 * h * moe.moe_intermediate_size
        shared = 3 * h * (moe.shared_expert_intermediate_size or 0)
        mlp, mlp_active = moe.experts * expert + shared, moe.experts_per_token * expert + shared
        mlp_small = h * moe.experts + (h if shared else 0)  # router (+ shared-expert gate)
    else:
        mlp = mlp_active = 3 * h * (spec.intermediate_size or 0)
        mlp_small = 0
    layers = spec.layers
    linear_attention = attention * layers
    if spec.hybrid is not None:
        hy = spec.hybrid
        # Linear-attention (Gated DeltaNet) layers: q/k/v/z/out projections of their heads.
        key_dim = hy.linear_key_heads * hy.linear_key_head_dim
        value_dim = hy.linear_value_heads * hy.linear_value_head_dim
        linear_layer = h * (2 * key_dim + 2 * value_dim) + value_dim * h
        linear_attention = attention * hy.full_attention_layers + linear_layer * (
            hy.linear_attention_layers
        )
    embedding = spec.vocab_size * h
    return ParamCounts(
        embedding=embedding,
        lm_head=0 if spec.tied_embeddings else embedding,
        linear=linear_attention + mlp * layers,
        small=(attn_small + mlp_small) * layers + h,
        active_linear=linear_attention + mlp_active * layers,
    )


def weight_bytes(spec: ModelSpec, q: Quant) -> float:
    """Bytes of all weights in quantization ``q`` (every expert resident for MoE).

    A tied model stores its embedding once (GGUF too: ``token_embd`` doubles as output).
    """
    p = parameter_counts(spec)
    return (
        p.linear * q.linear_bits / 8
        + (p.embedding + p.lm_head) * q.embedding_bits / 8
        + p.small * 2
    )


# Qwen3.5/3.6 checkpoints carry a vision encoder beside the language model their names
# count ("Causal Language Model with Vision Encoder", the model cards). Its config.json
# vision_config: depth 27, hidden_size 1152, intermediate_size 4304, patch 16 over 2
# frames, 2,304 position embeddings, a 2×2 patch merger into the text hidden size
# (huggingface.co/Qwen/Qwen3.5-397B-A17B/blob/main/config.json). The count below gives
# 460.7 M for the 27B and 446.6 M for the 35B-A3B (~0.9 GB in BF16; an SGLang PR measured
# 0.88 GiB for a tower of this shape). Quantized checkpoints keep it in 16 bits.
_VIT_DEPTH, _VIT_HIDDEN, _VIT_MLP, _VIT_POSITIONS = 27, 1152, 4304, 2304
_VIT_MERGE = 4 * _VIT_HIDDEN  # 2×2 patches merged into one token


def vision_parameters(spec: ModelSpec) -> int:
    """Parameters of the model's vision encoder (0 for text-only checkpoints)."""
    if not spec.family.startswith("Qwen3.5"):
        return 0
    h, i = _VIT_HIDDEN, _VIT_MLP
    block = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # qkv+proj, MLP, two LayerNorms
    patches = 3 * 2 * 16 * 16 * h + h + _VIT_POSITIONS * h
    merger = 2 * h + _VIT_MERGE * _VIT_MERGE + _VIT_MERGE + _VIT_MERGE * spec.hidden_size
    return _VIT_DEPTH * block + patches + merger + spec.hidden_size


# Engines that load a checkpoint's vision encoder when serving text: vLLM is launched with
# --language-model-only (heshi plan --emit does) and llama.cpp loads it only from a
# separate mmproj file (--emit passes --no-mmproj); the others keep it resident.
LOADS_VISION = ("sglang", "lmdeploy", "mindie", "transformers")


def vision_bytes(spec: ModelSpec, engine: str) -> float:
    """Bytes of the vision encoder that ``engine`` holds beside the weights (16-bit)."""
    loads = engine.split("-", maxsplit=1)[0] in LOADS_VISION
    return vision_parameters(spec) * 2.0 if loads else 0.0


def weight_bytes_read_per_token(spec: ModelSpec, q: Quant) -> float:
    """Weight bytes one decode step reads: active linears, lm_head, one embedding row."""
    p = parameter_counts(spec)
    head = p.lm_head or p.embedding  # a tied head still multiplies the whole embedding
    return p.active_linear * q.linear_bits / 8 + head * q.embedding_bits / 8 + p.small * 2


def experts_touched(spec: ModelSpec, batch: int = 1) -> float:
    """Expected distinct routed experts per layer in a decode step of ``batch`` tokens,
    each picking ``experts_per_token`` of ``experts`` uniformly (0 for dense models)."""
    moe = spec.moe
    if moe is None:
        return 0.0
    if batch <= 1:
        return float(moe.experts_per_token)
    return moe.experts * (1 - (1 - moe.experts_per_token / moe.experts) ** batch)


def routed_expert_bytes_per_step(spec: ModelSpec, q: Quant, batch: int = 1) -> float:
    """Bytes of the routed experts a decode step of ``batch`` sequences reads."""
    moe = spec.moe
    if moe is None:
        return 0.0
    expert = 3 * spec.hidden_size * moe.moe_intermediate_size
    return experts_touched(spec, batch) * expert * spec.layers * q.linear_bits / 8


def weight_bytes_read_per_step(spec: ModelSpec, q: Quant, batch: int = 1) -> float:
    """Weight bytes a decode step of ``batch`` sequences reads: the weights once, and for a
    MoE every expert some sequence routes to (:func:`experts_touched`)."""
    weights = weight_bytes_read_per_token(spec, q)
    if spec.moe is None or batch <= 1:
        return weights
    return (
        weights
        + routed_expert_bytes_per_step(spec, q, batch)
        - (routed_expert_bytes_per_step(spec, q, 1))
    )


def kv_bytes_per_token(spec: ModelSpec, kv_bytes: float = 2.0) -> float:
    """KV cache of one token over all layers (GQA: KV heads, not attention heads)."""
    if spec.mla_cache_dim is not None:
        return spec.layers * spec.mla_cache_dim * kv_bytes
    layers = spec.hybrid.full_attention_layers if spec.hybrid else spec.layers
    return 2 * layers * spec.kv_heads * spec.head_dim * kv_bytes


def state_bytes_per_sequence(spec: ModelSpec) -> float:
    """Fixed recurrent state of hybrid linear-attention layers (fp32), per sequence."""
    hy = spec.hybrid
    if hy is None:
        return 0.0
    per_layer = hy.linear_value_heads * hy.linear_key_head_dim * hy.linear_value_head_dim
    return float(hy.linear_attention_layers * per_layer * 4)


def prefill_flops(spec: ModelSpec, tokens: int, context_before: int = 0) -> float:
    """FLOPs to prefill ``tokens`` tokens after ``context_before`` cached ones.

    2 FLOPs per active parameter per token for the matrices, plus attention scores and
    weighted sums: 4 × layers × heads × head_dim per (query, key) pair, causal.
    """
    p = parameter_counts(spec)
    matmul = 2.0 * (p.active_linear + (p.lm_head or p.embedding) / max(tokens, 1)) * tokens
    layers = spec.hybrid.full_attention_layers if spec.hybrid else spec.layers
    pairs = tokens * context_before + tokens * (tokens + 1) / 2
    attention = 4.0 * layers * spec.attention_heads * spec.head_dim * pairs
    return matmul + attention


def kv_cache_bytes(spec: ModelSpec, work: Workload) -> float:
    """KV cache (and hybrid recurrent state) of the batch's sequences at full length."""
    tokens = work.input_tokens + work.output_tokens
    per_token = kv_bytes_per_token(spec, work.kv_bytes)
    return work.batch * (per_token * tokens + state_bytes_per_sequence(spec))


def weights_and_kv(spec: ModelSpec, q: Quant, work: Workload) -> float:
    """Weights plus the KV cache of the batch's sequences (bytes)."""
    return weight_bytes(spec, q) + kv_cache_bytes(spec, work)


def mlp_width(spec: ModelSpec) -> int:
    """Width of the MLP activations one token produces (MoE: routed + shared experts)."""
    moe = spec.moe
    if moe is not None:
        return moe.experts_per_token * moe.moe_intermediate_size + (
            moe.shared_expert_intermediate_size or 0
        )
    return spec.intermediate_size or 4 * spec.hidden_size


def memory_terms(spec: ModelSpec, engine: str, work: Workload, devices: int) -> list[float]:
    """The fitted memory terms (bytes per unit coefficient), in ``MEMORY_FEATURES`` order:
    prefill activations (prompt × MLP width, 16-bit), all-position logits (legacy
    transformers only: 6 bytes per prompt position and vocabulary entry), per device."""
    n_in = work.input_tokens * work.batch
    logits = 6.0 * n_in * spec.vocab_size if engine == LEGACY_TRANSFORMERS else 0.0
    return [2.0 * n_in * mlp_width(spec), logits, float(devices) * GIB]
