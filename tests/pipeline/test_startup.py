"""Start-up (issue 9, defect 11): the whole configuration, environment variables and the
port included, is checked before the model loads; each problem is one bilingual line and
exit status 1. heshi.example.yaml starts as copied, and its example blocks are valid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from heshi.cli.serve import check_environment
from heshi.config import load_config
from tests.fakes.waiting import wait_until
from tests.loopback import free_port

EXAMPLE = Path(__file__).parents[2] / "heshi.example.yaml"


def _serve(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "heshi", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"HESHI_HOME": str(home), "PATH": "/usr/bin:/bin", **(env or {})},
    )


def _one_line_failure(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    return " ".join(err.split())


def _examples_enabled(tmp_path: Path) -> Path:
    """heshi.example.yaml with every ``#|`` example block switched on."""
    path = tmp_path / "heshi-examples.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace("#|", ""), encoding="utf-8")
    return path


def test_the_example_config_starts_as_copied(tiny_gguf: Path, tmp_path: Path) -> None:
    copied = tmp_path / "heshi.yaml"
    copied.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    port = free_port()
    proc = _serve(
        "--config",
        str(copied),
        "--model",
        str(tiny_gguf),
        "--name",
        "tiny",
        "--port",
        str(port),
        "--ctx",
        "256",
        home=tmp_path,
    )

    def up() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=60, interval=0.1, message="the example config did not start")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err


def test_the_example_blocks_are_a_valid_configuration(tmp_path: Path) -> None:
    config = load_config(_examples_enabled(tmp_path))
    assert set(config.backends) == {"vllm-gpu", "dashscope"}
    assert config.routing.routes["qwen-ha"].fallback == ["qwen-cloud"]
    assert config.backends["vllm-gpu"].context == 32768
    check_environment(config.model_copy(update={"backends": {}}))
    # with the variables set, the environment check passes
    os.environ.update({"VLLM_API_KEY": "k1", "DASHSCOPE_API_KEY": "k2"})
    try:
        check_environment(config)
    finally:
        del os.environ["VLLM_API_KEY"], os.environ["DASHSCOPE_API_KEY"]


def test_an_unset_api_key_variable_fails_before_the_model_loads(tmp_path: Path) -> None:
    """The model path does not even exist: the first thing reported is the variable."""
    proc = _serve(
        "--config",
        str(_examples_enabled(tmp_path)),
        "--model",
        str(tmp_path / "missing.gguf"),
        home=tmp_path,
    )
    err = _one_line_failure(proc)
    assert "VLLM_API_KEY" in err and "未设置" in err and "is not set" in err
    assert "loading model" not in err and "加载模型" not in err


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve("--model", str(tmp_path / "missing.gguf"), "--port", str(port), home=tmp_path)
        err = _one_line_failure(proc)
    assert f"127.0.0.1:{port}" in err and "--port" in err and "端口" in err
    assert "model file not found" not in err


def test_a_bad_lexicon_or_alias_fails_at_start_not_at_the_first_request(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    config = tmp_path / "heshi.yaml"
    config.write_text(
        yaml.safe_dump({"guard": {"enabled": True, "lexicons": [str(tmp_path / "nope.txt")]}})
    )
    err = _one_line_failure(
        _serve(
            "--config",
            str(config),
            "--model",
            str(tiny_gguf),
            "--port",
            str(free_port()),
            home=tmp_path,
        )
    )
    assert "nope.txt" in err and "lexicon" in err
    config.write_text(yaml.safe_dump({"aliases": {"big": {"backend": "nowhere", "model": "m"}}}))
    err = _one_line_failure(
        _serve(
            "--config",
            str(config),
            "--model",
            str(tiny_gguf),
            "--port",
            str(free_port()),
            home=tmp_path,
        )
    )
    assert "nowhere" in err
