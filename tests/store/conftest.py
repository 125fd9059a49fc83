"""Fixtures for store tests: see ``tests.store.databases``."""

from tests.store.databases import database, pg_admin, pg_module_url

__all__ = ["database", "pg_admin", "pg_module_url"]
