"""What changed between two stored runs: findings, open ports and services.

Pure: ``diff_records`` compares two ``ScanRecord``s; ``mamori.report.render_diff`` turns the
result into text. Findings are keyed by (address, proto, port, check id); ports and services by
(address, proto, port).

JSON shape (``render_diff(diff, "json")``, ``diff_version`` "2")::

    {"diff_version": "2", "worse": bool,
     "old": {"id", "kind", "targets", "started_at"}, "new": {...same...},
     "findings": {"new": [F], "fixed": [F], "not_compared": [F + {"reason"}],
                  "changed": [{"old": F, "new": F, "raised": bool}], "accepted": [F]},
     "ports": {"opened": [P], "closed": [P], "not_compared": [P]},
     "services": {"changed": [{"address", "proto", "port", "old": S, "new": S}]}}

    F = {"address", "proto", "port", "check_id", "severity", "confidence", "title", "summary",
         "accepted": {"id", "reason", "until"} | null}
    P = {"address", "proto", "port", "service": S | null}
    S = {"name", "product", "version"}

A claim is made only on what the new run covered (``report.coverage``): a finding is "fixed"
when the new run ran that check on that endpoint and it passed, or probed the port and found
it no longer open; a port is "closed" when the new run probed it and found it closed or
filtered. Every other finding or port of the old run is "not compared", with the reason for a
finding ("not-tested": the check ran and could not finish; "check-not-run": the port is open
and the new run did not run that check; "port-not-probed"), and counts as neither better nor
worse.

Accepted risks (``CheckResult.accepted``, marked on the new run by the command): a new finding
an acceptance covers is listed under "accepted", not "new", and neither it nor a raised
accepted finding makes the diff worse.

Other formats: "table" (plain text), "markdown", "html" (``report.html``), and "sarif": a
SARIF 2.1.0 log of the new run holding only what got worse (new findings with
``baselineState`` "new", raised ones "updated") plus the new run's checks not tested and
probes not finished as notifications, so a code-scanning dashboard alerts on change only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mamori.model import CheckResult, CheckStatus, Endpoint, PortState, ScanRecord, Service
from mamori.report import text as catalog_text
from mamori.report.accepted import accepted_text
from mamori.report.coverage import coverage
from mamori.report.i18n import confidence_name, severity_name, t
from mamori.report.table import clean

DIFF_VERSION = "2"
DIFF_FORMATS = ("table", "json", "markdown", "html", "sarif")

_CONF_RANK = {None: 0, "likely": 1, "confirmed": 2}


@dataclass(frozen=True, slots=True)
class ChangedFinding:
    old: CheckResult
    new: CheckResult

    @property
    def raised(self) -> bool:
        """Worse now: a higher severity, or the same severity with more certainty."""
        if self.new.severity.rank != self.old.severity.rank:
            return self.new.severity.rank > self.old.severity.rank
        old_c = self.old.confidence.value if self.old.confidence else None
        new_c = self.new.confidence.value if self.new.confidence else None
        return _CONF_RANK[new_c] > _CONF_RANK[old_c]


@dataclass(frozen=True, slots=True)
class NotCompared:
    """A finding of the old run the new run did not cover, and why: "not-tested",
    "check-not-run" or "port-not-probed" (see the module docstring)."""

    finding: CheckResult
    reason: str


@dataclass(frozen=True, slots=True)
class ChangedService:
    old: Endpoint
    new: Endpoint


@dataclass(frozen=True, slots=True)
class ScanDiff:
    old: ScanRecord
    new: ScanRecord
    new_findings: tuple[CheckResult, ...]
    fixed: tuple[CheckResult, ...]
    not_compared: tuple[NotCompared, ...]
    changed: tuple[ChangedFinding, ...]
    opened: tuple[Endpoint, ...]
    closed: tuple[Endpoint, ...]
    ports_not_compared: tuple[Endpoint, ...]
    services: tuple[ChangedService, ...]
    accepted: tuple[CheckResult, ...] = ()  # new findings an accepted risk covers

    @property
    def worse(self) -> bool:
        """Anything new, opened, or raised in severity or confidence (accepted risks aside)."""
        return bool(self.new_findings or self.opened
                    or any(c.raised and c.new.accepted is None for c in self.changed))

    @property
    def empty(self) -> bool:
        return not (self.new_findings or self.fixed or self.not_compared or self.changed
                    or self.opened or self.closed or self.ports_not_compared or self.services
                    or self.accepted)


def _open(record: ScanRecord) -> dict[tuple[str, str, int], Endpoint]:
    return {ep.key: ep for h in record.hosts for ep in h.endpoints if ep.state is PortState.OPEN}


def _svc_id(svc: Service | None) -> tuple[str | None, str | None, str | None]:
    if svc is None:
        return (None, None, None)
    return (svc.name, svc.product, svc.version)


def diff_records(old: ScanRecord, new: ScanRecord) -> ScanDiff:
    """Compare ``old`` with ``new`` (see the module docstring for what each part means)."""
    cov = coverage(new)
    old_f = {c.key: c for c in old.findings}
    new_all = {c.key: c for c in new.checks}
    new_f = {c.key: c for c in new.findings}
    fixed: list[CheckResult] = []
    not_compared: list[NotCompared] = []
    changed: list[ChangedFinding] = []
    for key, was in old_f.items():
        now = new_all.get(key)
        if now is None:
            state = cov.state(key[:3])
            if state is None:
                not_compared.append(NotCompared(was, "port-not-probed"))
            elif state is PortState.OPEN:
                not_compared.append(NotCompared(was, "check-not-run"))
            else:
                fixed.append(was)  # probed, no longer open
        elif now.status is CheckStatus.NOT_TESTED:
            not_compared.append(NotCompared(was, "not-tested"))
        elif now.status is CheckStatus.PASSED:
            fixed.append(was)
        elif (now.severity, now.confidence, now.summary) != (
            was.severity, was.confidence, was.summary
        ):
            changed.append(ChangedFinding(was, now))
    old_o, new_o = _open(old), _open(new)
    closed: list[Endpoint] = []
    ports_nc: list[Endpoint] = []
    for k, ep in sorted(old_o.items()):
        if k in new_o:
            continue
        (closed if cov.probed(k) else ports_nc).append(ep)
    services = [
        ChangedService(old_o[k], ep)
        for k, ep in new_o.items()
        if k in old_o and old_o[k].service is not None and ep.service is not None
        and _svc_id(old_o[k].service) != _svc_id(ep.service)
    ]
    return ScanDiff(
        old=old,
        new=new,
        new_findings=tuple(c for k, c in new_f.items() if k not in old_f and c.accepted is None),
        accepted=tuple(c for k, c in new_f.items() if k not in old_f and c.accepted is not None),
        fixed=tuple(fixed),
        not_compared=tuple(not_compared),
        changed=tuple(changed),
        opened=tuple(ep for k, ep in sorted(new_o.items()) if k not in old_o),
        closed=tuple(closed),
        ports_not_compared=tuple(ports_nc),
        services=tuple(sorted(services, key=lambda s: s.new.key)),
    )


# -- rendering -------------------------------------------------------------------------------


def _finding(c: CheckResult) -> dict[str, Any]:
    return {
        "address": c.address, "proto": c.proto.value, "port": c.port, "check_id": c.check_id,
        "severity": c.severity.value,
        "confidence": c.confidence.value if c.confidence is not None else None,
        "title": c.title, "summary": c.summary,
        "accepted": None if c.accepted is None else {
            "id": c.accepted.id, "reason": c.accepted.reason,
            "until": c.accepted.until.isoformat() if c.accepted.until else None},
    }


def _service(svc: Service | None) -> dict[str, Any] | None:
    if svc is None:
        return None
    return {"name": svc.name, "product": svc.product, "version": svc.version}


def _port(ep: Endpoint) -> dict[str, Any]:
    return {"address": ep.address, "proto": ep.proto.value, "port": ep.port,
            "service": _service(ep.service)}


def _run(r: ScanRecord) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "targets": list(r.targets),
            "started_at": r.started_at.isoformat()}


def diff_to_dict(diff: ScanDiff) -> dict[str, Any]:
    """The documented JSON shape of ``diff`` as plain data."""
    return {
        "diff_version": DIFF_VERSION,
        "worse": diff.worse,
        "old": _run(diff.old),
        "new": _run(diff.new),
        "findings": {
            "new": [_finding(c) for c in diff.new_findings],
            "fixed": [_finding(c) for c in diff.fixed],
            "not_compared": [{**_finding(n.finding), "reason": n.reason}
                             for n in diff.not_compared],
            "changed": [{"old": _finding(c.old), "new": _finding(c.new), "raised": c.raised}
                        for c in diff.changed],
            "accepted": [_finding(c) for c in diff.accepted],
        },
        "ports": {"opened": [_port(e) for e in diff.opened],
                  "closed": [_port(e) for e in diff.closed],
                  "not_compared": [_port(e) for e in diff.ports_not_compared]},
        "services": {"changed": [
            {"address": s.new.address, "proto": s.new.proto.value, "port": s.new.port,
             "old": _service(s.old.service), "new": _service(s.new.service)}
            for s in diff.services
        ]},
    }


def _where(address: str, port: int, proto: str) -> str:
    host = clean(address, 64)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}/{proto}"


def _svc_text(svc: Service | None) -> str:
    if svc is None:
        return "-"
    return " ".join(clean(p, 80) for p in (svc.name, svc.product, svc.version) if p)


def reason_text(reason: str, lang: str) -> str:
    """Why a finding was not compared, in words."""
    return t(f"diff.reason.{reason}", lang)


def _sev(value: str, lang: str) -> str:
    return value if lang == "en" else severity_name(value, lang)


def _conf(c: CheckResult, lang: str) -> str:
    if c.confidence is None:
        return "-"
    return c.confidence.value if lang == "en" else confidence_name(c.confidence.value, lang)


def _head(diff: ScanDiff, lang: str) -> str:
    return t("diff.head", lang, old=diff.old.id, old_time=f"{diff.old.started_at:%Y-%m-%d %H:%M}",
             new=diff.new.id, new_time=f"{diff.new.started_at:%Y-%m-%d %H:%M}",
             targets=", ".join(clean(x, 120) for x in diff.new.targets) or "-")


def render_diff_table(diff: ScanDiff, lang: str = "en") -> str:
    lines = [_head(diff, lang)]
    if diff.empty:
        lines.append(t("diff.no_change", lang))
        return "\n".join(lines) + "\n"
    lines.append(t("diff.worse" if diff.worse else "diff.not_worse", lang))

    def section(key: str, rows: list[str]) -> None:
        if rows:
            lines.append("")
            lines.append(f"{t(key, lang)} ({len(rows)})")
            lines.extend(f"  {r}" for r in rows)

    def f_row(mark: str, c: CheckResult) -> str:
        return (f"{mark} {_sev(c.severity.value, lang):<8} "
                f"{_where(c.address, c.port, c.proto.value)} "
                f"{clean(c.check_id, 64)}: {clean(catalog_text.one_line(c, lang), 300)}")

    section("diff.new", [f_row("+", c) for c in diff.new_findings])
    section("diff.changed", [
        f"{'^' if c.raised else '~'} {_where(c.new.address, c.new.port, c.new.proto.value)} "
        f"{clean(c.new.check_id, 64)}: {_sev(c.old.severity.value, lang)}/{_conf(c.old, lang)}"
        f" -> {_sev(c.new.severity.value, lang)}/{_conf(c.new, lang)}: "
        f"{clean(catalog_text.one_line(c.new, lang), 300)}"
        for c in diff.changed
    ])
    section("diff.accepted", [f"{f_row('=', c)} ({clean(accepted_text(c, lang), 600)})"
                              for c in diff.accepted])
    section("diff.fixed", [f_row("-", c) for c in diff.fixed])
    section("diff.not_compared", [f"{f_row('?', n.finding)} ({reason_text(n.reason, lang)})"
                                  for n in diff.not_compared])
    section("diff.opened", [f"+ {_where(e.address, e.port, e.proto.value)} "
                            f"{_svc_text(e.service)}" for e in diff.opened])
    section("diff.closed", [f"- {_where(e.address, e.port, e.proto.value)} "
                            f"{_svc_text(e.service)}" for e in diff.closed])
    section("diff.ports_not_compared", [f"? {_where(e.address, e.port, e.proto.value)} "
                                        f"{_svc_text(e.service)}"
                                        for e in diff.ports_not_compared])
    section("diff.services", [
        f"~ {_where(s.new.address, s.new.port, s.new.proto.value)} "
        f"{_svc_text(s.old.service)} -> {_svc_text(s.new.service)}"
        for s in diff.services
    ])
    return "\n".join(lines) + "\n"


def render_diff_markdown(diff: ScanDiff, lang: str = "en") -> str:
    from mamori.report.markdown import md_text

    def where(address: str, port: int, proto: str) -> str:
        return md_text(_where(address, port, proto), 80)

    def finding(c: CheckResult) -> str:
        return (f"- **{severity_name(c.severity.value, lang).upper()}** "
                f"{md_text(catalog_text.title(c, lang), 160)} "
                f"{t('doc.on', lang)} {where(c.address, c.port, c.proto.value)} "
                f"(`{clean(c.check_id, 64)}`): {md_text(catalog_text.one_line(c, lang), 300)}")

    lines = [f"# {t('diff.title', lang, old=diff.old.id, new=diff.new.id)}", ""]
    for key, run in (("diff.old_run", diff.old), ("diff.new_run", diff.new)):
        targets = ", ".join(md_text(x, 100) for x in run.targets) or "-"
        lines.append(f"- {t(key, lang)}: #{run.id} {md_text(run.kind, 20)}, "
                     f"{run.started_at:%Y-%m-%d %H:%M}, {targets}")
    lines.append("")
    if diff.empty:
        lines.append(t("diff.no_change", lang))
        return "\n".join(lines) + "\n"
    lines.append(f"**{t('diff.worse' if diff.worse else 'diff.not_worse', lang)}**")

    def section(key: str, rows: list[str]) -> None:
        if rows:
            lines.extend(["", f"## {t(key, lang)} ({len(rows)})", "", *rows])

    section("diff.new", [finding(c) for c in diff.new_findings])
    section("diff.changed", [
        f"- {'▲' if c.raised else '~'} {md_text(catalog_text.title(c.new, lang), 160)} "
        f"{t('doc.on', lang)} {where(c.new.address, c.new.port, c.new.proto.value)} "
        f"(`{clean(c.new.check_id, 64)}`): {_sev(c.old.severity.value, lang)}/"
        f"{_conf(c.old, lang)} → {_sev(c.new.severity.value, lang)}/{_conf(c.new, lang)}"
        for c in diff.changed
    ])
    section("diff.accepted", [f"{finding(c)} ({md_text(accepted_text(c, lang), 600)})"
                              for c in diff.accepted])
    section("diff.fixed", [finding(c) for c in diff.fixed])
    section("diff.not_compared", [f"{finding(n.finding)} ({reason_text(n.reason, lang)})"
                                  for n in diff.not_compared])
    for key, eps in (("diff.opened", diff.opened), ("diff.closed", diff.closed),
                     ("diff.ports_not_compared", diff.ports_not_compared)):
        if eps:
            lines.extend(["", f"## {t(key, lang)} ({len(eps)})", "",
                          f"| {t('doc.address_port', lang)} | {t('doc.service', lang)} |",
                          "|---|---|"])
            lines.extend(f"| {where(e.address, e.port, e.proto.value)} | "
                         f"{md_text(_svc_text(e.service), 120) or '-'} |" for e in eps)
    section("diff.services", [
        f"- {where(s.new.address, s.new.port, s.new.proto.value)}: "
        f"{md_text(_svc_text(s.old.service), 120)} → {md_text(_svc_text(s.new.service), 120)}"
        for s in diff.services
    ])
    return "\n".join(lines) + "\n"


def diff_sarif_document(diff: ScanDiff, lang: str = "en") -> dict[str, Any]:
    """The SARIF log of what got worse (see the module docstring)."""
    from mamori.report.sarif import sarif_document

    state = {c.key: "new" for c in diff.new_findings}
    state.update({c.new.key: "updated" for c in diff.changed
                  if c.raised and c.new.accepted is None})
    keep = tuple(
        c for c in diff.new.checks
        if c.key in state or c.status is CheckStatus.NOT_TESTED
    )
    doc = sarif_document(replace(diff.new, checks=keep), lang)
    run = doc["runs"][0]
    for result in run["results"]:
        props = result["properties"]
        key = (props["address"], props["proto"], props["port"], result["ruleId"])
        result["baselineState"] = state[key]
    run["automationDetails"]["id"] = f"mamori/diff/{diff.new.kind}/"
    props = run["invocations"][0]["properties"]
    props["baselineScanId"] = diff.old.id
    # What the new run did not cover is neither a result nor fixed: counted, never alerted on.
    props["notCompared"] = {"findings": len(diff.not_compared),
                            "ports": len(diff.ports_not_compared)}
    return doc
