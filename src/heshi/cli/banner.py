"""The lines ``heshi serve`` prints once it is about to listen: where, what, and under
which rules — above all whether API keys are required, and why."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from heshi import __version__
from heshi.config import HeshiConfig
from heshi.gateway.handlers import Gateway


def banner(config: HeshiConfig, app: Starlette) -> list[str]:
    """One line per fact: URL, models, auth (and why), store, guard, AIGC labels, console."""
    gateway: Gateway = app.state.gateway
    host, port = config.server.host, config.server.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/v1"
    lines = [f"Heshi {__version__} 已启动 / serving at {url}"]
    if shown != host:
        lines[0] += f" (listening on every interface, {host})"
    models = [m.id for m in gateway.router.public_models()]
    lines.append("  模型 models: " + (", ".join(models) or "(none)"))
    lines.append("  认证 auth:   " + _auth(config, gateway))
    store = make_url(config.store.sql_url(config.home)).render_as_string(hide_password=True)
    redis = " + Redis (shared quotas)" if config.store.redis_address() else ""
    lines.append(f"  存储 store:  {store}{redis}")
    lines.append("  防护 guard:  " + _guard(config))
    aigc = "on (显式 explicit " + config.aigc.explicit + ")" if config.aigc.enabled else "off"
    lines.append("  标识 AIGC labels: " + aigc)
    lines.append(
        f"  控制台 console: {url.removesuffix('/v1')}/console (管理令牌登录 / sign in with an "
        "admin token: heshi admin tokens create NAME)"
    )
    return lines


def _auth(config: HeshiConfig, gateway: Gateway) -> str:
    if config.auth.open:
        return "开放 open — 不校验密钥（--open / auth.open）/ no keys checked (--open / auth.open)"
    try:
        keys = gateway.gov.keys.list()
    except Exception as exc:  # a database that is down is reported, not fatal, here
        return f"未知 unknown — 无法读取密钥表 / the key table cannot be read: {exc}"
    if keys:
        # revoked keys count too: revoking every key must not open the gateway
        now = datetime.now(UTC)
        active = sum(1 for k in keys if k.status == "active" and not k.is_expired(now))
        none = "" if active else "; 没有有效密钥 / none active: heshi keys create"
        return (
            f"需要密钥 keys required — 数据库中有 {len(keys)} 个密钥（{active} 个有效）/ the "
            f"database holds {len(keys)} key(s), {active} active (`heshi keys list`){none}; "
            "send Authorization: Bearer <key>, or restart with --open for single-user use"
        )
    return (
        "开放 open — 尚未创建任何密钥 / no key has been created yet; the first "
        "`heshi keys create` makes keys required"
    )


def _guard(config: HeshiConfig) -> str:
    guard = config.guard
    overridden = sorted(n for n, t in config.tenants.items() if t.guard is not None)
    if not guard.enabled:
        text = "off"
    else:
        parts = [f"PII {guard.pii}"]
        if guard.inbound or guard.outbound:
            sides = [s for s, on in (("prompts", guard.inbound), ("answers", guard.outbound)) if on]
            parts.append("screens " + " + ".join(sides))
        if guard.model.alias:
            parts.append(f"guard model {guard.model.alias}")
        text = "on (" + ", ".join(parts) + ")"
    if overridden:
        text += "; tenants with their own guard settings: " + ", ".join(overridden)
    return text
