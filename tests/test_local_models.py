"""Several local models in one gateway: declared in heshi.yaml (`models:`), loaded and
unloaded at run time (`heshi models load` / `unload`), listed by `heshi ps`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.loopback import free_port, wait_serving
from tests.tinymodel import THINKING_TEMPLATE, THINKING_TEXT, build_tiny_qwen2_gguf


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "thinker.gguf"
    return build_tiny_qwen2_gguf(path, greedy_text=THINKING_TEXT, chat_template=THINKING_TEMPLATE)


def tiny(model: Path, name: str) -> dict[str, object]:
    return {"model": str(model), "name": name, "ctx": 256, "parallel": 2, "threads": 1}


@pytest.fixture
def gateway(tiny_gguf: Path, thinker: Path, tmp_path: Path) -> Iterator[str]:
    """`heshi serve` with two local models from heshi.yaml and `auto` routing over them."""
    port = free_port()
    config = {
        "home": str(tmp_path / "home"),
        "server": {"port": port},
        "engine": tiny(tiny_gguf, "small"),
        "models": [tiny(thinker, "thinker")],
        "routing": {"auto": {"small": "small", "large": "thinker"}},
    }
    path = tmp_path / "heshi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HESHI_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "heshi", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    try:
        wait_serving(proc, url)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 11}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_models_from_heshi_yaml_each_answer_with_their_own_engine(gateway: str) -> None:
    small, thinker = chat(gateway, "small").json(), chat(gateway, "thinker").json()
    assert small["model"] == "small" and "reasoning_content" not in small["choices"][0]["message"]
    assert thinker["choices"][0]["message"]["reasoning_content"] == "R"  # its own template
    ids = [m["id"] for m in httpx.get(gateway + "/v1/models").json()["data"]]
    assert {"small", "thinker", "auto"} <= set(ids)

    code, out = cli("ps", "--url", gateway, "--json")
    assert code == 0, out
    models = {m["name"]: m for m in json.loads(out)}
    assert set(models) == {"small", "thinker", "multilingual-e5-small"}  # + built-in embedder
    assert models["multilingual-e5-small"]["kind"] == "embed"
    assert models["thinker"]["thinking"] and models["small"]["context_length"] == 256
    assert models["small"]["slots"] == 2 and models["small"]["slots_busy"] == 0
    assert models["small"]["memory_bytes"] > 0
    assert models["small"]["tokens_per_second"] > 0  # it has answered once
    code, table = cli("ps", "--url", gateway)
    assert code == 0 and "thinker" in table and "chat (thinking)" in table


def test_load_and_unload_while_serving(gateway: str, tiny_gguf: Path) -> None:
    code, out = cli("models", "load", str(tiny_gguf), "--name", "extra", "--ctx", "256",
                    "--url", gateway)  # fmt: skip
    assert code == 0, out
    assert "loaded extra" in out
    assert chat(gateway, "extra").status_code == 200
    assert "extra" in [m["id"] for m in httpx.get(gateway + "/v1/models").json()["data"]]

    code, out = cli("models", "load", str(tiny_gguf), "--name", "extra", "--url", gateway)
    assert code == 1 and "already loaded" in out

    code, out = cli("models", "unload", "extra", "--url", gateway)
    assert code == 0 and "unloaded extra" in out
    assert chat(gateway, "extra").status_code == 404
    # the model `auto` routes to cannot go while the route needs it
    code, out = cli("models", "unload", "thinker", "--url", gateway)
    assert code == 1 and "routing.auto" in out
    assert chat(gateway, "thinker").status_code == 200


def test_admin_model_endpoints_need_the_admin_token(gateway: str) -> None:
    assert httpx.get(gateway + "/admin/models").status_code == 401
    bad = httpx.post(gateway + "/admin/models", json={"name": "x"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "model"
    missing = httpx.post(
        gateway + "/admin/models", json={"model": "/nonexistent.gguf", "name": "x"}, headers=ADMIN
    )
    assert missing.status_code == 400 and "not found" in missing.json()["error"]["message"]


def test_two_local_models_may_not_share_a_name(tiny_gguf: Path) -> None:
    from heshi.config import HeshiConfig

    with pytest.raises(ValueError, match="two local models are named small"):
        HeshiConfig.model_validate(
            {"engine": tiny(tiny_gguf, "small"), "models": [tiny(tiny_gguf, "small")]}
        )


def test_ps_without_a_gateway_says_so(tmp_path: Path) -> None:
    code, out = cli("ps", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach the gateway" in out
