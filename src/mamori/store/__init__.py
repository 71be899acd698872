"""Persistent storage of scans and their results (SQLite by default, any SQLAlchemy URL)."""

from mamori.store.errors import StoreError
from mamori.store.store import Store, default_db_url

__all__ = ["Store", "StoreError", "default_db_url"]
