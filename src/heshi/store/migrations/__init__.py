"""Alembic migrations, shipped as package data and run by ``Database.migrate()``."""
