"""Structured JSON logs (``--log-format json``): the formatter's lines, and a real
``heshi serve`` whose every stderr line is one JSON object, its failure line carrying the
response's request id and trace."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from heshi.logs import JsonFormatter, RedactingFormatter, redact
from tests.fakes.collector import otlp_collector
from tests.loopback import free_port, wait_serving

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SECRET_KEY = "sk-" + "a1B2c3D4e5F6g7H8i9J0kLmN"  # an OpenAI / DashScope-style key
HESHI_KEY = "hs-" + "Q" * 43  # store/keys.py: hs- and token_urlsafe(32)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer (and nowhere else)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("heshi.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_has_time_level_logger_message_and_extra_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning(
        "POST %s -> %d",
        "/v1/chat/completions",
        502,
        extra={
            "request_id": "req_0123",
            "attempts": 3,
            "route": {"to": ["a", "b"]},
            "at": Path("/x"),
        },
    )
    (line,) = lines(out)
    assert TS.fullmatch(line["ts"])
    assert line["level"] == "WARNING"
    assert line["logger"] == "heshi.test_logs"
    assert line["msg"] == "POST /v1/chat/completions -> 502"
    assert line["request_id"] == "req_0123"
    assert line["attempts"] == 3 and line["route"] == {"to": ["a", "b"]}
    assert line["at"] == "/x"  # not JSON itself: its str
    assert "trace_id" not in line and "exc" not in line


def test_an_exception_is_its_traceback(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    try:
        raise ValueError("后端返回了无法解析的内容 / unparseable upstream body")
    except ValueError:
        logger.exception("请求失败 / request failed", extra={"request_id": "req_1"})
    (line,) = lines(out)
    assert line["level"] == "ERROR"
    assert line["msg"] == "请求失败 / request failed"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert "ValueError: 后端返回了无法解析的内容" in line["exc"]
    assert "\n" not in out.getvalue().rstrip("\n")  # still one line


def test_chinese_text_stays_readable(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("客户端在请求读完前断开 / client disconnected", extra={"租户": "华东分公司"})
    raw = out.getvalue()
    assert "客户端在请求读完前断开" in raw and "华东分公司" in raw
    assert "\\u" not in raw
    assert lines(out)[0]["租户"] == "华东分公司"


def test_secrets_are_masked_in_messages_fields_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning(
        "upstream said: Authorization: Bearer abc123def456ghi789 was refused",
        extra={"header": f"bearer {SECRET_KEY}", "keys": [HESHI_KEY], "prefix": HESHI_KEY[:12]},
    )
    try:
        raise RuntimeError(f"bad key {SECRET_KEY}")
    except RuntimeError:
        logger.exception("failed")
    raw = out.getvalue()
    for secret in ("abc123def456ghi789", SECRET_KEY[3:], HESHI_KEY[3:]):
        assert secret not in raw
    first, second = lines(out)
    assert first["msg"] == "upstream said: Authorization: Bearer *** was refused"
    assert first["header"] == "bearer ***"
    assert first["keys"] == ["hs-***"]
    assert first["prefix"] == HESHI_KEY[:12]  # a listing's key prefix is not a secret
    assert "RuntimeError: bad key sk-***" in second["exc"]


def test_the_text_format_masks_secrets_too() -> None:
    record = logging.LogRecord("heshi", logging.INFO, __file__, 1, "key %s", (SECRET_KEY,), None)
    assert RedactingFormatter("%(message)s").format(record) == "key sk-***"
    assert redact("Bearer <key>") == "Bearer <key>"  # the banner's hint is not a token


def test_the_current_span_gives_trace_and_span_ids(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    from heshi.tracing import Span, Tracing

    logger, out = captured
    span = Span("stage", int("c" * 32, 16), 0, None)
    with Tracing.disabled().current(span):  # a stage or an attempt is current
        logger.info("inside", extra={"request_id": "req_" + "f" * 32 + "_" + "e" * 16})
    logger.info("after", extra={"request_id": "req_" + "a" * 32 + "_" + "b" * 16})
    logger.info("untraced", extra={"request_id": "req_0123456789abcdef"})
    inside, after, untraced = lines(out)
    assert inside["trace_id"] == "c" * 32
    assert inside["span_id"] == f"{span.span_id:016x}"
    # no span current: the ids a traced request id carries
    assert (after["trace_id"], after["span_id"]) == ("a" * 32, "b" * 16)
    assert "trace_id" not in untraced


# ---------------------------------------------------------------- heshi serve, for real


def serve(config: Path, home: Path, err: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "heshi", "serve", "--no-local", "--config", str(config)]
    env = {**os.environ, "HESHI_HOME": str(home)}
    with err.open("wb") as stderr:
        return subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE, stderr=stderr)


def accepts(base_url: str) -> bool:
    """Whether something listens on ``base_url``'s port."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((url.hostname or "127.0.0.1", url.port or 80)) == 0


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line of ``text`` as a JSON object with ts, level, logger and msg."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)  # fails on any line that is not JSON
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg"} <= record.keys(), line
        assert TS.fullmatch(record["ts"]), line
        out.append(record)
    return out


def test_heshi_serve_writes_json_lines_with_the_failures_request_id(tmp_path: Path) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}/v1"  # a backend nothing listens on
    with otlp_collector() as (endpoint, _):
        config = {
            # the flag overrides the file
            "server": {"port": port, "log_format": "text"},
            "backends": {"dead": {"base_url": dead, "models": ["up"], "connect_timeout": 1}},
            "aliases": {"qwen": {"backend": "dead", "model": "up"}},
            "routing": {"retries": 0},
            "tracing": {"enabled": True, "endpoint": endpoint, "export_timeout_s": 2},
        }
        path = tmp_path / "heshi.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        err = tmp_path / "stderr.log"
        proc = serve(path, tmp_path / "home", err, "--log-format", "json")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_serving(proc, url)
            body = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}]}
            try:
                r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
            except httpx.TimeoutException:  # say what the gateway was doing (seen once in CI)
                pytest.fail(
                    f"no answer in 30 s; the dead backend's port accepts connections: "
                    f"{accepts(dead)}; the gateway's log so far:\n{err.read_text('utf-8')}"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM)
    assert r.status_code in (502, 503)  # 503 once the health check opened the breaker
    request_id = r.headers["x-request-id"]
    records = json_lines(err.read_text("utf-8"))
    assert not stdout.strip()
    failures = [x for x in records if x.get("request_id") == request_id]
    assert len(failures) == 1
    (failure,) = failures
    assert failure["level"] == "WARNING" and failure["logger"] == "heshi.gateway"
    assert failure["msg"].startswith(f"POST /v1/chat/completions -> {r.status_code}: ")
    assert "dead" in failure["msg"]
    trace_id, _ = request_id.removeprefix("req_").split("_")
    assert failure["trace_id"] == trace_id  # the failure leads to its trace
    assert re.fullmatch(r"[0-9a-f]{16}", failure["span_id"])
    loggers = {x["logger"] for x in records}
    # uvicorn's own lines and the banner are JSON lines too
    assert {"uvicorn.error", "uvicorn.access", "heshi.serve"} <= loggers
    assert any(x["msg"].startswith("Heshi ") and "已启动" in x["msg"] for x in records)
    assert any(x["msg"] == "Application shutdown complete." for x in records)


def test_a_config_error_is_one_json_line(tmp_path: Path) -> None:
    path = tmp_path / "heshi.yaml"
    path.write_text("server:\n  port: -1\n", encoding="utf-8")
    err = tmp_path / "stderr.log"
    proc = serve(path, tmp_path / "home", err, "--log-format", "json")
    proc.communicate(timeout=120)
    assert proc.returncode == 1
    (record,) = json_lines(err.read_text("utf-8"))
    assert record["level"] == "ERROR" and record["logger"] == "heshi.serve"
    assert "server.port" in record["msg"] and "配置无效" in record["msg"]


def test_the_embedded_engine_keeps_its_own_lines_off_json_logs(tmp_path: Path) -> None:
    """llama.cpp writes its diagnostics on stderr by itself; in JSON mode it is told not
    to, so a log collector sees JSON only."""
    from tests.tinymodel import build_tiny_qwen2_gguf

    model = build_tiny_qwen2_gguf(tmp_path / "tiny.gguf")
    port = free_port()
    err = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "heshi", "serve", "--model", str(model), "--open"]
    command += ["--port", str(port), "--ctx", "256", "--parallel", "1", "--log-format", "json"]
    env = {**os.environ, "HESHI_HOME": str(tmp_path / "home")}
    with err.open("wb") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(url + "/v1/chat/completions", json=body | {"max_tokens": 4}, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert r.status_code == 200, r.text
    records = json_lines(err.read_text("utf-8"))  # fails on any line that is not JSON
    assert any(x["logger"] == "uvicorn.access" for x in records)
