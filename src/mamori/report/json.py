"""JSON output: the documented, versioned shape of ``--format json`` (docs/json-output.md).

The shape is described by docs/schema/scan-v1.json; change both together and bump
``model.JSON_SCHEMA_VERSION`` (minor: fields added; major: fields changed or removed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mamori.model import (
    JSON_SCHEMA_VERSION,
    Acceptance,
    CheckResult,
    CheckStatus,
    Endpoint,
    Evidence,
    Exposure,
    HostResult,
    ListenerRecord,
    PortState,
    ProbeError,
    ScanRecord,
    ScanStatus,
    ScanSummary,
    Service,
    Severity,
)
from mamori.model.path_json import path_report_dict

SCAN_SCHEMA_ID = f"mamori.scan/{JSON_SCHEMA_VERSION}"


def iso_utc(value: datetime | None) -> str | None:
    """Return ``value`` as RFC 3339 UTC text ending in "Z", or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the store only hands out UTC; be lenient
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration_s(started: datetime, finished: datetime | None) -> float | None:
    """Return the seconds between start and finish (3 decimals), or None if unfinished."""
    if finished is None:
        return None
    return round((finished - started).total_seconds(), 3)


def service_to_dict(svc: Service) -> dict[str, Any]:
    """Return the JSON object for one identified service."""
    return {
        "name": svc.name,
        "product": svc.product,
        "version": svc.version,
        "tls": svc.tls,
        "confidence": svc.confidence,
        "method": svc.method,
        "banner": svc.banner,
        "extra": {str(k): str(v) for k, v in svc.extra.items()},
    }


def endpoint_to_dict(ep: Endpoint) -> dict[str, Any]:
    """Return the JSON object for one endpoint (its address is the enclosing host's)."""
    return {
        "port": ep.port,
        "proto": ep.proto.value,
        "state": ep.state.value,
        "reason": ep.reason.value,
        "rtt_ms": ep.rtt_ms,
        "service": service_to_dict(ep.service) if ep.service is not None else None,
    }


def host_to_dict(host: HostResult) -> dict[str, Any]:
    """Return the JSON object for one host with its endpoints and not-shown counts."""
    return {
        "address": host.address,
        "hostname": host.hostname,
        "endpoints": [endpoint_to_dict(ep) for ep in host.endpoints],
        "not_shown": {
            str(proto): {str(k): int(n) for k, n in counts.items()}
            for proto, counts in host.not_shown.items()
        },
    }


def error_to_dict(err: ProbeError) -> dict[str, Any]:
    """Return the JSON object for one probe that could not finish."""
    return {
        "address": err.address,
        "port": err.port,
        "proto": err.proto.value if err.proto is not None else None,
        "kind": err.kind.value,
        "detail": err.detail,
        "probe": err.probe,
    }


REMEDIATION_KEYS = ("linux", "macos", "router")


def evidence_to_dict(ev: Evidence) -> dict[str, Any]:
    """Return the JSON object for a check's evidence (request/reply are remote-controlled)."""
    return {
        "test": ev.test,
        "request": ev.request,
        "reply": ev.reply,
        "facts": {str(k): str(v) for k, v in ev.facts.items()},
    }


def check_to_dict(result: CheckResult) -> dict[str, Any]:
    """Return the JSON object for one check run against one endpoint."""
    remediation: dict[str, str | None] = {k: result.remediation.get(k) for k in REMEDIATION_KEYS}
    # Any further platform a check names is kept, never dropped.
    remediation.update(
        {str(k): str(v) for k, v in result.remediation.items() if k not in REMEDIATION_KEYS}
    )
    return {
        "check_id": result.check_id,
        "address": result.address,
        "port": result.port,
        "proto": result.proto.value,
        "status": result.status.value,
        "severity": result.severity.value,
        "layer": result.layer.value,
        "confidence": result.confidence.value if result.confidence is not None else None,
        "title": result.title,
        "summary": result.summary,
        "evidence": evidence_to_dict(result.evidence) if result.evidence is not None else None,
        "remediation": remediation,
        "references": list(result.references),
        "texts": {
            str(lang): {
                "title": text.title,
                "summary": text.summary,
                "why": text.why,
                "fixes": {str(k): str(v) for k, v in text.fixes.items()},
            }
            for lang, text in result.texts.items()
        },
        "exposure": exposure_to_dict(result.exposure) if result.exposure is not None else None,
        "accepted": acceptance_to_dict(result.accepted),
    }


def acceptance_to_dict(a: Acceptance | None) -> dict[str, Any] | None:
    """The JSON object of the accepted risk that covers a finding in this report, or None."""
    if a is None:
        return None
    return {"id": a.id, "reason": a.reason, "until": a.until.isoformat() if a.until else None,
            "accepted_from_scan": a.scan_id}


def exposure_to_dict(e: Exposure) -> dict[str, Any]:
    """Return the JSON object for the exposure that graded a `mamori check` finding."""
    return {
        "address": e.address,
        "port": e.port,
        "scope": e.scope.value,
        "firewall": e.firewall.value if e.firewall is not None else None,
        "check_severity": e.check_severity.value,
        "reach": e.reach,
    }


def listener_to_dict(rec: ListenerRecord) -> dict[str, Any]:
    """Return the JSON object for one listening socket of the audited machine."""
    firewall = None
    if rec.firewall is not None:
        firewall = {
            "verdict": rec.firewall.value,
            "backend": rec.firewall_backend,
            "reason": rec.firewall_reason,
            "rule": rec.firewall_rule,
        }
    service = None
    if rec.service is not None:
        service = {"name": rec.service, "product": rec.product}
    return {
        "proto": rec.proto.value,
        "address": rec.address,
        "port": rec.port,
        "scope": rec.scope.value,
        "pid": rec.pid,
        "process": rec.process,
        "user": rec.user,
        "exe": rec.exe,
        "firewall": firewall,
        "service": service,
        "probe_address": rec.probe_address,
        "not_probed": rec.not_probed,
    }


def listener_counts(listeners: Sequence[ListenerRecord]) -> dict[str, int]:
    """Return the summary's listener counts: all of them, and those reachable from outside
    (not loopback-only, and the firewall allows them or there is none)."""
    exposed = sum(
        1
        for r in listeners
        if r.scope.value != "loopback"
        and r.firewall is not None
        and r.firewall.value in ("allowed", "no-firewall")
    )
    return {"listeners": len(listeners), "listeners_exposed": exposed}


def check_counts(checks: Sequence[CheckResult]) -> dict[str, Any]:
    """Return the summary's check counts: findings per severity (every level, worst first),
    passed, not tested, and the total."""
    findings = {s.value: 0 for s in sorted(Severity, key=lambda s: -s.rank)}
    passed = not_tested = 0
    for c in checks:
        if c.status is CheckStatus.FINDING:
            findings[c.severity.value] += 1
        elif c.status is CheckStatus.PASSED:
            passed += 1
        else:
            not_tested += 1
    return {
        "checks": len(checks),
        "findings": findings,
        "passed": passed,
        "not_tested": not_tested,
    }


def scan_to_dict(record: ScanRecord) -> dict[str, Any]:
    """Return the whole scan as plain JSON-ready data (schema ``mamori.scan/1.x``)."""
    open_ports = sum(1 for h in record.hosts for ep in h.endpoints if ep.state is PortState.OPEN)
    return {
        "schema": SCAN_SCHEMA_ID,
        "scan": {
            "id": record.id,
            "kind": record.kind,
            "status": record.status.value,
            "complete": record.status is ScanStatus.DONE,
            "started_at": iso_utc(record.started_at),
            "finished_at": iso_utc(record.finished_at),
            "duration_s": duration_s(record.started_at, record.finished_at),
            "targets": list(record.targets),
            "options": dict(record.options),
            "mamori_version": record.mamori_version,
        },
        "summary": {
            "hosts": len(record.hosts),
            "endpoints": sum(len(h.endpoints) for h in record.hosts),
            "open_ports": open_ports,
            "errors": len(record.errors),
            **check_counts(record.checks),
            **listener_counts(record.listeners),
        },
        "hosts": [host_to_dict(h) for h in record.hosts],
        "errors": [error_to_dict(e) for e in record.errors],
        "checks": [check_to_dict(c) for c in record.checks],
        "listeners": [listener_to_dict(r) for r in record.listeners],
        "paths": path_report_dict(record.paths) if record.paths is not None else None,
    }


def summary_to_dict(summary: ScanSummary) -> dict[str, Any]:
    """Return one history entry as plain JSON-ready data."""
    return {
        "id": summary.id,
        "kind": summary.kind,
        "status": summary.status.value,
        "started_at": iso_utc(summary.started_at),
        "finished_at": iso_utc(summary.finished_at),
        "duration_s": duration_s(summary.started_at, summary.finished_at),
        "targets": list(summary.targets),
        "open_ports": summary.open_ports,
        "errors": summary.error_count,
    }


def _dumps(data: Any) -> str:
    # ensure_ascii: remote-controlled text (banners) leaves as \u escapes, never as raw
    # control characters that a terminal would interpret.
    return json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False, default=str) + "\n"


def render_json(record: ScanRecord) -> str:
    """Return the scan as JSON text (ends with a newline)."""
    return _dumps(scan_to_dict(record))


def render_history_json(summaries: Sequence[ScanSummary]) -> str:
    """Return the scan history as a JSON list, newest first as given (ends with a newline)."""
    return _dumps([summary_to_dict(s) for s in summaries])
