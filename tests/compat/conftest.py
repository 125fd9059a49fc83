"""Fixtures for the client-compatibility tests: remote-backend gateways and the tiny model."""

import gc
import warnings
from collections.abc import Iterator

import pytest

from tests.governance.conftest import (  # noqa: F401 - fixtures used by this package
    home,
    keys,
    open_database,
    start_gateway,
    store_db,
    upstream,
)


@pytest.fixture(autouse=True)
def _collect_clients() -> Iterator[None]:
    """LangChain, LlamaIndex and litellm keep HTTP clients they never close; they are
    collected here, quietly, rather than warn in whichever later test the GC runs."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
