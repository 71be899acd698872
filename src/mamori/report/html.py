"""HTML: one self-contained file a person reads on a phone, prints, or opens from a ticket.

No network loads at all: inline CSS, an inline SVG chart, and one small inline script (copy
buttons, open/close all, open every finding before printing) allowed by its sha256 hash in a
Content-Security-Policy that forbids everything else (``default-src 'none'``). Without the
script the page still reads: findings are ``<details>`` that open on click; the copy buttons
stay hidden. ``@media print`` opens every finding and hides the buttons.

Text is rendered by Jinja2 with autoescaping on, always: banners, replies, summaries and
every other string that came from the network or another process can only ever be text.
Control characters are escaped first (``table.clean``), and long values are capped.

For ``mamori serve``: ``render_html_fragment`` (and ``render_diff_fragment``) return the
report's ``<div class="mamori-report">`` alone, every style scoped under that class, to embed
in a page that includes ``REPORT_CSS`` and ``REPORT_SCRIPT`` (allow it by ``script_hash()``);
``render_html`` / ``render_diff_html`` return the whole document.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from mamori.model import (
    CheckResult,
    CheckStatus,
    Layer,
    ListenerRecord,
    ProbeError,
    ScanRecord,
    Severity,
)
from mamori.report import problems
from mamori.report import text as catalog_text
from mamori.report.accepted import accepted_text
from mamori.report.checklist import exposed, listener_for
from mamori.report.diff import ScanDiff, reason_text
from mamori.report.i18n import confidence_name, layer_name, severity_name, t
from mamori.report.json import duration_s
from mamori.report.paths import outside_lines, path_lines, path_rows
from mamori.report.problems import Hidden
from mamori.report.table import (
    clean,
    findings_by_layer,
    format_duration,
    format_time,
    worst_first,
)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
REPORT_CSS = (TEMPLATE_DIR / "report.css").read_text(encoding="utf-8")
REPORT_SCRIPT = (TEMPLATE_DIR / "report.js").read_text(encoding="utf-8")

_REMOTE = 300  # inline remote text (summaries, facts, banners) is capped here
_EXCERPT = 2000  # request and reply excerpts
_SEVERITIES = sorted(Severity, key=lambda s: -s.rank)
_CODE_SPAN = re.compile(r"(`[^`]*`)")
_UI_KEYS = {
    "why": "why", "evidence": "evidence", "test": "test", "sent": "sent", "received": "received",
    "fix": "fix", "no_fix": "no_fix_given", "copy_label": "html.copy", "copied": "html.copied",
    "copy_failed": "html.copy_failed", "listener": "doc.listener", "firewall": "doc.firewall",
    "rule": "doc.rule", "kind": "doc.kind", "status": "doc.status", "started": "doc.started",
    "finished": "doc.finished", "duration": "html.duration", "version": "doc.version",
    "summary": "summary", "top_three": "top_three", "no_findings": "no_findings",
    "findings": "findings", "open_all": "html.open_all", "close_all": "html.close_all",
    "not_tested": "not_tested", "not_tested_intro": "html.not_tested_intro",
    "ports": "doc.ports", "address": "doc.address", "port": "doc.port", "state": "doc.state",
    "service": "doc.service", "product": "doc.product", "banner": "doc.banner",
    "no_open_ports": "doc.no_open_ports", "proto": "doc.proto",
    "address_port": "doc.address_port", "scope": "doc.scope", "process": "doc.process",
    "user": "doc.user", "none_found": "doc.none_found",
    "untested_note": "doc.untested_note", "old_run": "diff.old_run", "new_run": "diff.new_run",
    "targets": "doc.targets", "exposure": "exposure.label",
}


def script_hash() -> str:
    """The CSP source that allows ``REPORT_SCRIPT`` inline: ``'sha256-…'``."""
    digest = hashlib.sha256(REPORT_SCRIPT.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy() -> str:
    """Nothing may be loaded from anywhere: inline styles, the one hashed script, data:
    images; no base URL, no form target, no frames."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src {script_hash()}; img-src data:; base-uri 'none'; form-action 'none'"
    )


@cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# -- text helpers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """A run of catalog text; ``code`` for what the catalog wrote between backticks."""

    text: str
    code: bool = False


def _parts(value: str) -> list[Part]:
    """Catalog text (mamori's own) split into prose and inline code; whitespace collapsed."""
    flat = " ".join(value.split())
    return [
        Part(piece[1:-1], True) if i % 2 else Part(piece)
        for i, piece in enumerate(_CODE_SPAN.split(flat))
        if piece
    ]


def _excerpt(value: str | None, limit: int = _EXCERPT) -> str:
    """A request or reply excerpt: line breaks kept, every other control character escaped."""
    if not value:
        return ""
    lines = [clean(line, limit) for line in value[:limit].splitlines()]
    return "\n".join(lines) + ("\n…" if len(value) > limit else "")


def _where(address: str, port: int, proto: str, lang: str) -> str:
    if not port:
        return t("this_machine", lang)
    host = clean(address, 64)
    return f"[{host}]:{port}/{proto}" if ":" in host else f"{host}:{port}/{proto}"


def _ui(lang: str) -> dict[str, str]:
    return {name: t(key, lang) for name, key in _UI_KEYS.items()}


# -- the scan report -------------------------------------------------------------------------


def _listener_view(rec: ListenerRecord, lang: str) -> dict[str, str]:
    proc = clean(rec.process, 60) if rec.process else "?"
    pid = f" ({rec.pid})" if rec.pid is not None else ""
    user = t("table.as_user", lang, user=clean(rec.user, 40)) if rec.user else ""
    where = _where(rec.address, rec.port, rec.proto.value, lang)
    if rec.firewall is None:
        firewall = t("table.fw_not_asked" if rec.scope.value == "loopback" else "table.unknown",
                     lang)
    else:
        firewall = rec.firewall.value
        if rec.firewall_backend:
            firewall += f" ({clean(rec.firewall_backend, 32)})"
        if rec.firewall_reason:
            firewall += f": {clean(rec.firewall_reason, _REMOTE)}"
    return {
        "text": f"{proc}{pid}{user} · {where} ({rec.scope.value})",
        "firewall": firewall,
        "rule": clean(rec.firewall_rule, _REMOTE) if rec.firewall_rule else "",
    }


def _finding_view(
    n: int, c: CheckResult, listeners: Sequence[ListenerRecord], lang: str, prefix: str
) -> dict[str, Any]:
    dom_id = f"{prefix}-finding-{n}"
    why = catalog_text.why(c, lang)
    ev = c.evidence
    evidence = None
    if ev is not None:
        evidence = {
            "test": clean(" ".join(ev.test.split()), _REMOTE * 2),
            "facts": [(clean(k, 64), clean(v, _REMOTE)) for k, v in ev.facts.items()],
            "request": _excerpt(ev.request),
            "reply": _excerpt(ev.reply),
        }
    rec = listener_for(c, listeners) if c.port else None
    fixes = []
    for key, value in catalog_text.fixes(c, lang).items():
        if value.strip() and value.strip() != "-":
            fixes.append({
                "platform": catalog_text.PLATFORM_LABEL[key],
                "parts": _parts(clean(value, 4000)),
                "dom_id": f"{dom_id}-fix-{key}",
            })
    return {
        "n": n,
        "dom_id": dom_id,
        "severity": c.severity.value,
        "severity_label": severity_name(c.severity.value, lang).upper(),
        "confidence": confidence_name(c.confidence.value if c.confidence else None, lang),
        "title": clean(catalog_text.title(c, lang), 200),
        "check_id": clean(c.check_id, 64),
        "where": _where(c.address, c.port, c.proto.value, lang),
        "summary": clean(" ".join(catalog_text.summary(c, lang).split()), _REMOTE * 2),
        "exposure": clean(catalog_text.exposure(c, lang) or "", _REMOTE),
        "accepted": clean(accepted_text(c, lang), 600),
        "why_parts": _parts(why) if why else [],
        "evidence": evidence,
        "listener": _listener_view(rec, lang) if rec is not None else None,
        "fixes": fixes,
    }


def _layers(record: ScanRecord, lang: str, prefix: str) -> list[dict[str, Any]]:
    """Every layer (the one holding the worst finding first), findings worst first and
    numbered in page order."""
    out, n = [], 0
    for layer, group in findings_by_layer(record.findings):
        views = []
        for c in group:
            n += 1
            views.append(_finding_view(n, c, record.listeners, lang, prefix))
        out.append({"key": layer.value, "title": t(f"layer_title.{layer.value}", lang),
                     "findings": views})
    return out


def _chart(findings: Sequence[CheckResult], lang: str) -> dict[str, Any]:
    """Two bar groups in one SVG: findings by severity, and by layer (each layer's bar
    stacked by severity). Coordinates in a 400-wide viewBox; the SVG scales to the page."""
    width, label_w, count_w, row, bar_h = 400, 118, 34, 24, 15
    bar_max = width - label_w - count_w
    rects: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    by_sev = {s: sum(1 for c in findings if c.severity is s) for s in Severity}
    by_layer = {
        layer: {s: sum(1 for c in findings if c.layer is layer and c.severity is s)
                for s in Severity}
        for layer in Layer
    }
    top = max([1, *by_sev.values(), *(sum(v.values()) for v in by_layer.values())])
    y = 16
    texts.append({"x": 0, "y": y, "text": t("html.by_severity", lang), "cls": "mr-chart-title",
                  "anchor": ""})
    y += 8
    for sev in _SEVERITIES:
        n = by_sev[sev]
        name = severity_name(sev.value, lang)
        texts.append({"x": 0, "y": y + 12, "text": name, "cls": "", "anchor": ""})
        rects.append({"x": label_w, "y": y, "w": bar_max, "h": bar_h, "cls": "mr-track",
                      "tip": ""})
        if n:
            rects.append({"x": label_w, "y": y, "w": round(bar_max * n / top, 1), "h": bar_h,
                          "cls": f"mr-fill-{sev.value}", "tip": f"{name}: {n}"})
        texts.append({"x": width, "y": y + 12, "text": str(n), "cls": "mr-count",
                      "anchor": "end"})
        y += row
    y += 14
    texts.append({"x": 0, "y": y, "text": t("html.by_layer", lang), "cls": "mr-chart-title",
                  "anchor": ""})
    y += 8
    for layer in Layer:
        counts = by_layer[layer]
        texts.append({"x": 0, "y": y + 12, "text": layer_name(layer.value, lang), "cls": "",
                      "anchor": ""})
        rects.append({"x": label_w, "y": y, "w": bar_max, "h": bar_h, "cls": "mr-track",
                      "tip": ""})
        x = float(label_w)
        for sev in _SEVERITIES:
            n = counts[sev]
            if n:
                w = round(bar_max * n / top, 1)
                rects.append({"x": round(x, 1), "y": y, "w": w, "h": bar_h,
                              "cls": f"mr-fill-{sev.value}",
                              "tip": f"{layer_name(layer.value, lang)}, "
                                     f"{severity_name(sev.value, lang)}: {n}"})
                x += w
        texts.append({"x": width, "y": y + 12, "text": str(sum(counts.values())),
                      "cls": "mr-count", "anchor": "end"})
        y += row
    return {"width": width, "height": y + 4, "rects": rects, "texts": texts,
            "title": t("html.chart", lang)}


def _summary(record: ScanRecord, lang: str, hidden: Hidden | None,
             layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    findings = record.findings
    by_key = {(f["check_id"], f["where"]): f for layer in layers for f in layer["findings"]}
    top = []
    for c in worst_first(findings)[:3]:
        view = by_key.get((clean(c.check_id, 64), _where(c.address, c.port, c.proto.value, lang)))
        if view is not None:
            top.append(view)
    passed = sum(1 for c in record.checks if c.status is CheckStatus.PASSED)
    if hidden is not None:
        passed = hidden.passed
    not_tested = sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED)
    return {
        "total": len(findings),
        "total_line": t("doc.findings_n", lang, n=len(findings)),
        "counts": [
            {"severity": s.value, "label": severity_name(s.value, lang).upper(),
             "n": sum(1 for c in findings if c.severity is s)}
            for s in _SEVERITIES
        ],
        "top": top,
        "checks_line": t("doc.checks_line", lang, passed=passed, not_tested=not_tested,
                         errors=len(record.errors)),
        "hidden_line": t("only_problems_hidden", lang, passed=hidden.passed, info=hidden.info,
                         closed=hidden.closed) if hidden is not None else "",
    }


def _not_tested(record: ScanRecord, lang: str) -> list[dict[str, str]]:
    return [
        {
            "check_id": clean(c.check_id, 64),
            "title": clean(catalog_text.title(c, lang), 200),
            "where": _where(c.address, c.port, c.proto.value, lang),
            "reason": clean(c.summary.removeprefix("not tested: "), _REMOTE),
        }
        for c in record.checks
        if c.status is CheckStatus.NOT_TESTED
    ]


def _ports(record: ScanRecord, lang: str) -> tuple[list[dict[str, str]], list[str]]:
    rows = []
    for host in record.hosts:
        for ep in host.endpoints:
            svc = ep.service
            name = "-"
            product = ""
            banner = ""
            if svc is not None:
                name = clean(svc.name, 40) + (" (TLS)" if svc.tls else "")
                if svc.confidence == "port":
                    name += "?"
                product = " ".join(clean(p, 80) for p in (svc.product, svc.version) if p)
                banner = clean(" ".join((svc.banner or "").split()), 100)
            rows.append({
                "address": clean(ep.address, 64), "port": f"{ep.port}/{ep.proto.value}",
                "state": ep.state.value, "service": name, "product": product or "-",
                "banner": banner or "-",
            })
    not_shown = []
    for host in record.hosts:
        for proto in sorted(host.not_shown):
            counts = ", ".join(f"{n} {clean(state, 20)}"
                               for state, n in sorted(host.not_shown[proto].items()) if n)
            if counts:
                not_shown.append(f"{clean(host.address, 64)} {clean(proto, 8)}: "
                                 f"{t('doc.not_shown', lang, counts=counts)}")
    return rows, not_shown


def _listeners(record: ScanRecord, lang: str) -> dict[str, Any] | None:
    if record.kind != "check" and not record.listeners:
        return None
    rows, notes = [], []
    for r in record.listeners:
        where = _where(r.address, r.port, r.proto.value, lang).rsplit("/", 1)[0]
        if r.firewall is None:
            firewall = "-" if r.scope.value == "loopback" else t("table.unknown", lang)
        else:
            firewall = r.firewall.value
        if r.service:
            service = clean(r.service, 40) + (f" ({clean(r.product, 60)})" if r.product else "")
        else:
            service = t("table.unidentified" if r.probe_address else "table.not_probed", lang)
        rows.append({
            "proto": r.proto.value, "where": where, "scope": r.scope.value,
            "process": (clean(r.process, 60) if r.process else "?")
            + (f" ({r.pid})" if r.pid is not None else ""),
            "user": clean(r.user, 40) if r.user else "?", "firewall": firewall,
            "service": service, "exposed": exposed(r),
        })
        full = _where(r.address, r.port, r.proto.value, lang)
        unsure = r.firewall is None and r.scope.value != "loopback"
        if unsure or (r.firewall is not None and r.firewall.value == "undetermined"):
            backend = f" ({clean(r.firewall_backend, 32)})" if r.firewall_backend else ""
            reason = clean(r.firewall_reason, _REMOTE) or t("table.fw_no_backend", lang)
            notes.append(t("table.fw_undetermined", lang, where=full, backend=backend,
                           reason=reason))
        if r.probe_address is None:
            reason = clean(r.not_probed, 200) if r.not_probed else t("table.no_reason", lang)
            notes.append(t("table.not_probed_line", lang, where=full, reason=reason))
    n_exposed = sum(1 for r in record.listeners if exposed(r))
    title = t("table.listeners", lang, n=len(record.listeners), exposed=n_exposed)
    return {"title": title, "rows": rows, "notes": notes}


def _paths(record: ScanRecord, lang: str) -> dict[str, Any] | None:
    """The joined verdicts (``report/paths.py``; Jinja autoescape does the escaping)."""
    if record.paths is None:
        return None
    heads = [t(f"path.col.{k}", lang) for k in ("listener", "family", "reach", "chain", "why")]
    return {"title": t("path.title", lang), "heads": heads,
            "rows": path_rows(record.paths, lang), "lines": path_lines(record.paths, lang),
            "outside": "\n".join(outside_lines(record.paths.outside, lang))}


def _error_line(e: ProbeError, lang: str) -> str:
    if e.address and e.port:
        where = _where(e.address, e.port, e.proto.value if e.proto else "tcp", lang)
    else:
        where = clean(e.address, 64) if e.address else t("the_scan", lang)
    probe = f" ({clean(e.probe, 40)})" if e.probe else ""
    return f"{where}{probe}: {e.kind.value}: {clean(e.detail, _REMOTE)}"


def _head(record: ScanRecord, lang: str) -> dict[str, str]:
    warning = {
        "interrupted": "table.warn.interrupted", "failed": "table.warn.failed",
        "running": "table.warn.running",
    }.get(record.status.value)
    title = "mamori check" if record.kind == "check" else f"mamori {clean(record.kind, 20)}"
    return {
        "title": f"{title} #{record.id}",
        "targets": ", ".join(clean(x, 120) for x in record.targets) or t("doc.no_targets", lang),
        "kind": clean(record.kind, 20),
        "status": t(f"status.{record.status.value}", lang),
        "started": format_time(record.started_at),
        "finished": format_time(record.finished_at) if record.finished_at else "",
        "duration": format_duration(duration_s(record.started_at, record.finished_at)),
        "version": clean(record.mamori_version, 40),
        "warning": t(warning, lang) if warning else "",
    }


def report_context(
    record: ScanRecord, *, lang: str = "en", only_problems: bool = False, prefix: str = "mr"
) -> dict[str, Any]:
    """Everything the report template shows, as plain localised, cleaned values."""
    hidden: Hidden | None = None
    if only_problems:
        record, hidden = problems.only_problems(record)
    layers = _layers(record, lang, prefix)
    ports, not_shown = _ports(record, lang)
    return {
        "lang": lang,
        "prefix": prefix,
        "ui": _ui(lang) | {"probes_not_finished": t("doc.probes_not_finished", lang,
                                                    n=len(record.errors))},
        "head": _head(record, lang),
        "summary": _summary(record, lang, hidden, layers),
        "chart": _chart(record.findings, lang) if record.findings else None,
        "layers": layers,
        "not_tested": _not_tested(record, lang),
        "ports": ports,
        "not_shown": not_shown,
        "listeners": _listeners(record, lang),
        "paths": _paths(record, lang),
        "errors": [_error_line(e, lang) for e in record.errors],
        "footer": t("html.generated", lang, version=clean(record.mamori_version or _version(), 40)),
    }


def _version() -> str:
    from mamori import __version__

    return str(__version__)


def render_html_fragment(
    record: ScanRecord, *, lang: str = "en", only_problems: bool = False, prefix: str = "mr"
) -> Markup:
    """The report body alone (``<div class="mamori-report">…</div>``), safe to place in a
    page as is; ``prefix`` starts every element id (one per report on a page)."""
    html = _env().get_template("report_body.html.j2").render(
        report_context(record, lang=lang, only_problems=only_problems, prefix=prefix)
    )
    return Markup(html)  # noqa: S704 - rendered by the autoescaping environment


def _page(body: Markup, title: str, lang: str) -> str:
    return _env().get_template("page.html.j2").render(
        lang=lang,
        title=title,
        csp=content_security_policy(),
        css=Markup(REPORT_CSS),  # noqa: S704 - mamori's own file
        script=Markup(REPORT_SCRIPT),  # noqa: S704 - mamori's own file, hashed in the CSP
        body=body,
    )


def render_html(record: ScanRecord, *, lang: str = "en", only_problems: bool = False) -> str:
    """The report as one self-contained HTML document."""
    body = render_html_fragment(record, lang=lang, only_problems=only_problems)
    targets = ", ".join(clean(x, 60) for x in record.targets[:3])
    title = f"{t('html.title', lang)}: {record.kind} #{record.id} {targets}".strip()
    return _page(body, title, lang)


# -- the diff --------------------------------------------------------------------------------


def _svc_text(ep: Any) -> str:
    svc = ep.service
    if svc is None:
        return "-"
    return " ".join(clean(p, 60) for p in (svc.name, svc.product, svc.version) if p)


def diff_context(diff: ScanDiff, *, lang: str = "en", prefix: str = "mr") -> dict[str, Any]:
    """Everything the diff template shows."""
    def views(findings: Sequence[CheckResult], tag: str) -> list[dict[str, Any]]:
        return [_finding_view(i, c, (), lang, f"{prefix}-{tag}")
                for i, c in enumerate(worst_first(findings), 1)]

    def run(r: ScanRecord) -> dict[str, str]:
        return {"id": str(r.id), "started": format_time(r.started_at),
                "targets": ", ".join(clean(x, 120) for x in r.targets) or "-",
                "kind": clean(r.kind, 20)}

    changed = [
        {
            "raised": c.raised,
            "where": _where(c.new.address, c.new.port, c.new.proto.value, lang),
            "check_id": clean(c.new.check_id, 64),
            "title": clean(catalog_text.title(c.new, lang), 200),
            "old": f"{severity_name(c.old.severity.value, lang)} / "
                   f"{confidence_name(c.old.confidence.value if c.old.confidence else None, lang)}",
            "new": f"{severity_name(c.new.severity.value, lang)} / "
                   f"{confidence_name(c.new.confidence.value if c.new.confidence else None, lang)}",
            "summary": clean(" ".join(catalog_text.one_line(c.new, lang).split()), _REMOTE),
        }
        for c in diff.changed
    ]

    def short(c: CheckResult) -> dict[str, str]:
        return {"severity": c.severity.value,
                "severity_label": severity_name(c.severity.value, lang).upper(),
                "title": clean(catalog_text.title(c, lang), 200),
                "where": _where(c.address, c.port, c.proto.value, lang),
                "check_id": clean(c.check_id, 64)}

    def ports(eps: Sequence[Any]) -> list[dict[str, str]]:
        return [{"where": _where(e.address, e.port, e.proto.value, lang),
                 "service": _svc_text(e)} for e in eps]

    return {
        "lang": lang,
        "prefix": prefix,
        "ui": _ui(lang),
        "title": t("diff.title", lang, old=diff.old.id, new=diff.new.id),
        "old": run(diff.old),
        "new": run(diff.new),
        "verdict": t("diff.no_change", lang) if diff.empty
        else t("diff.worse" if diff.worse else "diff.not_worse", lang),
        "worse": diff.worse,
        "sections": {
            "new": t("diff.new", lang), "changed": t("diff.changed", lang),
            "accepted": t("diff.accepted", lang),
            "fixed": t("diff.fixed", lang), "not_compared": t("diff.not_compared", lang),
            "opened": t("diff.opened", lang), "closed": t("diff.closed", lang),
            "ports_not_compared": t("diff.ports_not_compared", lang),
            "services": t("diff.services", lang),
        },
        "new_findings": views(diff.new_findings, "new"),
        "accepted_findings": views(diff.accepted, "accepted"),
        "changed": changed,
        "fixed": [short(c) for c in worst_first(diff.fixed)],
        "not_compared": [
            {**short(n.finding), "reason": reason_text(n.reason, lang)}
            for n in sorted(diff.not_compared, key=lambda n: (-n.finding.severity.rank,
                                                              n.finding.key))],
        "opened": ports(diff.opened),
        "closed": ports(diff.closed),
        "ports_not_compared": ports(diff.ports_not_compared),
        "services": [{"where": _where(s.new.address, s.new.port, s.new.proto.value, lang),
                      "old": _svc_text(s.old), "new": _svc_text(s.new)} for s in diff.services],
        "footer": t("html.generated", lang, version=clean(_version(), 40)),
    }


def render_diff_fragment(diff: ScanDiff, *, lang: str = "en", prefix: str = "mr") -> Markup:
    """The diff body alone (``<div class="mamori-report">…</div>``)."""
    html = _env().get_template("diff_body.html.j2").render(
        diff_context(diff, lang=lang, prefix=prefix))
    return Markup(html)  # noqa: S704 - rendered by the autoescaping environment


def render_diff_html(diff: ScanDiff, *, lang: str = "en") -> str:
    """The diff as one self-contained HTML document."""
    title = f"{t('html.title', lang)}: {t('diff.title', lang, old=diff.old.id, new=diff.new.id)}"
    return _page(render_diff_fragment(diff, lang=lang), title, lang)
