"""`heshi usage` reports what the gateway metered, and only the asking tenant's usage."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app as cli
from heshi.store.keys import KeyStore
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
)


def usage(config: Path, tenant: str, by: str, *fmt: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["usage", "--tenant", tenant, "--by", by, "--config", str(config), *fmt],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def groups(out: str) -> dict[str, tuple[int, int, int]]:
    """``--json`` output as group → (requests, prompt, completion)."""
    return {
        r["group"]: (r["requests"], r["prompt_tokens"], r["completion_tokens"])
        for r in json.loads(out)
    }


def test_usage_shows_what_the_gateway_metered_per_tenant(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    home: Path,
    tmp_path: Path,
) -> None:
    alpha, a = keys.create("acme", "alpha")
    bravo, b = keys.create("acme", "bravo")
    gamma, g = keys.create("globex", "gamma")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    calls: list[tuple[str, dict[str, Any]]] = [
        (alpha, chat_body(max_tokens=10)),
        (alpha, chat_body(max_tokens=10, stream=True)),
        (bravo, chat_body(model=OTHER_ALIAS, max_tokens=20)),
        *[(gamma, chat_body(model=OTHER_ALIAS, max_tokens=7))] * 3,
    ]
    with httpx.Client(timeout=30) as client:
        for key, body in calls:
            r = client.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(key))
            assert r.status_code == 200, r.text
    gw.flush()
    config = tmp_path / "heshi.yaml"
    config.write_text(yaml.safe_dump({"home": str(home)}))  # the gateway's own database

    # upstream reports 5 prompt tokens and max_tokens completion tokens per request
    assert groups(usage(config, "acme", "model", "--json")) == {
        ALIAS: (2, 10, 20),
        OTHER_ALIAS: (1, 5, 20),
    }
    assert groups(usage(config, "acme", "key", "--json")) == {a.id: (2, 10, 20), b.id: (1, 5, 20)}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert groups(usage(config, "acme", "day", "--json")) == {today: (3, 15, 40)}
    assert groups(usage(config, "globex", "key", "--json")) == {g.id: (3, 15, 21)}

    table = usage(config, "acme", "key")
    assert f"{a.id} (alpha)" in table and f"{b.id} (bravo)" in table
    rows = list(csv.DictReader(io.StringIO(usage(config, "acme", "model", "--csv"))))
    assert [(r["model"], r["requests"], r["total_tokens"]) for r in rows] == [
        (ALIAS, "2", "30"),
        (OTHER_ALIAS, "1", "25"),
    ]
    # tenant B's usage never appears for tenant A, in any grouping or format
    for by in ("model", "key", "day"):
        for fmt in ((), ("--json",), ("--csv",)):
            out = usage(config, "acme", by, *fmt)
            assert g.id not in out and "gamma" not in out
            out = usage(config, "globex", by, *fmt)
            assert a.id not in out and b.id not in out and "alpha" not in out
