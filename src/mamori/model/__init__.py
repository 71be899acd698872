"""Every record the layers pass around: frozen dataclasses and enums, no I/O.

The ground floor: this package imports nothing else of mamori. ``base`` holds the enums every
record shares, ``scan`` what a scan produces (ports, services, check results, the stored scan),
``audit`` what `mamori check` reads of this machine (listeners, scopes, firewall verdicts),
``watch`` the events and incidents of `mamori watch` (import those from ``mamori.model.watch``).
Data flows one way (docs/ARCHITECTURE.md); errors are data too: a probe that could not run
yields a ``ProbeError`` and is never read as "closed" or "clean".
"""

from __future__ import annotations

from mamori.model.accept import Acceptance
from mamori.model.audit import (
    AuditNote,
    FirewallDecision,
    Listener,
    ListenerRecord,
    Scope,
    Verdict,
)
from mamori.model.base import (
    Proto,
    Severity,
)
from mamori.model.scan import (
    JSON_SCHEMA_VERSION,
    CheckResult,
    CheckStatus,
    CheckText,
    Confidence,
    Endpoint,
    ErrorKind,
    Evidence,
    Exposure,
    HostResult,
    Layer,
    PortResult,
    PortState,
    ProbeError,
    Reason,
    ScanRecord,
    ScanStatus,
    ScanSummary,
    Service,
    Target,
)

__all__ = [
    "JSON_SCHEMA_VERSION",
    "Acceptance",
    "AuditNote",
    "CheckResult",
    "CheckStatus",
    "CheckText",
    "Confidence",
    "Endpoint",
    "ErrorKind",
    "Evidence",
    "Exposure",
    "FirewallDecision",
    "HostResult",
    "Layer",
    "Listener",
    "ListenerRecord",
    "PortResult",
    "PortState",
    "ProbeError",
    "Proto",
    "Reason",
    "ScanRecord",
    "ScanStatus",
    "ScanSummary",
    "Scope",
    "Service",
    "Severity",
    "Target",
    "Verdict",
]
