"""Fixtures for the request-pipeline tests: the governance tier's fake upstream, gateways
and key store, and a gateway over the tiny real model with keys and a ledger."""

from __future__ import annotations

from tests.governance.conftest import (  # noqa: F401 - fixtures used by this package
    home,
    keys,
    open_database,
    pg_url,
    start_gateway,
    store_db,
    upstream,
)
