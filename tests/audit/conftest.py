"""Fixtures for audit tests: the store's ``database`` (SQLite and PostgreSQL) and a key."""

from __future__ import annotations

from tests.store.databases import database, pg_admin, pg_module_url

__all__ = ["database", "pg_admin", "pg_module_url"]
