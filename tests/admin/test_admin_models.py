"""``/admin/v1/models`` and ``/admin/v1/health`` on a real gateway over the tiny model:
the ``heshi ps`` view, loading and unloading a model (audited; admins only)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import ADMIN, TINY_NAME, RunningGateway

API = "/admin/v1"


def test_models_listed_loaded_and_unloaded_with_every_change_audited(
    tiny_gateway: RunningGateway, tiny_gguf: Path
) -> None:
    with httpx.Client(base_url=tiny_gateway.url, timeout=60) as client:
        listed = client.get(f"{API}/models", headers=ADMIN).json()
        assert [m["name"] for m in listed] == [TINY_NAME]
        entry = listed[0]
        assert entry["kind"] == "chat" and entry["slots"] == 2 and entry["slots_busy"] == 0
        assert {"memory_bytes", "tokens_per_second", "context_length"} <= set(entry)
        health = client.get(f"{API}/health", headers=ADMIN).json()
        assert health["ready"] is True and TINY_NAME in health["models"]

        auditor = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": "审计", "role": "auditor"}
        ).json()["token"]
        second = {"model": str(tiny_gguf), "name": "tiny-two", "ctx": 256, "threads": 1,
                  "parallel": 1, "tool_decision": False}  # fmt: skip
        r = client.post(
            f"{API}/models", json=second, headers={"Authorization": f"Bearer {auditor}"}
        )
        assert r.status_code == 403
        r = client.post(f"{API}/models", json=second, headers=ADMIN)
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "tiny-two"
        models = client.get("/v1/models").json()["data"]
        assert "tiny-two" in [m["id"] for m in models]
        r = client.post(
            f"{API}/models", json={"model": "/nonexistent.gguf", "name": "x"}, headers=ADMIN
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "model"
        assert client.delete(f"{API}/models/tiny-two", headers=ADMIN).json()["unloaded"] is True
        assert "tiny-two" not in [
            m["name"] for m in client.get(f"{API}/models", headers=ADMIN).json()
        ]
        records = client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 20}).json()
        actions = [
            (json.loads(r["input"])["admin_action"], json.loads(r["output"])["result"])
            for r in records
            if "models." in r["input"]
        ]
        assert actions == [
            ("models.unload", "ok"),
            ("models.load", "refused"),
            ("models.load", "ok"),
            ("models.load", "refused"),
        ]
