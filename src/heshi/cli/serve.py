"""``heshi serve``: run the gateway."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from heshi.cli.banner import banner
from heshi.cli.reporting import reporting_errors
from heshi.config import HeshiConfig, load_config
from heshi.engines.base import Engine
from heshi.errors import ConfigError, HeshiError
from heshi.gateway.server import GatewayServer, server_config
from heshi.logs import LogFormat, configure_logging

err_console = Console(stderr=True)
log = logging.getLogger("heshi.serve")


class LogFormatOption(StrEnum):
    """``--log-format``: what the log lines on stderr look like."""

    text = "text"
    json = "json"


def build_engines(config: HeshiConfig) -> dict[str, Engine]:
    """The engines ``config`` asks for: the local llama.cpp one and each remote backend."""
    from heshi.engines.embedder import E5Embedder
    from heshi.engines.llamacpp import LlamaCppEngine
    from heshi.engines.local import LocalModels
    from heshi.engines.openai_http import OpenAIHTTPEngine
    from heshi.hub.store import ModelStore

    engines: dict[str, Engine] = {}
    local = config.local_models()
    if local or (config.embedder.enabled and config.engine.enabled):
        # resolve() refuses a missing, non-GGUF or unpulled model with a clear message
        store = ModelStore(config.home)
        models: dict[str, Any] = {m.name: LlamaCppEngine.from_store(store, m) for m in local}
        if config.embedder.enabled and config.engine.enabled:
            models[config.embedder.name] = E5Embedder(config.embedder)
        engines["local"] = LocalModels(models)
    for name, backend in config.backends.items():
        engines[name] = OpenAIHTTPEngine(name, backend)
    return engines


def serve(
    config_path: Annotated[
        Path | None, typer.Option("--config", "-c", help="heshi.yaml / 配置文件")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model ref for the local engine / 本地模型 (path, hf:, …)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Public model name / 对外模型名")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address / 监听地址")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port / 端口")] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Parallel slots (continuous batching) / 并发槽位")
    ] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per request / 上下文")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads / CPU 线程数")] = None,
    kv_cache: Annotated[
        str | None,
        typer.Option("--kv-cache", help="f16 | q8_0: KV cache format / KV 缓存格式"),
    ] = None,
    no_thinking: Annotated[
        bool,
        typer.Option(
            "--no-thinking",
            help="Thinking models answer without thinking unless a request asks "
            "(engine.thinking: false) / 思考模型默认不思考",
        ),
    ] = False,
    open_mode: Annotated[
        bool,
        typer.Option(
            "--open", help="Single-user mode: no API keys required / 单用户模式，不校验密钥"
        ),
    ] = False,
    no_local: Annotated[
        bool, typer.Option("--no-local", help="Serve remote backends only / 不启动本地引擎")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug|info|warning")] = "info",
    log_format: Annotated[
        LogFormatOption | None,
        typer.Option(
            "--log-format",
            help="Log lines: text, or one JSON object a line (server.log_format) / "
            "日志格式：文本，或每行一个 JSON 对象",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible gateway. / 启动 OpenAI 兼容网关。"""
    fmt: LogFormat = "json" if log_format is LogFormatOption.json else "text"
    configure_logging(log_level, fmt)
    from heshi.gateway.app import create_app

    with _reporting(fmt):
        config = load_config(config_path).with_overrides(
            **{
                "engine.model": model,
                "engine.name": name or (_name_from_ref(model) if model else None),
                "engine.parallel": parallel,
                "engine.ctx": ctx,
                "engine.threads": threads,
                "engine.kv_cache_type": kv_cache,
                "engine.thinking": False if no_thinking else None,
                "engine.enabled": False if no_local else None,
                "auth.open": True if open_mode else None,
                "server.host": host,
                "server.port": port,
                "server.log_format": log_format.value if log_format else None,
            }
        )
    if config.server.log_format != fmt:  # asked for by heshi.yaml
        fmt = config.server.log_format
        configure_logging(log_level, fmt)
    if no_thinking and not config.engine.enabled:
        _say(
            fmt,
            "--no-thinking 只作用于内置引擎；远程后端请在 heshi.yaml 设置 chat_template_kwargs / "
            "--no-thinking applies to the embedded engine; for a remote backend set "
            "chat_template_kwargs: {enable_thinking: false} on it in heshi.yaml",
        )
    with _reporting(fmt):
        # Everything that can be wrong with the configuration is found before the model
        # loads (seconds to minutes): API-key variables, the port, the model file, model
        # names and routes, lexicons, labels.
        check_environment(config)
        sock = bind_listener(config.server.host, config.server.port)
        engines = build_engines(config)
        app = create_app(config, engines)
        _preload_local(engines, spinner=fmt == "text")
    _tune_gc()

    def announce() -> None:
        for line in banner(config, app):
            _say(fmt, line)

    options: dict[str, Any] = {
        "log_level": log_level,
        "loop": "auto",
        # requests in flight at SIGTERM get this long, then are cut (a rollout, a drain)
        "timeout_graceful_shutdown": config.server.shutdown_grace_seconds,
    }
    if fmt == "json":  # uvicorn's loggers keep writing through our handler
        options["log_config"] = None
    server = GatewayServer(server_config(app, config.server, **options), on_started=announce)
    server.run(sockets=[sock])
    if not server.started:
        _say(fmt, "网关未能启动 / the gateway failed to start (see the log above)", error=True)
        raise typer.Exit(1)


@contextmanager
def _reporting(fmt: str) -> Iterator[None]:
    """A HeshiError as one red line (text) or one ERROR log line (json); exit status 1."""
    if fmt == "text":
        with reporting_errors():
            yield
        return
    try:
        yield
    except HeshiError as exc:
        log.error("%s", exc.message)
        raise typer.Exit(1) from exc


def _say(fmt: str, line: str, *, error: bool = False) -> None:
    """A line for the operator: printed as it is (text), or a log line (json) — written
    whatever ``--log-level`` says, as the printed one would be."""
    if fmt == "text":
        style = "red" if error else None
        err_console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        return
    level = logging.ERROR if error else logging.INFO
    # handled directly: a logger's level check would drop it under --log-level warning
    log.handle(log.makeRecord(log.name, level, __file__, 0, "%s", (line.strip(),), None))


def check_environment(config: HeshiConfig) -> None:
    """Every environment variable the configuration names is set (``ConfigError``)."""
    from heshi.engines.openai_http import OpenAIHTTPEngine

    for name, backend in config.backends.items():
        OpenAIHTTPEngine(name, backend).api_key()
    config.store.sql_url(config.home)
    config.store.redis_address()


def bind_listener(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound now: a port already in use is one clear line
    (``ConfigError``) before anything is loaded, not a traceback from the server later."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"无法解析监听地址 {host} / cannot resolve the listen address {host}: {exc}"
        ) from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"无法监听 {host}:{port}（{exc.strerror}）：端口可能已被占用，可用 --port 换一个 / "
            f"cannot listen on {host}:{port} ({exc.strerror}): is another server using the "
            "port? choose another with --port"
        ) from exc
    sock.set_inheritable(True)
    return sock


def _preload_local(engines: dict[str, Engine], *, spinner: bool = True) -> None:
    # Load the model before the server starts, so a broken file is one clear line and
    # exit code 1 rather than a traceback from inside uvicorn's startup.
    local = engines.get("local")
    if local is None:
        return
    if not spinner:  # JSON logs: a line, not a terminal animation
        log.info("加载模型 / loading models …")
        asyncio.run(local.start())
        return
    with err_console.status("加载模型 / loading models …"):
        asyncio.run(local.start())


def _tune_gc() -> None:
    # Measured under load (benchmarks/gateway_overhead.py): CPython's cyclic collector
    # paused the gateway for 80-110 ms at a time, which set its p99. Everything loaded
    # at startup is long-lived, so freeze it out of the collector's view, and collect the
    # young generation less often; request objects are freed by reference counting.
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 50_000), gen1, gen2)


def _name_from_ref(ref: str) -> str:
    from heshi.hub.names import lookup

    short = lookup(ref)
    if short is not None:  # a catalog name names itself: qwen2.5:7b, as the user wrote it
        return short.model.short if short.is_default else short.name
    stem = ref.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return stem.removesuffix(".gguf").lower() or "local"
