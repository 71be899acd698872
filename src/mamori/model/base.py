"""The enums every record shares: transport protocol and severity."""

from __future__ import annotations

from enum import StrEnum


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


