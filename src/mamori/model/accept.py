"""Accepted risks: a finding the owner knows of and accepted, with a reason and an end date.

An acceptance names a check on an address (and one port, or every port of it) and keeps a
fingerprint of the finding's evidence facts as seen when it was accepted. It covers a finding
only while it has not expired and the evidence is the same: a finding whose facts changed
(another version, more exposed data) or an acceptance past its date nags again. The
matching is in ``mamori.report.accepted``; reports receive acceptances as these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One accepted risk as stored."""

    id: int
    check_id: str
    address: str
    port: int | None  # None: every port of the address
    reason: str
    until: date | None  # the last day it holds; None: until removed
    fingerprint: str  # evidence_fingerprint() of the finding accepted
    scan_id: int  # the run whose finding was accepted
    created_at: datetime

    def expired(self, today: date) -> bool:
        return self.until is not None and today > self.until
