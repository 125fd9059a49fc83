"""llama-server's parameters for one embedded model, from its ``engine`` settings, and
the checks of its files that llama.cpp itself would answer badly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heshi.config import LocalEngineConfig
from heshi.errors import ModelFileError
from heshi.hub.gguf_info import read_gguf_info

_POOLING = {"mean": 1, "cls": 2, "last": 3, "rank": 4}
_KV_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0"}


def check_files(cfg: LocalEngineConfig, model_path: Path, draft_path: Path | None) -> None:
    """Refuse, with the setting named, what llama.cpp would fail on with a bare "failed to
    init" or silently ignore: a KV format the heads cannot take, a draft model whose
    tokenizer differs (llama.cpp then never drafts)."""
    if cfg.kv_cache_type == "f16" and cfg.speculative.type != "draft":
        return  # nothing to check: llama.cpp's own load error names a bad file
    info = read_gguf_info(model_path)
    if cfg.kv_cache_type == "q8_0" and info.head_size and info.head_size % 32:
        raise ModelFileError(
            f"kv_cache_type q8_0 需要注意力头维度是 32 的倍数，{model_path.name} 是 "
            f"{info.head_size} / kv_cache_type q8_0 needs a head size divisible by 32; "
            f"{model_path.name} has {info.head_size}: use f16"
        )
    if cfg.speculative.type != "draft" or draft_path is None:
        return  # (no path: server_params refuses it)
    kind, size, bos, eos = info.vocab
    d_kind, d_size, d_bos, d_eos = read_gguf_info(draft_path).vocab
    if (kind, bos, eos) != (d_kind, d_bos, d_eos) or abs((size or 0) - (d_size or 0)) > 128:
        raise ModelFileError(
            f"speculative.draft_model {draft_path.name} 的分词器与 {model_path.name} 不同 / "
            f"speculative.draft_model {draft_path.name} has another tokenizer than "
            f"{model_path.name} ({d_kind}, {d_size} tokens vs {kind}, {size}): llama.cpp "
            "would never draft with it"
        )


def server_params(
    cfg: LocalEngineConfig, model_path: Path, name: str, draft_path: Path | None, key: str
) -> Any:
    """The ``xllamacpp.CommonParams`` that serve ``model_path`` as configured; ``key``
    locks llama-server's own loopback listener."""
    import xllamacpp

    from heshi.logs import json_logs

    params = xllamacpp.CommonParams()
    if json_logs():  # llama.cpp writes its own lines on stderr: none among JSON ones
        params.verbosity = -1
    params.model.path = str(model_path)
    params.model_alias = {name}
    params.n_parallel = cfg.parallel
    # Each slot gets the full per-request context; the KV pool holds all of them.
    params.kv_unified = False
    params.n_ctx = cfg.ctx * cfg.parallel
    # One step of llama.cpp's loop decodes each running stream's next token and up to
    # this many prompt tokens: the step size bounds the pause a long prompt causes.
    # An embedding model pools a whole input in one pass: its step holds 512 at least.
    params.n_batch = params.n_ubatch = max(cfg.batch, 512) if cfg.vectors_only else cfg.batch
    params.cont_batching = True
    params.cache_prompt = cfg.cache_prompt
    params.cache_ram_mib = cfg.prompt_cache_mib
    kv = xllamacpp.ggml_type.__members__[_KV_TYPES[cfg.kv_cache_type]]
    params.cache_type_k = params.cache_type_v = kv
    _speculate(cfg, params, draft_path)
    params.cpuparams.n_threads = cfg.threads or -1
    params.cpuparams_batch.n_threads = cfg.threads or -1
    params.use_jinja = True
    pooling = _pooling(cfg, model_path)
    if pooling is not None:
        params.pooling_type = xllamacpp.llama_pooling_type(pooling)
    # Heshi separates a thinking model's <think> block itself (heshi.engines.reasoning),
    # the same way for every template and for tool-call answers.
    params.reasoning_format = xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
    params.embedding = cfg.vectors_only
    # xllamacpp also opens llama-server's own HTTP listener. Only the engine uses it
    # (its /apply-template and /tokenize count prompt tokens exactly): it is bound to
    # loopback and locked with a random key no one else knows. In-process calls
    # bypass that check.
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [key]
    params.endpoint_metrics = True
    return params


def _speculate(cfg: LocalEngineConfig, params: Any, draft_path: Path | None) -> None:
    """Speculative decoding as configured: prompt lookup or a draft model."""
    import xllamacpp

    spec = cfg.speculative
    if spec.type == "none":
        return
    kinds = xllamacpp.common_speculative_type
    out = params.speculative
    out.draft.n_max, out.draft.n_min = spec.draft_max, spec.draft_min
    if spec.type == "ngram":
        # llama-server's ngram-simple: the latest ngram_size tokens found earlier in the
        # prompt or answer; up to draft_max tokens that followed them are the guess (none
        # when fewer than ngram_size follow)
        out.types = [kinds.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
        out.ngram_simple.size_n, out.ngram_simple.size_m = spec.ngram_size, spec.draft_max
    else:
        if draft_path is None:
            raise ValueError("speculative.type draft needs the draft model's path")
        out.types = [kinds.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        out.draft.mparams.path = str(draft_path)


def _pooling(cfg: LocalEngineConfig, model_path: Path) -> int | None:
    """The pooling type to ask llama.cpp for (None: the GGUF's own). A model loaded
    to embed whose GGUF names none (a chat model) pools by mean: llama.cpp's default
    then, "none", gives no sentence vector at all."""
    if cfg.pooling is not None:
        return _POOLING[cfg.pooling]
    if not cfg.embeddings:
        return None
    info = read_gguf_info(model_path)
    return _POOLING["mean"] if info.pooling_type in (None, 0) else None
