"""Alembic migrations of the mamori store (run by ``Store.open``; no alembic.ini needed)."""
