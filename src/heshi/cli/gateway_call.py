"""How commands that ask a model (``heshi kb ask|eval``, ``heshi docs extract``) reach the
gateway: a running one (``--url``), or the whole gateway built in this process (its models
loaded here, its pipeline applied: guard, ledger, audit, labels) and asked without a
network socket."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from heshi.cli.chat import key_hint
from heshi.config import load_config
from heshi.errors import HeshiError


class AskFailed(HeshiError):
    status_code = 502
    error_type = "server_error"
    code = "gateway_call_failed"


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200 or not isinstance(data, dict):
        message = ""
        if isinstance(data, dict):
            message = str((data.get("error") or {}).get("message") or "")
        status = response.status_code
        raise AskFailed(f"HTTP {status}: {message or response.text[:300]}{key_hint(status)}")
    return data


Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _v1(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


@asynccontextmanager
async def asking(url: str | None, key: str | None, config_path: Path | None) -> AsyncIterator[Ask]:
    """A chat-completions call to the gateway at ``url``, or (no url) to the whole gateway
    built in this process — its models loaded once for every question asked."""
    if url:
        base = _v1(url)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:

            async def remote(body: dict[str, Any]) -> dict[str, Any]:
                try:
                    response = await client.post("/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    raise AskFailed(
                        f"无法连接网关 / cannot reach the gateway at {base}: {exc}"
                    ) from exc
                return _result(response)

            yield remote
        return
    from heshi.cli.serve import build_engines
    from heshi.gateway.app import create_app

    config = load_config(config_path)
    # the operator at this machine reads the store directly anyway: no key is asked for
    config = config.model_copy(update={"auth": config.auth.model_copy(update={"open": True})})
    app = create_app(config, build_engines(config))
    transport = httpx.ASGITransport(app=app)
    with engine_log(config.home / "logs" / "engine.log"):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://heshi", timeout=600) as client,
        ):

            async def local(body: dict[str, Any]) -> dict[str, Any]:
                return _result(await client.post("/v1/chat/completions", json=body))

            yield local
        # the engines' last log lines are written when they are freed: free them here,
        # while those lines still go to the log file
        del app, transport, local
        gc.collect()


@contextmanager
def engine_log(path: Path) -> Iterator[None]:
    """llama.cpp's own log lines (written by C code to file descriptor 2) go to ``path``
    while the models run in this process; what Heshi prints — answers, the progress bar,
    errors — still reaches the terminal (``sys.stderr`` is pointed at the original)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:  # no log file: the lines reach the terminal as before
        yield
        return
    original = sys.stderr
    try:
        on_fd2 = original.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured stream (tests): left as is
        on_fd2 = False
    original.flush()
    saved = os.dup(2)
    os.dup2(target, 2)
    os.close(target)
    if on_fd2:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield
    finally:
        if on_fd2:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = original
        os.dup2(saved, 2)
        os.close(saved)


def ask_once(url: str | None, key: str | None, config_path: Path | None, body: dict[str, Any]
) -> dict[str, Any]:  # fmt: skip
    async def run() -> dict[str, Any]:
        async with asking(url, key, config_path) as ask:
            return await ask(body)

    return asyncio.run(run())
