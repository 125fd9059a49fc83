"""The governance fixtures (fake upstream, gateways, key store), for guard tests."""

from tests.governance.conftest import home, keys, open_database, start_gateway, store_db, upstream

__all__ = ["home", "keys", "open_database", "start_gateway", "store_db", "upstream"]
