"""Persistent storage of scans and their results (SQLite by default, any SQLAlchemy URL).

``Store`` and ``default_db_url`` are loaded on first use: importing SQLAlchemy costs about half
a second, which the scan command spends in a worker thread while its sweep already runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mamori.store.errors import StoreError, StoreUsageError

if TYPE_CHECKING:
    from mamori.store.store import Store, default_db_url

__all__ = ["Store", "StoreError", "StoreUsageError", "default_db_url"]


def __getattr__(name: str) -> Any:
    if name in ("Store", "default_db_url"):
        from mamori.store import store

        return getattr(store, name)
    raise AttributeError(f"module 'mamori.store' has no attribute {name!r}")
