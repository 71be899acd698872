"""Check primitives: ssh (placeholder until its checks land)."""

from __future__ import annotations

from mamori.checks.primitive import Primitive

PRIMITIVES: dict[str, Primitive] = {}
