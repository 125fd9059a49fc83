"""Fixtures of the application tests: the tiny model with room for a knowledge-base
prompt, and a configuration that serves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heshi.config import HeshiConfig
from tests.conftest import tiny_engine_config
from tests.tinymodel import build_tiny_qwen2_gguf


@pytest.fixture
def long_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with room for a knowledge-base prompt (byte tokens: 3 per 汉字)."""
    path = tmp_path_factory.mktemp("models") / "tiny-4k.gguf"
    return build_tiny_qwen2_gguf(path, context_length=4096)


@pytest.fixture
def tiny_config(long_tiny: Path, tmp_path: Path) -> HeshiConfig:
    engine = tiny_engine_config(long_tiny, ctx=4096, parallel=1)
    return HeshiConfig(home=tmp_path / "home", engine=engine)


OPEN_CLIENTS: list[Any] = []  # clients a test made; closed when it ends


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close the test's clients: a socket left to the garbage collector warns in whichever
    test happens to run then."""
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()
