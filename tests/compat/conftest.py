"""Fixtures for the client-compatibility tests: remote-backend gateways and the tiny model."""

from tests.governance.conftest import (  # noqa: F401 - fixtures used by this package
    home,
    keys,
    open_database,
    start_gateway,
    store_db,
    upstream,
)
