"""One pydantic model of ``heshi.yaml``. Every default lives here or in its section's
module (``engine``, ``routing``, ``compliance``, ``docs``), with its reason.

Load with :func:`load_config`; command-line flags are applied on top by the CLI with
:meth:`HeshiConfig.with_overrides`. Environment: ``HESHI_HOME`` sets ``home``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from heshi.config.base import ModelName, Strict
from heshi.config.compliance import AigcConfig as AigcConfig
from heshi.config.compliance import GuardConfig as GuardConfig
from heshi.config.compliance import GuardModelConfig as GuardModelConfig
from heshi.config.compliance import SuspensionConfig as SuspensionConfig
from heshi.config.docs import DocsConfig as DocsConfig
from heshi.config.engine import DEFAULT_MODEL_NAME as DEFAULT_MODEL_NAME
from heshi.config.engine import DEFAULT_MODEL_REF as DEFAULT_MODEL_REF
from heshi.config.engine import DEFAULT_TOOL_INSTRUCTIONS as DEFAULT_TOOL_INSTRUCTIONS
from heshi.config.engine import EmbedderConfig as EmbedderConfig
from heshi.config.engine import LocalEngineConfig as LocalEngineConfig
from heshi.config.pricing import PricingConfig as PricingConfig
from heshi.config.routing import AliasConfig as AliasConfig
from heshi.config.routing import AutoRouteConfig as AutoRouteConfig
from heshi.config.routing import BackendConfig as BackendConfig
from heshi.config.routing import RouteConfig as RouteConfig
from heshi.config.routing import RouteTarget as RouteTarget
from heshi.config.routing import RoutingConfig as RoutingConfig
from heshi.errors import ConfigError


def default_home() -> Path:
    """``$HESHI_HOME`` or ``~/.cache/heshi``: where pulled models are cached."""
    env = os.environ.get("HESHI_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "heshi"


class ServerConfig(Strict):
    """Where the gateway listens."""

    host: str = "127.0.0.1"  # loopback by default: exposing it is a deliberate choice
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)  # 8 MiB: long documents fit
    # Name of the env var holding the admin token: /metrics and /healthz's details need
    # "Authorization: Bearer <token>". Unset variable = those stay closed.
    admin_token_env: str = "HESHI_ADMIN_TOKEN"
    # Connections (docs/serving.md): the request line and headers must arrive within
    # header_timeout_seconds; a body may pause at most body_timeout_seconds; an idle
    # kept-alive connection closes after keep_alive_seconds. Past max_connections the
    # longest-idle connection is closed for a new one (None: 3/4 of the open-file limit).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # A client that stops reading what it is sent (a stream it never consumes) for this
    # long is disconnected: it must not hold a backend connection and a reservation.
    write_timeout_seconds: float = Field(default=30.0, gt=0)
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    shutdown_grace_seconds: float = Field(default=5.0, gt=0)  # in-flight requests' time on SIGTERM
    max_connections: int | None = Field(default=None, ge=1)
    # stderr's log lines: "text", or "json" (one object a line: ts, level, logger, msg,
    # request_id, trace_id, …) for a log collector; ``heshi serve --log-format`` wins
    log_format: Literal["text", "json"] = "text"


class StoreConfig(Strict):
    """Where state lives: keys, usage ledger (SQL) and shared counters (Redis)."""

    url: str | None = None  # SQLAlchemy URL; None = sqlite file heshi.db under ``home``
    redis_url: str | None = None  # set when several gateway replicas share quotas
    # Or the name of an environment variable holding that URL (with its password), so a
    # Kubernetes Secret or Docker secret provides it and heshi.yaml holds no credentials.
    url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    redis_url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Namespace of Heshi's Redis keys (``<prefix>:quota:…``); for Redis Cluster use a hash
    # tag such as "{heshi}" so one admission script's keys share a slot.
    redis_prefix: str = Field(default="heshi", pattern=r"^[!-~]{1,64}$")
    # While Redis is unreachable: "reject" limited requests with 503 (no limit or budget
    # can be overrun), or "allow" them unchecked (served and metered, limits not enforced).
    redis_outage: Literal["reject", "allow"] = "reject"
    ledger_retention_days: int = Field(default=90, ge=1)  # older usage rows are pruned
    ledger_flush_seconds: float = Field(default=0.2, gt=0)  # batch window for ledger writes
    ledger_batch_rows: int = Field(default=500, ge=1)  # rows per INSERT batch
    ledger_buffer_rows: int = Field(default=200_000, ge=1)  # held in memory while the DB is down
    # Usage rows waiting longer than this mark the ledger unhealthy (/healthz, /readyz):
    # a frozen database fails no statement at first, it just stops taking rows.
    ledger_stall_seconds: float = Field(default=5.0, gt=0)
    # Longest a statement may run on PostgreSQL (statement_timeout), and how long it may
    # wait for a lock (lock_timeout): a hung database fails calls instead of holding them.
    statement_timeout_seconds: float = Field(default=15.0, gt=0)
    key_refresh_seconds: float = Field(default=5.0, gt=0)  # key cache reload period

    @model_validator(mode="after")
    def _one_source_each(self) -> StoreConfig:
        for plain, env in (("url", "url_env"), ("redis_url", "redis_url_env")):
            if getattr(self, plain) is not None and getattr(self, env) is not None:
                raise ValueError(
                    f"store.{plain} 与 store.{env} 只能设一个 / set store.{plain} or "
                    f"store.{env}, not both"
                )
        return self

    def sql_url(self, home: Path) -> str:
        """The effective SQLAlchemy URL (``url_env`` read now; ConfigError when unset)."""
        if self.url_env is not None:
            return _from_env(self.url_env, "store.url_env")
        return self.url or home_database_url(home)

    def redis_address(self) -> str | None:
        """The Redis URL, from ``redis_url`` or the variable ``redis_url_env`` names
        (ConfigError when that is unset); None: no Redis (quotas in this process)."""
        if self.redis_url_env is not None:
            return _from_env(self.redis_url_env, "store.redis_url_env")
        return self.redis_url


def home_database_url(home: Path) -> str:
    """The default store: ``heshi.db`` in the home."""
    return f"sqlite:///{home / 'heshi.db'}"


def _from_env(name: str, field: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"{field} 指定的环境变量 {name} 未设置 / environment variable {name} "
            f"({field}) is not set"
        )
    return value


class AuthConfig(Strict):
    """API-key authentication on ``/v1``."""

    # Keys are required as soon as one exists; ``open: true`` (``heshi serve --open``)
    # is the explicit single-user mode that ignores them.
    open: bool = False


class TenantConfig(Strict):
    """Limits shared by all keys of one tenant (each key may have its own, too)."""

    rpm: int | None = Field(default=None, ge=1)  # requests per minute
    tpm: int | None = Field(default=None, ge=1)  # tokens (prompt + completion) per minute
    budget_tokens: int | None = Field(default=None, ge=0)  # lifetime token budget
    # lifetime spend budget in yuan, at the ``pricing`` table's prices
    budget_cny: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    # Overrides of the top-level ``guard`` section for this tenant's keys (partial).
    guard: dict[str, Any] | None = None


DOUBT_LIMITS = {"quote": 0.28, "generate": 0.45}  # kb.max_doubt's defaults (docs/benchmarks.md)


class KnowledgeConfig(Strict):
    """Knowledge-base bots (``kb:NAME`` models, ``heshi kb ask``); values measured on
    benchmarks/kb.py (docs/benchmarks.md)."""

    enabled: bool = True  # serve every knowledge base in the store as a model kb:NAME
    # the model that writes answers (a public model name); None: the embedded chat model
    model: ModelName | None = None
    chunks: int = Field(default=3, ge=1, le=10)  # chunks the model reads per answer
    dense_weight: float = Field(default=0.6, ge=0.0, le=1.0)  # vector share of the mix
    # below this e5 similarity of the best chunk the base holds no answer: declined
    # without asking the model
    min_similarity: float = Field(default=0.80, ge=0.0, le=1.0)
    # before answering, the model is asked whether what it was shown (the sentences to be
    # quoted, or the chunks) states the answer; at this probability of "no" or more the bot
    # declines (1.0: never asked; None: the value measured for the answer style —
    # DOUBT_LIMITS, chosen on benchmarks/kb.py by cross-validation)
    max_doubt: float | None = Field(default=None, ge=0.0, le=1.0)
    # a sentence of the answer is kept only when this share of its words occurs in the
    # chunks the model read (and every figure does)
    min_word_support: float = Field(default=0.5, ge=0.0, le=1.0)
    max_answer_tokens: int = Field(default=256, ge=16, le=4096)
    # "quote": the answer is the sources' own sentences closest to the question (never
    # anything the sources do not say); "generate": the model writes it, then the figures
    # and words are checked — measured on benchmarks/kb.py (docs/benchmarks.md)
    answer_style: Literal["quote", "generate"] = "quote"
    quote_sentences: int = Field(default=4, ge=1, le=10)
    history_turns: int = Field(default=3, ge=0, le=20)  # earlier turns the model sees
    handoff_webhook: str | None = None  # POSTed a JSON record of every handoff
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @property
    def doubt_limit(self) -> float:
        """``max_doubt``, or the measured default for the answer style."""
        return DOUBT_LIMITS[self.answer_style] if self.max_doubt is None else self.max_doubt


class TracingConfig(Strict):
    """OpenTelemetry traces of each request (docs/serving.md, "Tracing"); off by default."""

    enabled: bool = False
    # OTLP over HTTP: a collector (OpenTelemetry Collector, Jaeger, Tempo) on this URL
    endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", max_length=2000)
    service_name: str = Field(default="heshi", min_length=1, max_length=100)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)  # of traces a client did not start
    export_timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_queue_spans: int = Field(default=8192, ge=64, le=1_000_000)  # beyond: dropped
    export_batch_spans: int = Field(default=64, ge=1, le=8192)
    export_interval_ms: int = Field(default=200, ge=10, le=60_000)

    @field_validator("endpoint")
    @classmethod
    def _strip_endpoint(cls, v: str) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _check_endpoint(self) -> TracingConfig:
        """The endpoint (used only when tracing is on) is an http(s) URL without
        credentials: a collector's token goes in ``OTEL_EXPORTER_OTLP_HEADERS``."""
        if not self.enabled:
            return self
        url = urlsplit(self.endpoint)
        if url.scheme.lower() not in ("http", "https") or not url.hostname:
            raise ValueError(
                "tracing.endpoint 须是 http:// 或 https:// 地址 / must be an http:// or https:// "
                "URL, e.g. http://127.0.0.1:4318/v1/traces"
            )
        if url.username is not None or url.password is not None:
            raise ValueError(
                "tracing.endpoint 不能含用户名密码，请用 OTEL_EXPORTER_OTLP_HEADERS 传令牌 / must "
                "not hold credentials: put a collector's token in OTEL_EXPORTER_OTLP_HEADERS"
            )
        try:
            url.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(f"tracing.endpoint: {exc}") from None
        return self


class HeshiConfig(Strict):
    """The whole of ``heshi.yaml``."""

    home: Path = Field(default_factory=default_home)
    server: ServerConfig = Field(default_factory=ServerConfig)
    engine: LocalEngineConfig = Field(default_factory=LocalEngineConfig)
    # more local models served beside ``engine`` (each its own slots and context), e.g. an
    # embedding model; ``heshi models load`` adds more while the gateway runs
    models: list[LocalEngineConfig] = Field(default_factory=list)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    aliases: dict[str, AliasConfig] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    aigc: AigcConfig = Field(default_factory=AigcConfig)
    kb: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    docs: DocsConfig = Field(default_factory=DocsConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @model_validator(mode="after")
    def _check_local_models(self) -> HeshiConfig:
        seen = {self.engine.name} if self.engine.enabled else set()
        if self.embedder.enabled:
            if self.embedder.name in seen:
                raise ValueError(
                    f"embedder.name: {self.embedder.name} 与 engine.name 重复 / is also engine.name"
                )
            seen.add(self.embedder.name)
        for i, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(
                    f"models[{i}].name: 模型名 {model.name} 重复 / two local models are named "
                    f"{model.name} (give each its own name:)"
                )
            seen.add(model.name)
        return self

    def local_models(self) -> list[LocalEngineConfig]:
        """Every local model to load at start: ``engine`` (when enabled), then ``models``."""
        first = [self.engine] if self.engine.enabled else []
        return first + [m for m in self.models if m.enabled]

    @model_validator(mode="after")
    def _check_tenant_guards(self) -> HeshiConfig:
        for name, tenant in self.tenants.items():
            if tenant.guard:
                try:
                    GuardConfig.model_validate(_deep_merge(self.guard.model_dump(), tenant.guard))
                except ValidationError as exc:
                    raise ValueError(f"tenants.{name}.guard: 配置无效 / invalid: {exc}") from exc
        return self

    def guard_for(self, tenant: str | None) -> GuardConfig:
        """The guard settings of ``tenant``: the top-level section with its overrides."""
        overrides = self.tenants[tenant].guard if tenant in self.tenants else None
        if not overrides:
            return self.guard
        try:
            return GuardConfig.model_validate(_deep_merge(self.guard.model_dump(), overrides))
        except ValidationError as exc:
            raise ConfigError(f"tenants.{tenant}.guard: 配置无效 / invalid: {exc}") from exc

    def with_overrides(self, **changes: Any) -> HeshiConfig:
        """Return a copy with dotted keys replaced, e.g. ``{"engine.ctx": 8192}``.

        ``None`` values are ignored so unset CLI flags keep the file's value.
        """
        data = self.model_dump()
        for dotted, value in changes.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            node[leaf] = value
        try:
            return HeshiConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "配置无效 / invalid configuration: " + "; ".join(parts)


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key, nested sections merged too."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | None) -> HeshiConfig:
    """Read ``heshi.yaml`` (or defaults when ``path`` is None). Raises ``ConfigError``."""
    if path is None:
        return HeshiConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"配置文件不存在 / config file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"配置文件是个目录 / the config file is a directory: {path}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"配置文件不是 UTF-8 文本 / {path} is not UTF-8 text (byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"无法读取配置文件 / cannot read the config file {path}: "
                          f"{exc.strerror}") from exc  # fmt: skip
    except yaml.YAMLError as exc:
        raise ConfigError(f"配置文件不是合法 YAML / {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"配置文件顶层必须是映射 / {path}: top level must be a mapping")
    try:
        return HeshiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
