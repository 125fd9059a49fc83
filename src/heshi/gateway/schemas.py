"""Request models for the OpenAI endpoints we serve.

Fields follow the OpenAI reference order; llama.cpp sampling extensions sit in a marked
block. Unknown fields are rejected (a silently ignored parameter is a bug report later),
and parameters we cannot honour (``n > 1`` …) get a clear 400.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heshi.errors import InvalidRequest

_T = TypeVar("_T", bound=BaseModel)


class _Request(BaseModel):
    # strict: "stream": "yes" or "max_tokens": "5" are client bugs, not values to coerce
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Request):
    include_usage: bool = False


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None
    # llama.cpp also accepts a bare "schema" with json_object
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts_have_type(cls, v: Any) -> Any:
        if isinstance(v, list):
            for part in v:
                if "type" not in part:
                    raise ValueError("each content part needs a 'type'")
        return v


class _Sampling(_Request):
    """Parameters shared by chat and text completions."""

    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    user: str | None = Field(default=None, max_length=256)
    # --- llama.cpp extensions (not in OpenAI's API) ---
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0)
    grammar: str | None = None
    cache_prompt: bool | None = None  # false: do not reuse a cached prompt prefix

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int | None) -> int | None:
        if v is not None and v != 1:
            raise ValueError("only n=1 is supported; send several requests instead")
        return v

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 16:
            raise ValueError("at most 16 stop sequences")
        return v


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(min_length=1, max_length=128)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    # --- vLLM / SGLang / llama.cpp extension: e.g. {"enable_thinking": false} for Qwen3 ---
    chat_template_kwargs: dict[str, Any] | None = None
    # --- Heshi: a knowledge-base conversation the store keeps (kb:NAME models only) ---
    session_id: str | None = Field(default=None, min_length=1, max_length=64)


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    model: str = Field(min_length=1, max_length=128)
    prompt: str | list[str] | list[int]
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: str | list[str] | list[int]) -> str | list[str] | list[int]:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and len(v) > 1 and isinstance(v[0], str):
            # each prompt would be answered in full: one reservation cannot cover them
            raise ValueError("one prompt per request; send several requests instead")
        return v


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings``."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str = Field(min_length=1, max_length=128)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)


class RerankDocument(_Request):
    text: str


class RerankRequest(_Request):
    """``POST /v1/rerank`` (Jina's and Cohere's shape)."""

    model: str = Field(min_length=1, max_length=128)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=1000)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool | None = None
    user: str | None = Field(default=None, max_length=256)


def parse_request(model: type[_T], data: Any) -> _T:
    """Validate a decoded JSON body; raise ``InvalidRequest`` naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidRequest("请求体必须是 JSON 对象 / the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    field = _field_path(err["loc"])
    if err["type"] == "extra_forbidden":
        return InvalidRequest(
            f"不支持的参数 '{field}' / unsupported parameter '{field}'", param=field
        )
    if err["type"] == "missing":
        return InvalidRequest(f"缺少必填字段 '{field}' / '{field}' is required", param=field)
    msg = err["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"字段 '{field}' 无效 / invalid '{field}': {msg}", param=field)


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    # pydantic appends union-member tags ("str", "list[dict[str,any]]") to the location;
    # the user only cares about the field they sent.
    parts: list[str] = []
    for p in loc:
        text = str(p)
        if text in _UNION_TAGS or "[" in text:
            break
        parts.append(text)
    return ".".join(parts) or None
