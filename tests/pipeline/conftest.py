"""Fixtures for the request-pipeline tests: the governance tier's fake upstream, gateways
and key store, and a gateway over the tiny real model with keys and a ledger."""

from __future__ import annotations

from typing import Any

from heshi.engines.llamacpp import LlamaCppEngine
from heshi.store.db import Database
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (  # noqa: F401 - fixtures used by this package
    home,
    keys,
    ledger_rows,
    open_database,
    pg_url,
    start_gateway,
    store_db,
    upstream,
)


def raw_chat_post(payload: bytes, key: str) -> bytes:
    """The bytes of ``POST /v1/chat/completions`` with ``payload`` as body, for a raw
    socket (a client that behaves as no HTTP library would let it)."""
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )


def wait_recorded_and_freed(gov: Any, db: Database, local: LlamaCppEngine, what: str) -> None:
    """Wait until a request whose client left (``what``) has its ledger row and the
    embedded engine no longer decodes for it."""
    wait_until(
        lambda: gov.ledger.flush() and ledger_rows(db),
        timeout=20,
        message=f"{what} was never recorded",
    )
    wait_until(
        lambda: local.stats()["requests_processing"] == 0,
        timeout=20,
        message="the slot is still busy",
    )
