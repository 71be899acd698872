"""Which findings an accepted risk covers (``model.Acceptance``). Pure: the commands read the
acceptances from the store and hand them here; reports then see ``CheckResult.accepted``.

An acceptance covers a finding when it names its check and address (and its port, unless it
names every port), has not expired, and the finding's evidence fingerprint is the one accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import date

from mamori.model import Acceptance, CheckResult, CheckStatus, ScanRecord, Severity
from mamori.report.i18n import t

# Facts that differ from run to run while the finding stays the same (counters, clocks, the
# random canary of each run): left out of the fingerprint, or every acceptance would lapse.
VOLATILE_FACTS = frozenset({
    "connected_clients", "curr_connections", "curr_items", "total_items", "uptime", "bytes",
    "bytes_in", "bytes_out", "datagrams", "factor", "days_expired", "pid", "canary_url",
    "proof", "monlist_clients", "monlist_entries", "stats", "statistics",
})


def evidence_fingerprint(result: CheckResult) -> str:
    """A short digest of what the finding showed: its check, endpoint, severity and evidence
    facts (the parsed values, e.g. a version or a role; ``VOLATILE_FACTS`` left out)."""
    facts = ({k: v for k, v in result.evidence.facts.items() if k not in VOLATILE_FACTS}
             if result.evidence is not None else {})
    doc = {"check": result.check_id, "address": result.address, "proto": result.proto.value,
           "port": result.port, "severity": result.severity.value, "facts": facts}
    raw = json.dumps(doc, sort_keys=True, ensure_ascii=True).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def names(acceptance: Acceptance, result: CheckResult) -> bool:
    """True when ``acceptance`` is about ``result``'s check and endpoint."""
    return (result.check_id == acceptance.check_id and result.address == acceptance.address
            and (acceptance.port is None or acceptance.port == result.port))


def acceptance_for(
    result: CheckResult, acceptances: Iterable[Acceptance], today: date
) -> Acceptance | None:
    """The acceptance that covers the finding ``result`` today, or None (not a finding, none
    names it, it expired, or the evidence changed)."""
    if result.status is not CheckStatus.FINDING:
        return None
    fingerprint = evidence_fingerprint(result)
    for a in acceptances:
        if names(a, result) and not a.expired(today) and a.fingerprint == fingerprint:
            return a
    return None


def apply_acceptances(
    record: ScanRecord, acceptances: Iterable[Acceptance], today: date
) -> ScanRecord:
    """``record`` with each finding an acceptance covers today marked ``accepted`` (and any
    earlier mark dropped)."""
    pool = tuple(acceptances)
    checks = tuple(replace(c, accepted=acceptance_for(c, pool, today)) for c in record.checks)
    return replace(record, checks=checks)


def failing(record: ScanRecord, threshold: Severity) -> bool:
    """True when a finding at or above ``threshold`` is not accepted (what --fail-on asks)."""
    return any(f.severity.rank >= threshold.rank and f.accepted is None
               for f in record.findings)


def accepted_text(result: CheckResult, lang: str) -> str:
    """"accepted risk #ID: REASON (until DATE)" in ``lang`` (the reason as typed: callers
    clean it for their format); "" when ``result`` is not accepted."""
    a = result.accepted
    if a is None:
        return ""
    until = (t("accepted.until", lang, date=a.until.isoformat()) if a.until
             else t("accepted.no_end", lang))
    return t("accepted.line", lang, id=a.id, reason=a.reason, until=until)
