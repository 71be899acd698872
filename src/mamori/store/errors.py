"""The one exception the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked; the message is one line, fit for the user."""


class StoreUsageError(StoreError):
    """The database URL itself is wrong (bad usage, exit code 2), as opposed to a database
    that exists but cannot be used."""
