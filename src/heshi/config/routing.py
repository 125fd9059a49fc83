"""Where requests go: remote backends, aliases onto them, routes with fallbacks and the
``auto`` model (``backends``, ``aliases`` and ``routing`` in heshi.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from heshi.config.base import Strict


class BackendConfig(Strict):
    """A remote OpenAI-compatible server (vLLM, SGLang, Ollama, Xinference, DashScope)."""

    base_url: str  # e.g. http://10.0.0.5:8000/v1 — the part before /chat/completions
    api_key_env: str | None = None  # name of the env var holding the key; never the key
    models: list[str] = Field(default_factory=list)  # upstream model names served as-is
    connect_timeout: float = Field(default=5.0, gt=0)  # seconds to open a connection
    timeout: float = Field(default=120.0, gt=0)  # seconds between bytes once connected
    max_connections: int = Field(default=256, ge=1)
    # The model's context window, when known: reservations and the output limit below
    # then never ask for more than the rest of it.
    context: int | None = Field(default=None, ge=1)
    # The most one answer may generate. A request without max_tokens is sent upstream with
    # max_tokens set to this (or the rest of ``context``), and admission reserves exactly
    # that: a backend can never be made to generate more than a budget holds.
    max_output_tokens: int = Field(default=8192, ge=1)
    # Defaults for the chat template, sent with every chat request that does not set them
    # itself: {"enable_thinking": false} turns a Qwen3/3.5 backend's thinking off for a
    # customer-service bot on engines without a server-wide switch (SGLang, LMDeploy)
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("chat_template_kwargs")
    @classmethod
    def _check_template_kwargs(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if len(v) > 16:
            raise ValueError(
                f"chat_template_kwargs 至多 16 项（现有 {len(v)}）/ "
                f"at most 16 keys ({len(v)} given)"
            )
        for key, value in v.items():
            if not isinstance(value, bool | int | float | str):
                raise ValueError(
                    f"chat_template_kwargs.{key} 须为 true/false、数字或字符串 / must be true, "
                    f"false, a number or a string, not {type(value).__name__}"
                )
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                raise ValueError(
                    f"chat_template_kwargs.{key}: 写 {value.strip().lower()}，不要加引号 / write "
                    f'{value.strip().lower()} without quotes: the string "{value}" is true to a '
                    "template"
                )
        return v

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


class AliasConfig(Strict):
    """A public model name mapped onto a backend's upstream model."""

    backend: str  # a key of ``backends`` or "local"
    model: str  # the upstream model name sent to that backend


class RouteTarget(Strict):
    """One backend model that can answer for a route."""

    backend: str  # a key of ``backends`` or "local"
    model: str  # the upstream model name
    weight: float = Field(default=1.0, gt=0)  # share of traffic under "weighted"


class RouteConfig(Strict):
    """A public model name served by one or more targets, with fallbacks."""

    targets: list[RouteTarget] = Field(min_length=1)
    balance: Literal["weighted", "least-busy"] = "least-busy"
    fallback: list[str] = Field(default_factory=list)  # other public names, tried in order


class AutoRouteConfig(Strict):
    """The ``auto`` model: pick a small or a large tier by a complexity score."""

    small: str  # public model name for simple requests
    large: str  # public model name for hard ones
    long_prompt_chars: int = Field(default=2000, ge=1)  # this long counts toward "large"
    deep_conversation_turns: int = Field(default=6, ge=1)  # this many user turns, too
    cues: list[str] | None = None  # reasoning/math/code cue words; None = built-in list
    threshold: int = Field(default=2, ge=1)  # score at or above which "large" is chosen


class RoutingConfig(Strict):
    """Retries, circuit breakers, health checks and routes."""

    retries: int = Field(default=2, ge=0)  # extra attempts on connect errors / 5xx before 1st byte
    backoff_seconds: float = Field(default=0.1, ge=0)  # first retry delay, doubled each time
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open a breaker
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)  # before a half-open probe
    health_interval_seconds: float = Field(default=10.0, gt=0)  # background /models probes
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    auto: AutoRouteConfig | None = None
