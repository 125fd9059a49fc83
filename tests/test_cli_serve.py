"""``heshi serve`` as a user runs it: a real process, real port, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.loopback import free_port, wait_serving


def heshi(*args: str, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "heshi", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"HESHI_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "model file not found"),
        (b"junk that is not a model", "not a GGUF"),
        (b"GGUF" + b"\x00" * 64, "could not load"),  # right magic, broken body
    ],
)
def test_bad_model_file_is_one_clear_line_and_exit_1(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    model = tmp_path / "model.gguf"
    if content is not None:
        model.write_bytes(content)
    proc = heshi("serve", "--model", str(model), "--port", str(free_port()), home=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert needle in " ".join(err.split())
    assert "Traceback" not in err


def test_unpulled_remote_model_says_how_to_pull(tmp_path: Path) -> None:
    proc = heshi("serve", "--model", "hf:Qwen/Qwen2.5-7B-Instruct-GGUF/q4.gguf", home=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "heshi models pull" in " ".join(err.split())


def test_bad_config_file_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "heshi.yaml"
    config.write_text("server:\n  port: -1\n", encoding="utf-8")
    proc = heshi("serve", "--config", str(config), home=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "server.port" in err


def test_serves_then_stops_cleanly_on_sigterm(tiny_gguf: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = heshi(
        "serve", "--model", str(tiny_gguf), "--name", "tiny", "--port", str(port),
        "--parallel", "2", "--ctx", "256", "--threads", "1", home=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        r = httpx.post(url + "/v1/chat/completions", json=body)
        assert r.status_code == 200
        assert r.json()["usage"]["completion_tokens"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the
    # supervisor which signal ended it
    assert "Application shutdown complete" in err
    assert proc.returncode in (0, -signal.SIGTERM)
