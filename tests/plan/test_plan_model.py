"""The planner's memory and speed model against facts that do not depend on a fit."""

from __future__ import annotations

import pytest

from heshi import catalog
from heshi.catalog import UnknownName
from heshi.errors import InvalidRequest
from heshi.plan.fit import load_rows
from heshi.plan.memory import GIB, kv_bytes_per_token, parameter_counts, weight_bytes
from heshi.plan.predict import predict
from heshi.plan.quant import quant
from heshi.plan.speed import Workload

# Official parameter counts (billions) from the model cards cited in models.json.
OFFICIAL = {
    "Qwen/Qwen2.5-0.5B-Instruct": (0.49, 0.36),
    "Qwen/Qwen2.5-7B-Instruct": (7.61, 6.53),
    "Qwen/Qwen2.5-72B-Instruct": (72.7, 70.0),
    "Qwen/Qwen3-8B": (8.2, None),
    "Qwen/Qwen3-32B": (32.8, 31.2),
    "Qwen/Qwen3-30B-A3B": (30.5, 29.9),
    "Qwen/Qwen3-235B-A22B": (235.0, 234.0),
}


@pytest.mark.parametrize("model_id", sorted(OFFICIAL))
def test_parameter_counts_from_the_architecture_match_the_model_cards(model_id: str) -> None:
    total, non_embedding = OFFICIAL[model_id]
    p = parameter_counts(catalog.model(model_id))
    assert p.total / 1e9 == pytest.approx(total, rel=0.015)
    if non_embedding is not None:
        assert (p.total - p.embedding - p.lm_head) / 1e9 == pytest.approx(non_embedding, rel=0.015)


def test_moe_reads_only_the_active_experts_per_token() -> None:
    p = parameter_counts(catalog.model("Qwen/Qwen3-30B-A3B"))
    active = p.active_linear + p.embedding + p.lm_head
    assert active / 1e9 == pytest.approx(3.3, rel=0.03)  # "3.3B activated" (model card)


def test_kv_cache_uses_key_value_heads_not_attention_heads() -> None:
    spec = catalog.model("Qwen/Qwen2.5-7B-Instruct")  # 28 query heads, 4 KV heads
    assert kv_bytes_per_token(spec) == 2 * 28 * 4 * 128 * 2  # 56 KiB, not 7x that
    assert kv_bytes_per_token(spec, kv_bytes=1) == 2 * 28 * 4 * 128  # fp8 KV cache


def test_hybrid_models_keep_kv_only_in_full_attention_layers() -> None:
    spec = catalog.model("Qwen/Qwen3.5-27B")
    assert spec.hybrid is not None
    full = spec.hybrid.full_attention_layers
    assert full < spec.layers
    assert kv_bytes_per_token(spec) == 2 * full * spec.kv_heads * spec.head_dim * 2


def test_quantized_weights_keep_embeddings_in_16_bit() -> None:
    spec = catalog.model("Qwen/Qwen2.5-7B-Instruct")
    bf16 = weight_bytes(spec, quant("BF16")) / GIB
    int4 = weight_bytes(spec, quant("gptq-int4")) / GIB
    p = parameter_counts(spec)
    assert bf16 == pytest.approx(p.total * 2 / GIB)
    # 6.53 B block weights at 4 bits + scales and zeros, 1.09 B embedding/head at 16 bits.
    assert int4 == pytest.approx((p.linear * (4 + 20 / 128) / 8 + (p.total - p.linear) * 2) / GIB)
    assert 5.0 < int4 < 5.4  # Qwen's table: 5.52 GB peak at a 1-token prompt


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("awq", "AWQ"),
        ("AWQ-INT4", "AWQ"),
        ("gptq-int8", "GPTQ-Int8"),
        ("q4_k_m", "Q4_K_M"),
        ("bf16", "BF16"),
        ("Fp8", "FP8"),
    ],
)
def test_quantization_names_are_case_insensitive(typed: str, canonical: str) -> None:
    assert quant(typed).name == canonical


def test_unknown_names_suggest_the_nearest() -> None:
    with pytest.raises(UnknownName, match="Qwen/Qwen3-8B"):
        catalog.model("Qwen/Qwen3-8")
    with pytest.raises(UnknownName, match="nvidia-v100-32gb"):
        catalog.hardware("2x nvidia-v100-32")
    with pytest.raises(InvalidRequest, match="unknown quantization"):
        quant("int3")


def test_names_people_type_resolve() -> None:
    assert catalog.model("qwen2.5-7b-instruct").id == "Qwen/Qwen2.5-7B-Instruct"
    hw = catalog.hardware("2× NVIDIA A100 80GB")
    assert (hw.count, hw.device.id) == (2, "nvidia-a100-80gb")


def test_every_catalog_entry_has_a_source_and_a_slug_id() -> None:
    for spec in catalog.models().values():
        assert spec.source_url, spec.id
    for device in catalog.accelerators().values():
        assert device.id == device.id.lower() and " " not in device.id
        assert device.source_url, device.id


def test_a_model_too_big_for_the_devices_does_not_fit_and_says_why() -> None:
    result = predict(
        catalog.model("Qwen/Qwen2.5-72B-Instruct"),
        quant("BF16"),
        "vllm",
        catalog.hardware("1x nvidia-a100-80gb"),
        Workload(1024, 256),
    )
    assert not result.fits
    assert any("per device" in note for note in result.notes)
    two = predict(
        catalog.model("Qwen/Qwen2.5-72B-Instruct"),
        quant("BF16"),
        "vllm",
        catalog.hardware("2x nvidia-a100-80gb"),
        Workload(1024, 256),
    )
    assert two.fits  # tensor parallel halves the weights per device


def test_kernels_old_gpus_lack_are_reasons_not_to_fit() -> None:
    result = predict(
        catalog.model("Qwen/Qwen2.5-7B-Instruct"),
        quant("AWQ"),
        "vllm",
        catalog.hardware("1x nvidia-v100-32gb"),
        Workload(1024, 256),
    )
    assert not result.fits
    assert any("sm75" in note for note in result.notes)
    bf16 = predict(
        catalog.model("Qwen/Qwen2.5-7B-Instruct"),
        quant("BF16"),
        "vllm",
        catalog.hardware("1x nvidia-v100-32gb"),
        Workload(1024, 256),
    )
    assert any("fp16" in note for note in bf16.notes)


def test_more_bandwidth_decodes_faster_and_longer_prompts_take_longer() -> None:
    spec, q = catalog.model("Qwen/Qwen3-8B"), quant("BF16")
    slow = predict(spec, q, "vllm", catalog.hardware("nvidia-a100-80gb"), Workload(1, 512))
    fast = predict(spec, q, "vllm", catalog.hardware("nvidia-h20-96gb"), Workload(1, 512))
    assert fast.decode_seconds < slow.decode_seconds
    longer = predict(spec, q, "vllm", catalog.hardware("nvidia-a100-80gb"), Workload(8192, 512))
    assert longer.prefill_seconds > slow.prefill_seconds
    assert longer.decode_seconds > slow.decode_seconds  # attention reads a longer cache


def test_every_published_row_resolves_and_is_predicted() -> None:
    rows = load_rows()
    assert len(rows) == 422
    for row in rows:
        result = predict(row.spec, row.q, row.engine, row.hw, row.work).as_json()
        assert result["generation_tokens_per_s"] > 0


def test_latent_attention_caches_the_compressed_latent() -> None:
    spec = catalog.model("deepseek-ai/DeepSeek-V3")
    assert kv_bytes_per_token(spec) == 61 * (512 + 64) * 2  # kv_lora_rank + rope dims


def test_llamacpp_splits_layers_so_a_second_gpu_adds_memory_not_decode_speed() -> None:
    spec, q = catalog.model("Qwen/Qwen2.5-7B-Instruct"), quant("Q4_K_M")
    work = Workload(500, 200)
    one = predict(spec, q, "llamacpp", catalog.hardware("1x nvidia-a10-24gb"), work).as_json()
    two = predict(spec, q, "llamacpp", catalog.hardware("2x nvidia-a10-24gb"), work).as_json()
    assert two["decode_tokens_per_s"] <= one["decode_tokens_per_s"]
    assert two["required_memory_gb"] < one["required_memory_gb"]  # the layers are shared out


def test_a_batch_of_moe_sequences_reads_more_experts_than_one() -> None:
    """32 streams of a 128-expert, top-8 MoE touch nearly every expert in each layer, so
    the step reads close to all the weights; a dense model's step reads the same bytes."""
    moe, dense = catalog.model("Qwen/Qwen3-30B-A3B"), catalog.model("Qwen/Qwen3-32B")
    q = quant("Q4_K_M")
    from heshi.plan.memory import weight_bytes_read_per_step

    assert weight_bytes_read_per_step(moe, q, 32) > 5 * weight_bytes_read_per_step(moe, q, 1)
    assert weight_bytes_read_per_step(moe, q, 32) < weight_bytes(moe, q)
    assert weight_bytes_read_per_step(dense, q, 32) == weight_bytes_read_per_step(dense, q, 1)
    hw = catalog.hardware("1x nvidia-l40s-48gb")
    one = predict(moe, q, "llamacpp", hw, Workload(500, 100, 1)).as_json()
    many = predict(moe, q, "llamacpp", hw, Workload(500, 100, 32)).as_json()
    assert many["decode_tokens_per_s"] / 32 < one["decode_tokens_per_s"] / 3
