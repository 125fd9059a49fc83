"""Commands that talk to a running gateway's admin endpoints: ``heshi ps``, and
``heshi models load`` / ``unload`` (local models in and out without a restart)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from heshi.cli.database import ConfigOption
from heshi.cli.reporting import reporting_errors
from heshi.config import load_config
from heshi.errors import ConfigError, HeshiError

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="网关地址（默认取自 heshi.yaml：http://127.0.0.1:8000）/ The gateway "
        "(default from heshi.yaml: http://127.0.0.1:8000).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="以 JSON 输出 / Print JSON instead of text.")
]


class GatewayError(HeshiError):
    """The gateway refused or could not be reached (exit 1, its message shown)."""

    status_code = 502


def ps(url: UrlOption = None, config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """列出网关已加载的本地模型。/ Show the local models a running gateway has loaded."""
    with reporting_errors():
        models = _call("GET", "/admin/models", url, config)["data"]
    if json_output:
        typer.echo(json.dumps(models, ensure_ascii=False, indent=2))
        return
    if not models:
        typer.echo("没有已加载的本地模型 / no local models loaded")
        return
    table = Table(box=None, pad_edge=False)
    for header in ("NAME 名称", "KIND", "MEMORY 内存", "CTX", "SLOTS 槽位", "TOKENS/S"):
        table.add_column(header, overflow="fold")
    for m in models:
        busy = f"{m['slots_busy']}/{m['slots']} busy" if m.get("slots") else "-"
        if m.get("requests_waiting"):
            busy += f", {m['requests_waiting']} waiting"
        kind = m["kind"] + (" (thinking)" if m.get("thinking") else "")
        rate = m.get("tokens_per_second")
        table.add_row(
            m["name"],
            kind,
            _size(m.get("memory_bytes")),
            str(m.get("context_length") or "-"),
            busy,
            "-" if rate is None else f"{rate:.1f}",
        )
    Console(highlight=False).print(table, markup=False)


def load(
    model: Annotated[
        str, typer.Argument(help="模型引用（同 heshi models pull）/ Model ref.", show_default=False)
    ],
    name: Annotated[
        str, typer.Option("--name", help="对外模型名 / Public model name.", show_default=False)
    ],
    ctx: Annotated[int | None, typer.Option(help="每个请求的上下文 / Context per request.")] = None,
    parallel: Annotated[int | None, typer.Option(help="并发槽位 / Parallel slots.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU 线程 / CPU threads.")] = None,
    embeddings: Annotated[
        bool, typer.Option("--embeddings", help="作为向量模型加载 / Load it to embed.")
    ] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """在运行中的网关里加载一个本地模型。/ Load a local model into a running gateway."""
    body: dict[str, Any] = {"model": model, "name": name}
    for key, value in (("ctx", ctx), ("parallel", parallel), ("threads", threads)):
        if value is not None:
            body[key] = value
    if embeddings:
        body["embeddings"] = True
    with reporting_errors():
        loaded = _call("POST", "/admin/models", url, config, body, timeout=900)
    if json_output:
        typer.echo(json.dumps(loaded, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"已加载 / loaded {loaded['name']} ({loaded['kind']}, ctx {loaded['context_length']}, "
        f"{_size(loaded.get('memory_bytes'))})"
    )


def unload(
    name: Annotated[str, typer.Argument(help="模型名 / Model name.", show_default=False)],
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """从运行中的网关卸载一个本地模型。/ Unload a local model from a running gateway."""
    with reporting_errors():
        _call("DELETE", f"/admin/models/{name}", url, config)
    typer.echo(f"已卸载 / unloaded {name}")


def _call(
    method: str,
    path: str,
    url: str | None,
    config_path: Any,
    body: dict[str, Any] | None = None,
    timeout: float = 30,
) -> dict[str, Any]:
    config = load_config(config_path)
    host = config.server.host
    base = (
        url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{config.server.port}"
    )
    token = os.environ.get(config.server.admin_token_env, "").strip()
    if not token:
        raise ConfigError(
            f"请设置环境变量 {config.server.admin_token_env}（与网关相同的管理令牌）/ set "
            f"{config.server.admin_token_env} to the gateway's admin token"
        )
    try:
        r = httpx.request(
            method,
            base.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise GatewayError(
            f"无法连接网关 {base}（它在运行吗？用 --url 指定）/ cannot reach the gateway at "
            f"{base} (is it running? point --url at it): {exc}"
        ) from exc
    try:
        answer = r.json()
    except ValueError:
        answer = {}
    if r.status_code >= 400:
        message = (answer.get("error") or {}).get("message") if isinstance(answer, dict) else None
        raise GatewayError(message or f"HTTP {r.status_code}")
    return answer if isinstance(answer, dict) else {}


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"
