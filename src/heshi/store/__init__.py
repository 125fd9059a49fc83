"""State kept in SQL: API keys and the usage ledger (SQLAlchemy 2 Core + Alembic).

SQLite (WAL) by default, PostgreSQL by URL. Nothing here is imported on the request
path except through caches (``heshi.gateway.auth``) and queues (``LedgerWriter``).
"""

from heshi.store.db import Database, StoreUnavailable
from heshi.store.keys import ApiKey, InvalidKeySpec, KeyNotFound, KeyStateError, KeyStore
from heshi.store.ledger import LedgerWriter, UsageRecord

__all__ = [
    "ApiKey",
    "Database",
    "InvalidKeySpec",
    "KeyNotFound",
    "KeyStateError",
    "KeyStore",
    "LedgerWriter",
    "StoreUnavailable",
    "UsageRecord",
]
