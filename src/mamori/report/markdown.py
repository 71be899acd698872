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
from functools import cache

from mamori.model import (
    CheckResult,
    CheckStatus,
    Endpoint,
    Layer,
    ListenerRecord,
    ProbeError,
    ScanRecord,
    Severity,
)
from mamori.report.table import clean, format_time

_LAYER_TITLE = {Layer.OS: "OS", Layer.NETWORK: "Network", Layer.APPLICATION: "Application"}
_LAYER_ORDER = {Layer.OS: 0, Layer.NETWORK: 1, Layer.APPLICATION: 2}
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
    """Catalog text (mamori's own): whitespace collapsed, inline code kept; ``<``/``>`` and
    ``&`` still as entities so a placeholder like ``<long random>`` is not read as HTML."""
    parts = re.split(r"(`[^`]*`)", " ".join(value.split()))
    # Odd parts are code spans: literal in Markdown, so entities there would show as "&lt;".
    return "".join(
        part if i % 2 else "".join(_HTML.get(ch, ch) for ch in part) for i, part in enumerate(parts)
    )


@cache
def _catalog() -> Mapping[str, tuple[str, Mapping[str, str]]]:
    """Per check id: why it matters and the fixes (English), from both catalogs. A catalog
    that cannot be loaded contributes nothing; the report then uses the result's own fixes."""
    out: dict[str, tuple[str, Mapping[str, str]]] = {}
    loaders = []
    try:
        from mamori.checks.catalog import default_catalog

        loaders.append(default_catalog)
    except ImportError:
        pass
    try:
        from mamori.audit.notes import default_notes

        loaders.append(default_notes)  # type: ignore[arg-type]
    except ImportError:
        pass
    for load in loaders:
        try:
            specs = load()
        except ValueError:
            continue
        for cid, s in specs.items():
            fixes = {key: getattr(s.remediation, key).en for key, _ in _PLATFORMS}
            out[cid] = (s.why.en, fixes)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _where(address: str, port: int, proto: str) -> str:
    if not port:
        return "this machine"
    host = md_text(address, 64)
    return f"[{host}]:{port}/{proto}" if ":" in address else f"{host}:{port}/{proto}"


def _sorted_findings(findings: Sequence[CheckResult]) -> list[CheckResult]:
    # Stable: the store's order (host, port, check) survives within a severity.
    return sorted(findings, key=lambda c: -c.severity.rank)


def _header(record: ScanRecord) -> list[str]:
    targets = ", ".join(md_text(t, 100) for t in record.targets) or "no targets"
    title = "mamori check" if record.kind == "check" else f"mamori {md_text(record.kind, 20)}"
    lines = [f"# {title} #{record.id}: {targets}", ""]
    lines.append(f"- Status: {record.status.value}")
    lines.append(f"- Started: {format_time(record.started_at)}")
    if record.finished_at is not None:
        lines.append(f"- Finished: {format_time(record.finished_at)}")
    if record.mamori_version:
        lines.append(f"- mamori {md_text(record.mamori_version, 40)}")
    return lines


def _summary(record: ScanRecord) -> list[str]:
    findings = record.findings
    lines = ["", "## Summary", ""]
    if not findings:
        lines.append("No findings.")
    else:
        lines.append(f"{_plural(len(findings), 'finding')}:")
        lines.append("")
        lines.append("| Severity | Findings |")
        lines.append("|---|---:|")
        for sev in sorted(Severity, key=lambda s: -s.rank):
            lines.append(f"| {sev.value} | {sum(1 for c in findings if c.severity is sev)} |")
        lines.append("")
        lines.append("Top things to fix:")
        lines.append("")
        for i, c in enumerate(_sorted_findings(findings)[:3], 1):
            lines.append(
                f"{i}. **{c.severity.value.upper()}** {md_text(c.title, 160)} "
                f"on {_where(c.address, c.port, c.proto.value)} (`{clean(c.check_id, 64)}`)"
            )
    passed = sum(1 for c in record.checks if c.status is CheckStatus.PASSED)
    not_tested = sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED)
    lines.append("")
    lines.append(
        f"Checks: {_plural(passed, 'passed check')}, {not_tested} not tested; "
        f"{_plural(len(record.errors), 'probe')} not finished."
    )
    return lines


def _evidence(c: CheckResult, listener: ListenerRecord | None) -> list[str]:
    lines: list[str] = []
    if listener is not None:
        proc = md_text(listener.process, 60) or "?"
        pid = f" (pid {listener.pid})" if listener.pid is not None else ""
        user = f" as {md_text(listener.user, 40)}" if listener.user else ""
        lines.append(
            f"- Listener: {proc}{pid}{user} on "
            f"{_where(listener.address, listener.port, listener.proto.value)} "
            f"({listener.scope.value})"
        )
        if listener.firewall is not None:
            fw = listener.firewall.value
            if listener.firewall_backend:
                fw += f" by {md_text(listener.firewall_backend, 32)}"
            if listener.firewall_reason:
                fw += f": {md_text(listener.firewall_reason)}"
            lines.append(f"- Firewall: {fw}")
        if listener.firewall_rule:
            lines.append("- Rule:")
            lines.append("")
            lines.append(_indent(fenced(listener.firewall_rule, 400)))
    ev = c.evidence
    if ev is None:
        return lines
    lines.append(f"- Test: {md_text(ev.test, 400)}")
    for key, value in ev.facts.items():
        lines.append(f"- {md_text(key, 64)}: {md_text(value)}")
    if ev.request:
        lines += ["- Sent:", "", _indent(fenced(ev.request))]
    if ev.reply:
        lines += ["- Received:", "", _indent(fenced(ev.reply))]
    return lines


def _indent(block: str) -> str:
    return "\n".join(f"  {line}" for line in block.splitlines())


def _fixes(c: CheckResult, catalog_fixes: Mapping[str, str] | None) -> list[str]:
    fixes = catalog_fixes if catalog_fixes else c.remediation
    lines = []
    for key, label in _PLATFORMS:
        fix = " ".join(fixes.get(key, "").split())
        if fix and fix != "-":
            lines.append(f"- {label}: {_trusted(fix)}")
    return lines or ["- none given"]


def _listener_for(c: CheckResult, listeners: Sequence[ListenerRecord]) -> ListenerRecord | None:
    same = [r for r in listeners if r.proto is c.proto and r.port == c.port and c.port]
    for rec in same:
        if rec.probe_address == c.address:
            return rec
    for rec in same:
        if rec.address == c.address:
            return rec
    return None


def _finding(n: int, c: CheckResult, listeners: Sequence[ListenerRecord]) -> list[str]:
    catalog = _catalog().get(c.check_id)
    confidence = c.confidence.value if c.confidence is not None else "?"
    lines = [
        "",
        f"#### {n}. {c.severity.value.upper()}: {md_text(c.title, 160)}",
        "",
        f"`{clean(c.check_id, 64)}` on {_where(c.address, c.port, c.proto.value)}, {confidence}",
        "",
        md_text(c.summary, 400),
    ]
    if catalog is not None:
        lines += ["", f"**Why it matters:** {_trusted(catalog[0])}"]
    evidence = _evidence(c, _listener_for(c, listeners))
    if evidence:
        lines += ["", "**Evidence:**", "", *evidence]
    lines += ["", "**Fix:**", "", *_fixes(c, catalog[1] if catalog else None)]
    return lines


def _findings(record: ScanRecord) -> list[str]:
    findings = record.findings
    lines = ["", "## Findings"]
    if not findings:
        return [*lines, "", "No findings."]
    by_layer: dict[Layer, list[CheckResult]] = {layer: [] for layer in Layer}
    for c in findings:
        by_layer[c.layer].append(c)
    layers = sorted(
        by_layer,
        key=lambda layer: (
            -max((c.severity.rank for c in by_layer[layer]), default=-1),
            _LAYER_ORDER[layer],
        ),
    )
    n = 0
    for layer in layers:
        group = by_layer[layer]
        lines += ["", f"### {_LAYER_TITLE[layer]} ({len(group)})"]
        if not group:
            lines += ["", "No findings."]
        for c in _sorted_findings(group):
            n += 1
            lines += _finding(n, c, record.listeners)
    return lines


def _not_tested(record: ScanRecord) -> list[str]:
    rows = [c for c in record.checks if c.status is CheckStatus.NOT_TESTED]
    if not rows:
        return []
    lines = ["", f"## Checks not tested ({len(rows)})", ""]
    lines.append("Not tested is not the same as passed.")
    lines.append("")
    for c in rows:
        reason = c.summary.removeprefix("not tested: ")
        lines.append(
            f"- `{clean(c.check_id, 64)}` on {_where(c.address, c.port, c.proto.value)}: "
            f"{md_text(reason, 300)}"
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


def _ports(record: ScanRecord) -> list[str]:
    endpoints = [ep for host in record.hosts for ep in host.endpoints]
    lines = ["", "## Ports", ""]
    if not endpoints:
        lines.append("No open ports found.")
    else:
        lines.append("| Address | Port | State | Service | Product | Banner |")
        lines.append("|---|---|---|---|---|---|")
        lines += [_port_row(ep) for ep in endpoints]
    for host in record.hosts:
        for proto, states in host.not_shown.items():
            counted = ", ".join(f"{n} {md_text(state, 20)}" for state, n in states.items() if n)
            if counted:
                lines.append("")
                lines.append(f"{md_text(host.address, 64)} {proto}: not shown: {counted}")
    return lines


def _listeners(listeners: Sequence[ListenerRecord]) -> list[str]:
    lines = ["", f"## Listeners ({len(listeners)})", ""]
    if not listeners:
        return [*lines, "None found."]
    lines.append("| Proto | Address:port | Scope | Process (pid) | User | Firewall | Service |")
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
            service = "unidentified" if r.probe_address else "not probed"
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
                f"- not probed: {_where(r.address, r.port, r.proto.value)}: {md_text(r.not_probed)}"
            )
    return lines


def _errors(errors: Sequence[ProbeError]) -> list[str]:
    if not errors:
        return []
    lines = ["", f"## Probes not finished ({len(errors)})", ""]
    for e in errors:
        where = (
            _where(e.address, e.port or 0, e.proto.value if e.proto else "tcp")
            if e.address and e.port
            else md_text(e.address, 64) or "the scan"
        )
        probe = f" ({md_text(e.probe, 40)})" if e.probe else ""
        lines.append(f"- {where}{probe}: {e.kind.value}: {md_text(e.detail, 300)}")
    lines += ["", "Untested is not the same as closed."]
    return lines


def render_markdown(record: ScanRecord) -> str:
    """Return ``record`` as Markdown: summary, findings by layer, checks not tested, ports,
    listeners (kind "check"), probes not finished. Raises nothing for any record."""
    lines = _header(record)
    lines += _summary(record)
    lines += _findings(record)
    lines += _not_tested(record)
    lines += _ports(record)
    if record.kind == "check" or record.listeners:
        lines += _listeners(record.listeners)
    lines += _errors(record.errors)
    return "\n".join(lines).rstrip("\n") + "\n"
