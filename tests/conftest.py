"""Shared fixtures: a tiny real GGUF, a real engine, a real gateway on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from heshi.config import DEFAULT_MODEL_REF, HeshiConfig, LocalEngineConfig
from heshi.engines.base import Engine
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.gateway.app import create_app
from tests.loopback import serve_app
from tests.tinymodel import build_tiny_qwen2_gguf

TINY_NAME = "tiny-qwen2"
TINY_CTX = 256
ADMIN_TOKEN = "test-admin-token-7f3a9c"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # for /metrics and /healthz details


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (``make test`` runs two workers), the tests that run the real
    default model all go to one worker, one after another: spread over both, a tool-call
    test took 127 s instead of 31 s alone, and the whole run 16.5 minutes, not 13.8."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("real-model"))


@pytest.fixture(autouse=True)
def _admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every gateway a test starts (in process or as a child) has an admin token."""
    monkeypatch.setenv("HESHI_ADMIN_TOKEN", ADMIN_TOKEN)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2-architecture GGUF with random weights and a byte-level tokenizer."""
    return build_tiny_qwen2_gguf(tmp_path_factory.mktemp("models") / "tiny-qwen2.gguf")


def tiny_engine_config(tiny_gguf: Path, **changes: object) -> LocalEngineConfig:
    """Engine settings for the tiny model: small context, one thread."""
    base = {
        "model": str(tiny_gguf),
        "name": TINY_NAME,
        "parallel": 2,
        "ctx": TINY_CTX,
        "threads": 1,
        "batch": 64,
        "executor_threads": 8,
        # the random tiny model's answer to the which-function question is noise: tests
        # of the question turn it on themselves (tests/compat/test_tools.py)
        "tool_decision": False,
    }
    base.update(changes)
    return LocalEngineConfig.model_validate(base)


@pytest.fixture
def tiny_config(tiny_gguf: Path, tmp_path: Path) -> HeshiConfig:
    """A gateway config serving only the tiny model, with its own home."""
    return HeshiConfig(home=tmp_path / "home", engine=tiny_engine_config(tiny_gguf))


@pytest.fixture
async def tiny_engine(tiny_gguf: Path) -> AsyncIterator[LlamaCppEngine]:
    """A started in-process llama.cpp engine holding the tiny model."""
    engine = LlamaCppEngine(TINY_NAME, tiny_gguf, tiny_engine_config(tiny_gguf))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def local_engines(config: HeshiConfig) -> dict[str, Engine]:
    """The local engine for ``config`` (model given as a path)."""
    cfg = config.engine
    return {"local": LlamaCppEngine(cfg.name, Path(cfg.model), cfg)}


@dataclass
class RunningGateway:
    """A gateway serving on loopback, with a handle on its local engine."""

    url: str
    engine: LlamaCppEngine


@pytest.fixture
def tiny_gateway(tiny_config: HeshiConfig) -> Iterator[RunningGateway]:
    """A real gateway (uvicorn on 127.0.0.1) over the tiny model."""
    engines = local_engines(tiny_config)
    with serve_app(create_app(tiny_config, engines)) as url:
        local = engines["local"]
        assert isinstance(local, LlamaCppEngine)
        yield RunningGateway(url, local)


@pytest.fixture
def gateway_url(tiny_gateway: RunningGateway) -> str:
    """Base URL of the tiny-model gateway."""
    return tiny_gateway.url


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The assembled embedded default model; ``make test`` pulls it before pytest runs."""
    from heshi.config import default_home
    from heshi.hub.store import ModelStore

    try:
        return ModelStore(default_home()).resolve(DEFAULT_MODEL_REF)
    except Exception as exc:  # the slow tests must fail loudly, never skip silently
        pytest.fail(f"default model missing ({exc}); run `make model` first")


@pytest.fixture
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``HESHI_HOME`` for ``heshi bench`` results, with the planner's cached view
    of this machine forgotten before and after."""
    from heshi.plan import cpu, measured

    monkeypatch.setenv("HESHI_HOME", str(tmp_path))
    for cached in (measured.measured_here, cpu.local_machine):
        cached.cache_clear()
    yield tmp_path
    for cached in (measured.measured_here, cpu.local_machine):
        cached.cache_clear()
