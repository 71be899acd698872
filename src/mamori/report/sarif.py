"""SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning and other SARIF consumers).

One run. ``tool.driver`` names mamori with its version; its ``rules`` are the checks that
produced a finding, each with the catalog's title, why it matters (``fullDescription``), the
fixes (``help``), a ``security-severity`` score and tags (the layer). Each finding is a
``result``: level ``error`` for critical/high, ``warning`` for medium, ``note`` for low/info;
the message is the finding's summary; the location is the endpoint as an artifact URI
(``tcp://127.0.0.1:6379``, which GitHub accepts as a physical location) plus a logical location
of the same name; ``partialFingerprints`` are stable per (target, proto, port, check) so a
dashboard tracks one finding across runs. Checks that could not run and probes that could not
finish are ``toolExecutionNotifications``, never left out.

Text from the network is passed through ``table.clean`` (control characters escaped, capped);
SARIF viewers render ``message.text`` as plain text, so nothing else needs escaping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mamori.model import CheckResult, CheckStatus, ProbeError, ScanRecord, Severity
from mamori.model.path import PathReport
from mamori.report import text as catalog_text
from mamori.report.paths import outside_lines, path_lines, path_rows
from mamori.report.table import clean

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
FINGERPRINT_KEY = "mamoriFinding/v1"

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub maps security-severity to its labels: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium,
# 0.1-3.9 low; 0.0 is no security severity (info).
_SCORE = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_PLATFORMS = (("linux", "Linux"), ("macos", "macOS"), ("router", "Router"))
_TEXT_LIMIT = 2000


def _text(value: str, limit: int = _TEXT_LIMIT) -> str:
    return clean(" ".join(value.split()), limit)


def location_uri(address: str, proto: str, port: int) -> str:
    """The endpoint as a URI: ``tcp://127.0.0.1:6379``, ``udp://[::1]:53``; ``host://name``
    for checks about the machine itself (port 0)."""
    host = address or "localhost"
    if not port:
        return f"host://{host}"
    if ":" in host:
        host = f"[{host}]"
    return f"{proto}://{host}:{port}"


def fingerprint(c: CheckResult) -> str:
    """Stable per (target, proto, port, check): the same finding tomorrow has the same one."""
    key = "\x1f".join((c.address, c.proto.value, str(c.port), c.check_id))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _location(address: str, proto: str, port: int) -> dict[str, Any]:
    uri = location_uri(address, proto, port)
    return {
        "physicalLocation": {"artifactLocation": {"uri": uri}},
        "logicalLocations": [{"name": uri, "fullyQualifiedName": uri, "kind": "resource"}],
    }


def _fixes_text(fixes: Mapping[str, str]) -> tuple[str, str]:
    lines: list[tuple[str, str]] = []
    for key, label in _PLATFORMS:
        fix = " ".join(fixes.get(key, "").split())
        if fix and fix != "-":
            lines.append((label, _text(fix)))
    if not lines:
        return "No fix given.", "No fix given."
    plain = "\n".join(f"{label}: {fix}" for label, fix in lines)
    markdown = "\n".join(f"- **{label}:** {fix}" for label, fix in lines)
    return plain, markdown


def _rule(check_id: str, results: list[CheckResult], lang: str) -> dict[str, Any]:
    first = results[0]
    worst = max((c.severity for c in results), key=lambda s: s.rank)
    title = _text(catalog_text.title(first, lang), 300)
    why = _text(catalog_text.why(first, lang) or title)
    plain, markdown = _fixes_text(catalog_text.fixes(first, lang))
    rule: dict[str, Any] = {
        "id": check_id,
        "name": "".join(part.capitalize() for part in check_id.replace("_", "-").split("-")),
        "shortDescription": {"text": title},
        "fullDescription": {"text": why},
        "help": {"text": plain, "markdown": markdown},
        "defaultConfiguration": {"level": _LEVEL[worst]},
        "properties": {
            "security-severity": _SCORE[worst],
            "tags": ["security", f"layer:{first.layer.value}", first.layer.value],
            "precision": "very-high",
        },
    }
    refs = [r for r in first.references if r.startswith(("https://", "http://"))]
    if refs:
        rule["helpUri"] = refs[0]
    return rule


def _result(c: CheckResult, rule_index: int, lang: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "severity": c.severity.value,
        "layer": c.layer.value,
        "confidence": c.confidence.value if c.confidence is not None else None,
        "address": c.address,
        "proto": c.proto.value,
        "port": c.port,
    }
    a = c.accepted
    if a is not None:
        props["accepted"] = {"id": a.id, "reason": clean(a.reason, 500),
                             "until": a.until.isoformat() if a.until else None}
    e = c.exposure
    if e is not None:
        props["exposure"] = {
            "address": clean(e.address, 64), "port": e.port, "scope": e.scope.value,
            "firewall": e.firewall.value if e.firewall is not None else None,
            "checkSeverity": e.check_severity.value,
            "reach": e.reach,
        }
    ev = c.evidence
    if ev is not None:
        props["evidence"] = {
            "test": _text(ev.test, 500),
            **({"request": clean(ev.request, 500)} if ev.request else {}),
            **({"reply": clean(ev.reply, 500)} if ev.reply else {}),
            **(
                {"facts": {clean(k, 64): clean(v, 200) for k, v in ev.facts.items()}}
                if ev.facts
                else {}
            ),
        }
    return {
        "ruleId": c.check_id,
        "ruleIndex": rule_index,
        "level": _LEVEL[c.severity],
        "kind": "fail",
        "message": {"text": _text(catalog_text.summary(c, lang))
                    or _text(catalog_text.title(c, lang))},
        "locations": [_location(c.address, c.proto.value, c.port)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(c)},
        # An accepted risk is SARIF's suppression: dashboards keep it, closed as accepted.
        **({"suppressions": [{"kind": "external", "status": "accepted",
                              "justification": _text(a.reason, 500)}]} if a is not None else {}),
        "properties": props,
    }


def _not_tested_notification(c: CheckResult) -> dict[str, Any]:
    reason = c.summary.removeprefix("not tested: ")
    where = location_uri(c.address, c.proto.value, c.port)
    return {
        "level": "warning",
        "message": {"text": f"not tested: {_text(c.check_id, 64)} on {where}: {_text(reason)}"},
        "descriptor": {"id": c.check_id},
        "locations": [_location(c.address, c.proto.value, c.port)],
        "properties": {"status": c.status.value},
    }


def _error_notification(e: ProbeError) -> dict[str, Any]:
    where = (
        location_uri(e.address or "", e.proto.value if e.proto else "tcp", e.port or 0)
        if e.address
        else "the scan"
    )
    probe = f" ({_text(e.probe, 64)})" if e.probe else ""
    note: dict[str, Any] = {
        "level": "warning",
        "message": {
            "text": f"probe not finished on {where}{probe}: {e.kind.value}: {_text(e.detail, 500)}"
        },
        "descriptor": {"id": f"probe-error/{e.kind.value}"},
        "properties": {"kind": e.kind.value},
    }
    if e.address and e.port:
        note["locations"] = [_location(e.address, e.proto.value if e.proto else "tcp", e.port)]
    return note


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sarif_document(record: ScanRecord, lang: str = "en") -> dict[str, Any]:
    """Return ``record`` as a SARIF 2.1.0 log (a dict ready for ``json.dumps``); rule texts
    and result messages in ``lang`` ("en" or "ja"; ids and properties stay English)."""
    findings = [c for c in record.checks if c.status is CheckStatus.FINDING]
    by_rule: dict[str, list[CheckResult]] = {}
    for c in findings:
        by_rule.setdefault(c.check_id, []).append(c)
    rule_ids = sorted(by_rule)
    index = {cid: i for i, cid in enumerate(rule_ids)}
    rules = [_rule(cid, by_rule[cid], lang) for cid in rule_ids]
    results = [
        _result(c, index[c.check_id], lang)
        for c in sorted(findings, key=lambda c: (-c.severity.rank, c.key))
    ]
    notifications = [
        _not_tested_notification(c) for c in record.checks if c.status is CheckStatus.NOT_TESTED
    ]
    notifications += [_error_notification(e) for e in record.errors]
    invocation: dict[str, Any] = {
        "executionSuccessful": record.status.value == "done",
        "startTimeUtc": _utc(record.started_at),
        "toolExecutionNotifications": notifications,
        "properties": {
            "scanId": record.id,
            "kind": record.kind,
            "status": record.status.value,
            "targets": [clean(t, 200) for t in record.targets],
            "checksPassed": sum(1 for c in record.checks if c.status is CheckStatus.PASSED),
            "checksNotTested": sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED),
        },
    }
    if record.finished_at is not None:
        invocation["endTimeUtc"] = _utc(record.finished_at)
    version = record.mamori_version or _mamori_version()
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mamori",
                        "version": version,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"mamori/{record.kind}/"},
                "invocations": [invocation],
                "results": results,
                "columnKind": "unicodeCodePoints",
                "language": "ja-JP" if lang == "ja" else "en-US",
                **({"properties": _paths(record.paths, lang)} if record.paths else {}),
            }
        ],
    }


def _paths(report: PathReport, lang: str) -> dict[str, Any]:
    """The joined verdict per listener and family (run properties: SARIF has no place for
    facts that are not results), with the router, IPv6 and outside lines, in ``lang``."""
    rows = [{"listener": r.listener, "family": r.family, "reach": r.reach_value,
             "reachText": r.reach, "chain": r.chain, "why": r.why}
            for r in path_rows(report, lang)]
    return {"paths": rows, "pathNotes": path_lines(report, lang),
            "outside": outside_lines(report.outside, lang)}


def _mamori_version() -> str:
    from mamori import __version__

    return str(__version__)


def render_sarif(record: ScanRecord, *, lang: str = "en") -> str:
    """Return ``record`` as a SARIF 2.1.0 JSON document (one run), newline-terminated."""
    return json.dumps(sarif_document(record, lang), indent=2, ensure_ascii=False) + "\n"
