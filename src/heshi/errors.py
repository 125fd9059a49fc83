"""Typed errors raised by domain code.

Only the HTTP edge (``heshi.gateway.errors``) turns them into OpenAI-style JSON
``{"error": {"message", "type", "param", "code"}}``; the CLI prints them as text.
Every message is given in Chinese and English because operators in China read them.
"""

from __future__ import annotations


class HeshiError(Exception):
    """Base class: carries the HTTP status and OpenAI error type it maps to."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None
    # Why the request ended this way, for metrics and the ledger: a short, bounded name
    # such as "quota.key.rpm" or "auth.missing_key" (never free text).
    reason = "internal_error"

    def __init__(
        self, message: str, *, param: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if reason is not None:
            self.reason = reason


class InvalidRequest(HeshiError):
    """The request is malformed or names an unsupported value (HTTP 400)."""

    reason = "bad_request"

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus requested tokens do not fit the model's context (HTTP 400)."""

    reason = "context_length"

    code = "context_length_exceeded"

    def __init__(self, *, prompt_tokens: int, max_tokens: int | None, context: int) -> None:
        # OpenAI's own wording: the `openai`-compatible clients (litellm's
        # ContextWindowExceededError, LangChain, LlamaIndex) recognise a too-long prompt by it.
        en = f"This model's maximum context length is {context} tokens. However, "
        if max_tokens is None:
            en += f"your messages resulted in {prompt_tokens} tokens. "
            zh = f"提示词有 {prompt_tokens} 个 token，超出模型上下文长度 {context}"
        else:
            en += (
                f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). "
            )
            zh = (
                f"提示词 {prompt_tokens} 个 token 加上 max_tokens {max_tokens}，"
                f"超出模型上下文长度 {context}"
            )
        en += "Please reduce the length of the messages or completion."
        super().__init__(f"{zh} / {en}", param="messages")
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context = context


class ModelNotFound(HeshiError):
    """The requested model is not served here (HTTP 404); the message lists what is."""

    reason = "model_not_found"

    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "(none)"
        super().__init__(
            f"模型 '{model}' 不存在，可用模型：{names} / "
            f"model '{model}' does not exist; available models: {names}",
            param="model",
        )
        self.available = sorted(available)
        self.model = model


class AuthenticationFailed(HeshiError):
    """No API key, or one that is unknown, revoked or expired (HTTP 401)."""

    reason = "auth.invalid_key"

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(HeshiError):
    """A valid key that may not do this: suspended, or a model it is not allowed (HTTP 403)."""

    reason = "key.denied"

    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class QuotaExceeded(HeshiError):
    """A rate limit or token budget would be exceeded (HTTP 429 with Retry-After)."""

    reason = "quota"

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.limit = limit  # e.g. "key.rpm", "tenant.budget_tokens", "key.budget_cny"
        self.reason = f"quota.{limit}"
        self.retry_after = retry_after  # seconds; None = not before an operator acts
        if limit.endswith(("budget_tokens", "budget_cny")):
            self.code = "insufficient_quota"


class AdmissionUnavailable(HeshiError):
    """The shared quota store (Redis) cannot be reached, so limits cannot be checked and
    ``store.redis_outage`` is ``reject`` (HTTP 503 with Retry-After)."""

    reason = "admission_unavailable"

    status_code = 503
    error_type = "server_error"
    code = "admission_unavailable"
    retry_after = 1.0


class CapabilityMissing(InvalidRequest):
    """The model exists but cannot do what was asked, e.g. embeddings (HTTP 400)."""

    reason = "capability_missing"

    code = "capability_missing"


class UpstreamError(HeshiError):
    """A remote backend is down, timed out or answered garbage (HTTP 502)."""

    reason = "upstream_error"

    status_code = 502
    error_type = "upstream_error"
    code = "bad_gateway"


class UpstreamTimeout(UpstreamError):
    """A remote backend did not answer within its timeout (HTTP 504)."""

    reason = "upstream_timeout"

    status_code = 504
    code = "upstream_timeout"


class UpstreamRejected(HeshiError):
    """A remote backend answered 4xx/5xx; its status and message are passed on."""

    reason = "upstream_rejected"

    error_type = "upstream_error"
    code = "upstream_rejected"

    def __init__(self, status_code: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code


class EngineError(HeshiError):
    """The local engine failed while generating (HTTP 500)."""

    reason = "engine_error"


class ModelFileError(HeshiError):
    """A model file is missing, truncated or not a GGUF (startup/CLI error)."""

    code = "model_file_error"


class HubError(HeshiError):
    """A model pull failed: network, size or checksum mismatch, bad reference."""

    code = "hub_error"


class ConfigError(HeshiError):
    """heshi.yaml or a command-line option is invalid."""

    code = "config_error"


class ClientGone(HeshiError):
    """The client closed the connection before its request was read or answered. Nothing
    can be sent back; the status 499 (nginx's "client closed request") is only recorded."""

    status_code = 499
    error_type = "client_closed_request"
    code = "client_closed_request"
    reason = "client_gone"
