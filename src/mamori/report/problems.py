"""``--only-problems``: what the human formats leave out, and what they say they left out.

Hidden: checks that passed, info-level findings, and closed/filtered detail (ports that are
not open, the "not shown" counts). Kept: every finding from low up, every check not tested
and every probe that could not finish (they are not clean), the open ports, the listeners.
JSON and SARIF always hold everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from mamori.model import CheckStatus, PortState, ScanRecord, Severity

_NO_COUNTS: Mapping[str, Mapping[str, int]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Hidden:
    """How much ``only_problems`` left out."""

    passed: int = 0
    info: int = 0
    closed: int = 0  # closed/filtered ports listed one by one or counted as "not shown"

    @property
    def any(self) -> bool:
        return bool(self.passed or self.info or self.closed)


def only_problems(record: ScanRecord) -> tuple[ScanRecord, Hidden]:
    """``record`` without passed checks, info findings and closed/filtered ports, and the
    counts of what went."""
    checks = tuple(
        c for c in record.checks
        if c.status is CheckStatus.NOT_TESTED
        or (c.status is CheckStatus.FINDING and c.severity is not Severity.INFO)
    )
    passed = sum(1 for c in record.checks if c.status is CheckStatus.PASSED)
    info = sum(
        1 for c in record.checks
        if c.status is CheckStatus.FINDING and c.severity is Severity.INFO
    )
    closed = 0
    hosts = []
    for host in record.hosts:
        kept = tuple(ep for ep in host.endpoints if ep.state is PortState.OPEN)
        closed += len(host.endpoints) - len(kept)
        closed += sum(n for counts in host.not_shown.values() for n in counts.values())
        hosts.append(replace(host, endpoints=kept, not_shown=_NO_COUNTS))
    filtered = replace(record, checks=checks, hosts=tuple(hosts))
    return filtered, Hidden(passed=passed, info=info, closed=closed)
