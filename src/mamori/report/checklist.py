"""The inside view as text (scans of kind "check"): a checklist, then the listeners.

The checklist holds every finding ordered by risk and grouped in the three layers the old
checklists thought in (OS, network, application): what was found, why it matters (one line,
from the check's catalog entry), the evidence (which process listens on which address, what the
firewall said and by which rule, what the probe sent back) and the fix for Linux and macOS.
Checks that could not run are listed, never left out. The listeners table follows: every
socket listening on the machine, most exposed first.

Text from processes, executables and remote peers is sanitised (``table.clean``) and rich
markup is off, as in the scan view.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache

from rich.console import RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mamori.model import (
    CheckResult,
    CheckStatus,
    Layer,
    ListenerRecord,
    ProbeError,
    ScanRecord,
    Severity,
)
from mamori.report.table import (
    _LAYER_ORDER,
    _LAYER_TITLE,
    _SEVERITY_STYLE,
    _console,
    _endpoint_text,
    _error_line,
    _finish,
    _not_tested_line,
    clean,
    header_renderables,
)

_DETAIL_INDENT = 7  # "  12. " plus one: detail lines sit under the finding's text
_FIX_LIMIT = 600  # a fix is shown in full up to here (catalog fixes are a few sentences)
_REMOTE_LIMIT = 200
_PLATFORMS = (("linux", "Linux"), ("macos", "macOS"))

_FIREWALL_STYLE = {
    "allowed": "bold red",
    "no-firewall": "bold red",
    "undetermined": "yellow",
    "blocked": "green",
}


# -- why it matters ------------------------------------------------------------------------


def first_sentence(text: str, limit: int = 220) -> str:
    """Return the first sentence of ``text`` on one line (whitespace collapsed), capped."""
    flat = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s", flat)
    sentence = flat[: match.start()] if match else flat
    return clean(sentence, limit)


@cache
def catalog_why() -> Mapping[str, str]:
    """Return "why it matters" (one line, English) per check id, from the exposure-check
    catalog and the inside-check catalog. A catalog that cannot be loaded contributes nothing
    (the checklist then shows no why-line for its checks); it never fails the report."""
    out: dict[str, str] = {}
    try:
        from mamori.checks.catalog import default_catalog

        out.update({cid: first_sentence(s.why.en) for cid, s in default_catalog().items()})
    except (ImportError, ValueError):  # CatalogError is a ValueError
        pass
    try:
        from mamori.audit.notes import default_notes

        out.update({cid: first_sentence(s.why.en) for cid, s in default_notes().items()})
    except (ImportError, ValueError):  # NoteCatalogError is a ValueError
        pass
    return out


# -- evidence ------------------------------------------------------------------------------


def _host_port(address: str, port: int) -> str:
    host = clean(address, 64)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _process_text(rec: ListenerRecord) -> str:
    name = clean(rec.process, 60) if rec.process else "?"
    return f"{name}({rec.pid})" if rec.pid is not None else name


def listener_for(check: CheckResult, listeners: Sequence[ListenerRecord]) -> ListenerRecord | None:
    """Return the listener a check result was probed on (matched by the address the probe
    went to, else by the bound address, and proto and port), or None (inside checks, or a
    check on an endpoint no listener explains)."""
    same = [r for r in listeners if r.proto is check.proto and r.port == check.port]
    for rec in same:
        if rec.probe_address == check.address:
            return rec
    for rec in same:
        if rec.address == check.address:
            return rec
    return None


def _firewall_text(rec: ListenerRecord) -> str:
    if rec.firewall is None:
        return "not asked (loopback only)" if rec.scope.value == "loopback" else "unknown"
    text = rec.firewall.value
    if rec.firewall_backend:
        text += f" by {clean(rec.firewall_backend, 32)}"
    if rec.firewall_reason:
        text += f": {clean(rec.firewall_reason, _REMOTE_LIMIT)}"
    return text


def _evidence_lines(c: CheckResult, rec: ListenerRecord | None) -> list[str]:
    lines: list[str] = []
    if rec is not None:
        who = f"process {_process_text(rec)}"
        if rec.user:
            who += f" as {clean(rec.user, 40)}"
        lines.append(
            f"{who}, listening on {_host_port(rec.address, rec.port)}/{rec.proto.value}"
            f" ({rec.scope.value})"
        )
        lines.append(f"firewall: {_firewall_text(rec)}")
        if rec.firewall_rule:
            lines.append(f"rule: {clean(rec.firewall_rule, _REMOTE_LIMIT)}")
    ev = c.evidence
    if ev is not None:
        lines.append(f"test: {clean(ev.test, 300)}")
        if ev.reply:
            lines.append(f"reply: {clean(ev.reply, _REMOTE_LIMIT)}")
    return lines


def _fix_lines(c: CheckResult) -> list[str]:
    lines = []
    for key, label in _PLATFORMS:
        fix = " ".join(c.remediation.get(key, "").split())
        if fix and fix != "-":
            lines.append(f"fix ({label}): {clean(fix, _FIX_LIMIT)}")
    return lines or ["fix: none given for Linux or macOS"]


def _where(c: CheckResult) -> str:
    # Inside checks are about the machine, not an endpoint (port 0): no address to show.
    return f"  {_endpoint_text(c.address, c.port, c.proto.value)}" if c.port else ""


def _finding(
    n: int, c: CheckResult, listeners: Sequence[ListenerRecord], why: Mapping[str, str]
) -> list[RenderableType]:
    head = Text(f"{n:>2}. ")
    head.append(c.severity.value.upper(), style=_SEVERITY_STYLE[c.severity])
    confidence = c.confidence.value if c.confidence is not None else "?"
    head.append(f" ({confidence}){_where(c)}  {clean(c.title, 160)} [{clean(c.check_id, 64)}]")
    lines = [clean(c.summary, 300)]
    reason = why.get(c.check_id)
    if reason:
        lines.append(f"why: {reason}")
    lines += _evidence_lines(c, listener_for(c, listeners))
    lines += _fix_lines(c)
    out: list[RenderableType] = [Padding(head, (0, 0, 0, 2))]
    out.extend(Padding(Text(line), (0, 0, 0, _DETAIL_INDENT)) for line in lines)
    return out


def _not_tested(c: CheckResult) -> str:
    if c.port:
        return _not_tested_line(c)
    reason = c.summary.removeprefix("not tested: ")
    return f"not tested: {clean(c.check_id, 64)}: {clean(reason, 300)}"


def _checklist_header(findings: Sequence[CheckResult]) -> Text:
    """The heading, e.g. "Checklist: 3 findings (1 critical, 2 low)", counts coloured."""
    header = Text(f"Checklist: {len(findings)} finding{'' if len(findings) == 1 else 's'}")
    header.stylize("bold")
    counts = [(sev, sum(1 for c in findings if c.severity is sev)) for sev in Severity]
    parts = [(sev, n) for sev, n in sorted(counts, key=lambda kv: -kv[0].rank) if n]
    for i, (sev, n) in enumerate(parts):
        header.append(" (" if i == 0 else ", ")
        header.append(f"{n} {sev.value}", style=_SEVERITY_STYLE[sev])
    if parts:
        header.append(")")
    return header


def checklist_renderables(
    record: ScanRecord, why: Mapping[str, str] | None = None
) -> list[RenderableType]:
    """The checklist: findings by layer (the layer holding the worst first; every layer is
    named, "no findings" when it has none), worst first within a layer and numbered in that
    order; then every check not tested; then how many passed."""
    why = catalog_why() if why is None else why
    checks = record.checks
    findings = [c for c in checks if c.status is CheckStatus.FINDING]
    out: list[RenderableType] = [Text("")]
    if findings:
        out.append(_checklist_header(findings))
    else:
        out.append(Text("Checklist: no findings", style="bold green"))
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
        out.append(Text(""))
        out.append(Text(_LAYER_TITLE[layer], style="bold"))
        if not by_layer[layer]:
            out.append(Padding(Text("no findings"), (0, 0, 0, 2)))
        # Stable: the store's order (host, port, check) survives within a severity.
        for c in sorted(by_layer[layer], key=lambda c: -c.severity.rank):
            n += 1
            out.extend(_finding(n, c, record.listeners, why))
    not_tested = [c for c in checks if c.status is CheckStatus.NOT_TESTED]
    if not_tested:
        out.append(Text(""))
        out.append(Text(f"Checks not tested ({len(not_tested)}):", style="bold yellow"))
        out.extend(Padding(Text(_not_tested(c), style="yellow"), (0, 0, 0, 2)) for c in not_tested)
    passed = sum(1 for c in checks if c.status is CheckStatus.PASSED)
    out.append(Text(f"{passed} check{'' if passed == 1 else 's'} passed"))
    return out


# -- listeners -----------------------------------------------------------------------------


def _service_text(rec: ListenerRecord) -> str:
    if rec.service:
        name = clean(rec.service, 40)
        return f"{name} ({clean(rec.product, 60)})" if rec.product else name
    return "unidentified" if rec.probe_address else "not probed"


def _firewall_cell(rec: ListenerRecord) -> Text:
    if rec.firewall is None:
        return Text("-" if rec.scope.value == "loopback" else "unknown")
    value = rec.firewall.value
    style = _FIREWALL_STYLE.get(value, "") if rec.scope.value != "loopback" else ""
    return Text(value, style=style)


def exposed(rec: ListenerRecord) -> bool:
    """True when ``rec`` is reachable from the network and the firewall lets traffic in (or
    there is none)."""
    return (
        rec.scope.value != "loopback"
        and rec.firewall is not None
        and rec.firewall.value in ("allowed", "no-firewall")
    )


def listeners_renderables(listeners: Sequence[ListenerRecord]) -> list[RenderableType]:
    """The listeners table, in the order given (the store's: most exposed first), then one
    line per listener whose firewall verdict is undetermined or unknown, and per listener not
    probed, each with the reason."""
    out: list[RenderableType] = [Text("")]
    if not listeners:
        out.append(Text("Listeners: none found", style="bold"))
        return out
    n_exposed = sum(1 for r in listeners if exposed(r))
    out.append(
        Text(f"Listeners ({len(listeners)}, {n_exposed} reachable from the network)", style="bold")
    )
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("PROTO", no_wrap=True)
    table.add_column("ADDRESS:PORT", no_wrap=True)
    table.add_column("SCOPE", no_wrap=True)
    table.add_column("PROCESS(pid)", overflow="fold")
    table.add_column("USER", overflow="fold")
    table.add_column("FIREWALL", no_wrap=True)
    table.add_column("SERVICE", overflow="fold")
    for rec in listeners:
        table.add_row(
            rec.proto.value,
            _host_port(rec.address, rec.port),
            rec.scope.value,
            _process_text(rec),
            clean(rec.user, 40) if rec.user else "?",
            _firewall_cell(rec),
            _service_text(rec),
        )
    out.append(table)
    for rec in listeners:
        where = f"{_host_port(rec.address, rec.port)}/{rec.proto.value}"
        unsure = rec.firewall is None and rec.scope.value != "loopback"
        if unsure or (rec.firewall is not None and rec.firewall.value == "undetermined"):
            backend = f" ({clean(rec.firewall_backend, 32)})" if rec.firewall_backend else ""
            reason = (
                clean(rec.firewall_reason, _REMOTE_LIMIT) or "no firewall backend could be read"
            )
            line = f"firewall undetermined: {where}{backend}: {reason}"
            out.append(Padding(Text(line, style="yellow"), (0, 0, 0, 2)))
    for rec in listeners:
        if rec.probe_address is None:
            where = f"{_host_port(rec.address, rec.port)}/{rec.proto.value}"
            reason = clean(rec.not_probed, 200) if rec.not_probed else "no reason recorded"
            out.append(Padding(Text(f"not probed: {where}: {reason}"), (0, 0, 0, 2)))
    return out


def _errors_renderables(errors: Sequence[ProbeError]) -> list[RenderableType]:
    if not errors:
        return []
    out: list[RenderableType] = [Text("")]
    out.append(Text(f"Probes not finished ({len(errors)}):", style="bold yellow"))
    out.extend(Text(_error_line(e, with_address=True), style="yellow") for e in errors)
    out.append(
        Text(
            f"{len(errors)} probe(s) could not finish: untested is not the same as closed.",
            style="yellow",
        )
    )
    return out


def render_checklist(
    record: ScanRecord,
    *,
    width: int | None = None,
    color: bool = False,
    why: Mapping[str, str] | None = None,
) -> str:
    """Return a scan of kind "check" as text: header, checklist, listeners table, and every
    probe that could not finish. ``why`` maps check ids to one-line reasons (default: the
    check catalogs). ANSI colours only when ``color``. Raises nothing for any record."""
    console, buf = _console(width, color)
    items = header_renderables(record)
    items += checklist_renderables(record, why)
    items += listeners_renderables(record.listeners)
    items += _errors_renderables(record.errors)
    for item in items:
        console.print(item)
    return _finish(buf)
