"""Fixtures for hub tests: a loopback hub server and a store pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_loopback_server import LoopbackHub

from heshi.hub import HubSettings, ModelStore


@pytest.fixture
def hub() -> Iterator[LoopbackHub]:
    with LoopbackHub() as server:
        yield server


@pytest.fixture
def settings(hub: LoopbackHub) -> HubSettings:
    return HubSettings(
        hf_endpoint=hub.url,
        modelscope_endpoint=hub.url,
        connect_timeout=2.0,
        read_timeout=2.0,
    )


@pytest.fixture
def store(tmp_path: Path, settings: HubSettings) -> ModelStore:
    return ModelStore(tmp_path / "home", settings=settings)


@pytest.fixture
def payload() -> bytes:
    """Bytes that pass for a GGUF (right magic) and are big enough to cut in half."""
    return b"GGUF" + os.urandom(300_000)
