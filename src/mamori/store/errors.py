"""The one exception the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked; the message is one line, fit for the user."""
