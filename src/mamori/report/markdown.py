"""Markdown for tickets and chat.

A summary first (counts by severity, the top three things to fix), then the findings by layer
(OS / network / application) with why each matters, its evidence in fenced code blocks and the
fixes; the checks not tested (never left out); the ports table; for a scan of kind "check" the
listeners; and the probes that could not finish.

Everything that came from the network or from another process (banners, products, versions,
summaries with remote values substituted, facts, process names, firewall rules) goes through
``md_text`` (inline: Markdown punctuation backslash-escaped, HTML characters as entities, control
characters escaped) or ``fenced`` (code blocks whose fence is longer than any run of backticks
inside), so a hostile banner cannot add links, images, HTML or table cells. Catalog text (why it
matters, fixes) is mamori's own and keeps its inline code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mamori.model import (
    CheckResult,
    CheckStatus,
    Endpoint,
    ListenerRecord,
    ProbeError,
    ScanRecord,
    Severity,
)
from mamori.model.path import PathReport
from mamori.report import problems
from mamori.report import text as catalog_text
from mamori.report.accepted import accepted_text
from mamori.report.i18n import confidence_name, layer_name, severity_name, t
from mamori.report.paths import outside_lines, path_lines, path_rows
from mamori.report.problems import Hidden
from mamori.report.table import clean, findings_by_layer, format_time, worst_first

_PLATFORMS = (("linux", "Linux"), ("macos", "macOS"), ("router", "Router"))
# Punctuation that means something anywhere in a line (emphasis, code, links, images, tables,
# strikethrough, math, entities); characters that matter only at the start of a line (lists,
# headings, quotes) are escaped there; "://" and "www." are broken so nothing autolinks.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~$^])")
_MD_LEADING = re.compile(r"^(\d{0,9})((?<=\d)[.)](?=\s|$)|(?<!\d)[-+=])")
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<=www)(\.)")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_REMOTE_LIMIT = 200
_BLOCK_LIMIT = 1000


def md_text(value: str | None, limit: int = _REMOTE_LIMIT) -> str:
    """Return ``value`` safe to place inline in Markdown (paragraphs, list items, table
    cells): control characters escaped, whitespace collapsed, Markdown punctuation
    backslash-escaped, ``& < >`` as HTML entities. Capped at ``limit`` characters."""
    if not value:
        return ""
    flat = clean(" ".join(value.split()), limit)
    escaped = _MD_SPECIAL.sub(r"\\\1", flat)
    escaped = _AUTOLINK.sub(lambda m: "\\" + m.group(0), escaped)
    escaped = _MD_LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped, count=1)
    return "".join(_HTML.get(ch, ch) for ch in escaped)


def fenced(value: str, limit: int = _BLOCK_LIMIT, info: str = "text") -> str:
    """Return ``value`` as a fenced code block: control characters escaped line by line, and a
    fence longer than any run of backticks in the text so the text cannot close it."""
    lines = [clean(line, limit) for line in value[:limit].splitlines()] or [""]
    body = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def _trusted(value: str) -> str:
    """Catalog text (mamori's own, stored with the result when the check ran): whitespace
    collapsed, inline code kept; ``<``/``>`` and ``&`` still as entities so a placeholder
    like ``<long random>`` is not read as HTML."""
    parts = re.split(r"(`[^`]*`)", " ".join(value.split()))
    # Odd parts are code spans: literal in Markdown, so entities there would show as "&lt;".
    return "".join(
        part if i % 2 else "".join(_HTML.get(ch, ch) for ch in part) for i, part in enumerate(parts)
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _where(address: str, port: int, proto: str, lang: str = "en") -> str:
    if not port:
        return t("this_machine", lang)
    host = md_text(address, 64)
    return f"[{host}]:{port}/{proto}" if ":" in address else f"{host}:{port}/{proto}"


def _header(record: ScanRecord, lang: str = "en") -> list[str]:
    targets = ", ".join(md_text(x, 100) for x in record.targets) or t("doc.no_targets", lang)
    title = "mamori check" if record.kind == "check" else f"mamori {md_text(record.kind, 20)}"
    lines = [f"# {title} #{record.id}: {targets}", ""]
    status = record.status.value if lang == "en" else t(f"status.{record.status.value}", lang)
    lines.append(f"- {t('doc.status', lang)}: {status}")
    lines.append(f"- {t('doc.started', lang)}: {format_time(record.started_at)}")
    if record.finished_at is not None:
        lines.append(f"- {t('doc.finished', lang)}: {format_time(record.finished_at)}")
    if record.mamori_version:
        lines.append(f"- mamori {md_text(record.mamori_version, 40)}")
    return lines


def _summary(record: ScanRecord, lang: str = "en", hidden: Hidden | None = None) -> list[str]:
    findings = record.findings
    lines = ["", f"## {t('summary', lang)}", ""]
    if not findings:
        lines.append(t("no_findings", lang))
    else:
        lines.append(f"{t('doc.findings_n', lang, n=len(findings))}:")
        lines.append("")
        lines.append(f"| {t('doc.severity', lang)} | {t('findings', lang)} |")
        lines.append("|---|---:|")
        for sev in sorted(Severity, key=lambda s: -s.rank):
            lines.append(f"| {severity_name(sev.value, lang)} | "
                         f"{sum(1 for c in findings if c.severity is sev)} |")
        lines.append("")
        lines.append(f"{t('top_three', lang)}:")
        lines.append("")
        for i, c in enumerate(worst_first(findings)[:3], 1):
            lines.append(
                f"{i}. **{severity_name(c.severity.value, lang).upper()}** "
                f"{md_text(catalog_text.title(c, lang), 160)} "
                f"{t('doc.on', lang)} {_where(c.address, c.port, c.proto.value, lang)} "
                f"(`{clean(c.check_id, 64)}`)"
            )
    passed = sum(1 for c in record.checks if c.status is CheckStatus.PASSED)
    not_tested = sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED)
    lines.append("")
    if lang == "en":  # the plurals read better than the table's generic line
        lines.append(
            f"Checks: {_plural(passed, 'passed check')}, {not_tested} not tested; "
            f"{_plural(len(record.errors), 'probe')} not finished."
        )
    else:
        lines.append(t("doc.checks_line", lang, passed=passed, not_tested=not_tested,
                       errors=len(record.errors)))
    if hidden is not None:
        lines += ["", md_text(t("only_problems_hidden", lang, passed=hidden.passed,
                                info=hidden.info, closed=hidden.closed), 400)]
    return lines


def _evidence(c: CheckResult, listener: ListenerRecord | None, lang: str = "en") -> list[str]:
    lines: list[str] = []
    if listener is not None:
        proc = md_text(listener.process, 60) or "?"
        pid = f" (pid {listener.pid})" if listener.pid is not None else ""
        user = f" as {md_text(listener.user, 40)}" if listener.user else ""
        lines.append(
            f"- {t('doc.listener', lang)}: {proc}{pid}{user} {t('doc.on', lang)} "
            f"{_where(listener.address, listener.port, listener.proto.value, lang)} "
            f"({listener.scope.value})"
        )
        if listener.firewall is not None:
            fw = listener.firewall.value
            if listener.firewall_backend:
                fw += f" by {md_text(listener.firewall_backend, 32)}"
            if listener.firewall_reason:
                fw += f": {md_text(listener.firewall_reason)}"
            lines.append(f"- {t('doc.firewall', lang)}: {fw}")
        if listener.firewall_rule:
            lines.append(f"- {t('doc.rule', lang)}:")
            lines.append("")
            lines.append(_indent(fenced(listener.firewall_rule, 400)))
    ev = c.evidence
    if ev is None:
        return lines
    lines.append(f"- {t('test', lang)}: {md_text(ev.test, 400)}")
    for key, value in ev.facts.items():
        lines.append(f"- {md_text(key, 64)}: {md_text(value)}")
    if ev.request:
        lines += [f"- {t('sent', lang)}:", "", _indent(fenced(ev.request))]
    if ev.reply:
        lines += [f"- {t('received', lang)}:", "", _indent(fenced(ev.reply))]
    return lines


def _indent(block: str) -> str:
    return "\n".join(f"  {line}" for line in block.splitlines())


def _fixes(fixes: Mapping[str, str], lang: str = "en") -> list[str]:
    lines = []
    for key, label in _PLATFORMS:
        fix = " ".join(fixes.get(key, "").split())
        if fix and fix != "-":
            lines.append(f"- {label}: {_trusted(fix)}")
    return lines or [f"- {t('no_fix_given', lang)}"]


def _listener_for(c: CheckResult, listeners: Sequence[ListenerRecord]) -> ListenerRecord | None:
    same = [r for r in listeners if r.proto is c.proto and r.port == c.port and c.port]
    for rec in same:
        if rec.probe_address == c.address:
            return rec
    for rec in same:
        if rec.address == c.address:
            return rec
    return None


def _finding(
    n: int, c: CheckResult, listeners: Sequence[ListenerRecord], lang: str = "en"
) -> list[str]:
    why = catalog_text.why(c, lang)
    confidence = confidence_name(c.confidence.value if c.confidence else None, lang)
    lines = [
        "",
        f"#### {n}. {severity_name(c.severity.value, lang).upper()}: "
        f"{md_text(catalog_text.title(c, lang), 160)}",
        "",
        f"`{clean(c.check_id, 64)}` {t('doc.on', lang)} "
        f"{_where(c.address, c.port, c.proto.value, lang)}, {confidence}",
        "",
        md_text(catalog_text.summary(c, lang), 400),
    ]
    if c.accepted is not None:
        lines += ["", f"**{md_text(accepted_text(c, lang), 600)}**"]
    exposure = catalog_text.exposure(c, lang)
    if exposure:
        lines += ["", f"**{t('exposure.label', lang)}:** {md_text(exposure, 200)}"]
    if why is not None:
        lines += ["", f"**{t('why', lang)}:** {_trusted(why)}"]
    evidence = _evidence(c, _listener_for(c, listeners), lang)
    if evidence:
        lines += ["", f"**{t('evidence', lang)}:**", "", *evidence]
    fixes = catalog_text.fixes(c, lang)
    lines += ["", f"**{t('fix', lang)}:**", "", *_fixes(fixes, lang)]
    return lines


def _findings(record: ScanRecord, lang: str = "en") -> list[str]:
    findings = record.findings
    lines = ["", f"## {t('findings', lang)}"]
    if not findings:
        return [*lines, "", t("no_findings", lang)]
    n = 0
    for layer, group in findings_by_layer(findings):
        lines += ["", f"### {layer_name(layer.value, lang)} ({len(group)})"]
        if not group:
            lines += ["", t("no_findings", lang)]
        for c in group:
            n += 1
            lines += _finding(n, c, record.listeners, lang)
    return lines


def _not_tested(record: ScanRecord, lang: str = "en") -> list[str]:
    rows = [c for c in record.checks if c.status is CheckStatus.NOT_TESTED]
    if not rows:
        return []
    lines = ["", f"## {t('doc.checks_not_tested', lang, n=len(rows))}", ""]
    lines.append(t("doc.not_tested_note", lang))
    lines.append("")
    for c in rows:
        reason = c.summary.removeprefix("not tested: ")
        lines.append(
            f"- `{clean(c.check_id, 64)}` {t('doc.on', lang)} "
            f"{_where(c.address, c.port, c.proto.value, lang)}: {md_text(reason, 300)}"
        )
    return lines


def _cell(value: str | None, limit: int = 60) -> str:
    return md_text(value, limit) or "-"


def _port_row(ep: Endpoint) -> str:
    svc = ep.service
    name = _cell(svc.name, 30) if svc else "-"
    if svc is not None and svc.tls:
        name += " (TLS)"
    product = " ".join(p for p in ((svc.product or ""), (svc.version or "")) if p) if svc else ""
    banner = svc.banner if svc else None
    return (
        f"| {_cell(ep.address, 64)} | {ep.port}/{ep.proto.value} | {ep.state.value} | "
        f"{name} | {_cell(product, 80)} | {_cell(banner, 80)} |"
    )


def _ports(record: ScanRecord, lang: str = "en") -> list[str]:
    endpoints = [ep for host in record.hosts for ep in host.endpoints]
    lines = ["", f"## {t('doc.ports', lang)}", ""]
    if not endpoints:
        lines.append(t("doc.no_open_ports", lang))
    else:
        heads = ("doc.address", "doc.port", "doc.state", "doc.service", "doc.product",
                 "doc.banner")
        lines.append("| " + " | ".join(t(h, lang) for h in heads) + " |")
        lines.append("|---|---|---|---|---|---|")
        lines += [_port_row(ep) for ep in endpoints]
    for host in record.hosts:
        for proto, states in host.not_shown.items():
            counted = ", ".join(f"{n} {md_text(state, 20)}" for state, n in states.items() if n)
            if counted:
                lines.append("")
                lines.append(f"{md_text(host.address, 64)} {proto}: "
                             f"{t('doc.not_shown', lang, counts=counted)}")
    return lines


def _listeners(listeners: Sequence[ListenerRecord], lang: str = "en") -> list[str]:
    lines = ["", f"## {t('doc.listeners', lang, n=len(listeners))}", ""]
    if not listeners:
        return [*lines, t("doc.none_found", lang)]
    heads = ("doc.proto", "doc.address_port", "doc.scope", "doc.process", "doc.user",
             "doc.firewall", "doc.service")
    lines.append("| " + " | ".join(t(h, lang) for h in heads) + " |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in listeners:
        host = md_text(r.address, 64)
        where = f"[{host}]:{r.port}" if ":" in r.address else f"{host}:{r.port}"
        proc = _cell(r.process, 60) + (f" ({r.pid})" if r.pid is not None else "")
        firewall = r.firewall.value if r.firewall is not None else "-"
        if r.service:
            service = md_text(r.service, 40)
            if r.product:
                service += f" ({md_text(r.product, 60)})"
        else:
            service = t("table.unidentified" if r.probe_address else "doc.not_probed", lang)
        lines.append(
            f"| {r.proto.value} | {where} | {r.scope.value} | {proc} | {_cell(r.user, 40)} | "
            f"{firewall} | {service} |"
        )
    not_probed = [r for r in listeners if r.probe_address is None and r.not_probed]
    if not_probed:
        lines.append("")
    for r in not_probed:
        if r.not_probed:
            lines.append(
                f"- {t('doc.not_probed', lang)}: {_where(r.address, r.port, r.proto.value, lang)}"
                f": {md_text(r.not_probed)}"
            )
    return lines


def _paths(report: PathReport | None, lang: str = "en") -> list[str]:
    """The joined verdict per listener and family, then the router, IPv6 and outside lines."""
    if report is None:
        return []
    lines = ["", f"## {t('path.title', lang)}", ""]
    heads = ("path.col.listener", "path.col.family", "path.col.reach", "path.col.chain",
             "path.col.why")
    lines.append("| " + " | ".join(t(h, lang) for h in heads) + " |")
    lines.append("|---|---|---|---|---|")
    for row in path_rows(report, lang):
        reach = f"**{row.reach}**" if row.reach_value == "internet" else row.reach
        lines.append(f"| {md_text(row.listener, 120)} | {row.family} | {reach} | "
                     f"{md_text(row.chain, 400)} | {md_text(row.why, 900)} |")
    lines.append("")
    lines += [f"- {md_text(line, 900)}" for line in path_lines(report, lang)]
    outside = outside_lines(report.outside, lang)
    if outside:
        lines += ["", fenced("\n".join(outside), 4000)]
    return lines


def _errors(errors: Sequence[ProbeError], lang: str = "en") -> list[str]:
    if not errors:
        return []
    lines = ["", f"## {t('doc.probes_not_finished', lang, n=len(errors))}", ""]
    for e in errors:
        where = (
            _where(e.address, e.port or 0, e.proto.value if e.proto else "tcp", lang)
            if e.address and e.port
            else md_text(e.address, 64) or t("the_scan", lang)
        )
        probe = f" ({md_text(e.probe, 40)})" if e.probe else ""
        lines.append(f"- {where}{probe}: {e.kind.value}: {md_text(e.detail, 300)}")
    lines += ["", t("doc.untested_note", lang)]
    return lines


def render_markdown(record: ScanRecord, *, lang: str = "en", only_problems: bool = False) -> str:
    """Return ``record`` as Markdown: summary, findings by layer, checks not tested, ports,
    listeners (kind "check"), probes not finished, in ``lang`` ("en" or "ja").
    ``only_problems`` leaves out passed checks, info findings and closed/filtered ports
    (``report.problems``), and says so in the summary. Raises nothing for any record."""
    hidden: Hidden | None = None
    if only_problems:
        record, hidden = problems.only_problems(record)
    lines = _header(record, lang)
    lines += _summary(record, lang, hidden)
    lines += _findings(record, lang)
    lines += _not_tested(record, lang)
    lines += _ports(record, lang)
    if record.kind == "check" or record.listeners:
        lines += _listeners(record.listeners, lang)
    lines += _paths(record.paths, lang)
    lines += _errors(record.errors, lang)
    return "\n".join(lines).rstrip("\n") + "\n"
