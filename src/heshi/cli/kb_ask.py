"""How ``heshi kb ask`` reaches a knowledge base: a running gateway (``--url``), or the
whole gateway built in this process (its models loaded here, its pipeline applied: guard,
ledger, audit, labels) and asked without a network socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from heshi.config import load_config
from heshi.errors import HeshiError


class AskFailed(HeshiError):
    status_code = 502
    error_type = "server_error"
    code = "kb_ask_failed"


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200 or not isinstance(data, dict):
        message = ""
        if isinstance(data, dict):
            message = str((data.get("error") or {}).get("message") or "")
        raise AskFailed(f"HTTP {response.status_code}: {message or response.text[:300]}")
    return data


def ask_gateway(url: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
    base = url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(f"{base}/chat/completions", json=body, headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        raise AskFailed(f"无法连接网关 / cannot reach the gateway at {base}: {exc}") from exc
    return _result(response)


def ask_in_process(config_path: Path | None, body: dict[str, Any]) -> dict[str, Any]:
    from heshi.cli.serve import build_engines
    from heshi.gateway.app import create_app

    config = load_config(config_path)
    # the operator at this machine reads the store directly anyway: no key is asked for
    config = config.model_copy(update={"auth": config.auth.model_copy(update={"open": True})})
    app = create_app(config, build_engines(config))

    async def run() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://heshi") as client:
                response = await client.post("/v1/chat/completions", json=body, timeout=600)
        return _result(response)

    return asyncio.run(run())
