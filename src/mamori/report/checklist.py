"""The inside view as text (scans of kind "check"): a checklist, then the listeners.

The checklist holds every finding ordered by risk and grouped in the three layers the old
checklists thought in (OS, network, application): what was found, why it matters (one line,
stored with the result), the evidence (which process listens on which address, what the
firewall said and by which rule, what the probe sent back) and the fix for Linux and macOS.
Checks that could not run are listed, never left out. The listeners table follows: every
socket listening on the machine, most exposed first.

Text from processes, executables and remote peers is sanitised (``table.clean``) and rich
markup is off, as in the scan view.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rich.console import RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mamori.model import (
    CheckResult,
    CheckStatus,
    ListenerRecord,
    ProbeError,
    ScanRecord,
)
from mamori.report import problems
from mamori.report import text as catalog_text
from mamori.report.accepted import accepted_text
from mamori.report.i18n import confidence_name, t
from mamori.report.paths import path_renderables
from mamori.report.problems import Hidden
from mamori.report.table import (
    _SEVERITY_STYLE,
    _console,
    _endpoint_text,
    _error_line,
    _finish,
    _not_tested_line,
    clean,
    findings_by_layer,
    header_renderables,
    layer_title,
    passed_renderable,
    severity_counts,
    severity_label,
    summary_renderables,
)

_DETAIL_INDENT = 7  # "  12. " plus one: detail lines sit under the finding's text
_FIX_LIMIT = 600  # a fix is shown in full up to here (catalog fixes are a few sentences)
_REMOTE_LIMIT = 200
_PLATFORMS = (("linux", "Linux"), ("macos", "macOS"), ("router", "Router"))
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s|(?<=。)")

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
    match = _FIRST_SENTENCE.search(flat)
    sentence = flat[: match.start()] if match and match.start() < len(flat) else flat
    return clean(sentence, limit)


def record_why(checks: Sequence[CheckResult], lang: str = "en") -> dict[str, str]:
    """Return "why it matters" (one line, in ``lang``) per check id, from the results' own
    stored texts (the first result of a check id that holds one). Records stored before texts
    were hold none: the checklist then shows no why-line for them."""
    out: dict[str, str] = {}
    for c in checks:
        if c.check_id not in out:
            reason = catalog_text.why(c, lang)
            if reason:
                out[c.check_id] = first_sentence(reason)
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


def _firewall_text(rec: ListenerRecord, lang: str = "en") -> str:
    if rec.firewall is None:
        return t("table.fw_not_asked" if rec.scope.value == "loopback" else "table.unknown", lang)
    text = rec.firewall.value
    if rec.firewall_backend:
        text += f" by {clean(rec.firewall_backend, 32)}"
    if rec.firewall_reason:
        text += f": {clean(rec.firewall_reason, _REMOTE_LIMIT)}"
    return text


def _evidence_lines(c: CheckResult, rec: ListenerRecord | None, lang: str = "en") -> list[str]:
    lines: list[str] = []
    if rec is not None:
        user = t("table.as_user", lang, user=clean(rec.user, 40)) if rec.user else ""
        lines.append(t(
            "table.process", lang, process=_process_text(rec), user=user,
            where=f"{_host_port(rec.address, rec.port)}/{rec.proto.value}",
            scope=rec.scope.value,
        ))
        lines.append(f"{t('table.firewall', lang)}{_firewall_text(rec, lang)}")
        if rec.firewall_rule:
            lines.append(f"{t('table.rule', lang)}{clean(rec.firewall_rule, _REMOTE_LIMIT)}")
    ev = c.evidence
    if ev is not None:
        lines.append(f"{t('table.test', lang)}{clean(ev.test, 300)}")
        if ev.reply:
            lines.append(f"{t('table.reply', lang)}{clean(ev.reply, _REMOTE_LIMIT)}")
    return lines


def _fix_lines(c: CheckResult, lang: str = "en") -> list[str]:
    lines = []
    fixes = catalog_text.fixes(c, lang)
    for key, label in _PLATFORMS:
        fix = " ".join(fixes.get(key, "").split())
        if fix and fix != "-":
            lines.append(f"{t('table.fix', lang, platform=label)}{clean(fix, _FIX_LIMIT)}")
    return lines or [t("table.fix_none", lang)]


def _where(c: CheckResult) -> str:
    # Inside checks are about the machine, not an endpoint (port 0): no address to show.
    return f"  {_endpoint_text(c.address, c.port, c.proto.value)}" if c.port else ""


def _finding(
    n: int, c: CheckResult, listeners: Sequence[ListenerRecord], why: Mapping[str, str],
    lang: str = "en",
) -> list[RenderableType]:
    head = Text(f"{n:>2}. ")
    head.append(severity_label(c.severity, lang), style=_SEVERITY_STYLE[c.severity])
    confidence = confidence_name(c.confidence.value if c.confidence else None, lang)
    head.append(f" ({confidence}){_where(c)}  {clean(catalog_text.title(c, lang), 160)}"
                f" [{clean(c.check_id, 64)}]")
    lines = [clean(catalog_text.summary(c, lang), 300)]
    if c.accepted is not None:
        lines.append(clean(accepted_text(c, lang), 600))
    exposure = catalog_text.exposure(c, lang)
    if exposure:
        lines.append(f"{t('exposure.label', lang)}: {clean(exposure, 200)}")
    reason = why.get(c.check_id)
    if reason:
        lines.append(f"{t('table.why', lang)}{reason}")
    lines += _evidence_lines(c, listener_for(c, listeners), lang)
    lines += _fix_lines(c, lang)
    out: list[RenderableType] = [Padding(head, (0, 0, 0, 2))]
    out.extend(Padding(Text(line), (0, 0, 0, _DETAIL_INDENT)) for line in lines)
    return out


def _not_tested(c: CheckResult, lang: str = "en") -> str:
    if c.port:
        return _not_tested_line(c, lang)
    reason = c.summary.removeprefix("not tested: ")
    return t("table.not_tested_machine", lang, check=clean(c.check_id, 64),
             reason=clean(reason, 300))


def _checklist_header(findings: Sequence[CheckResult], lang: str = "en") -> Text:
    """The heading, e.g. "Checklist: 3 findings (1 critical, 2 low)", counts coloured."""
    header = Text(t("table.checklist", lang, n=len(findings)))
    header.stylize("bold")
    if severity_counts(header, findings, lang, " ("):
        header.append(")")
    return header


def checklist_renderables(
    record: ScanRecord, why: Mapping[str, str] | None = None, lang: str = "en",
    hidden: Hidden | None = None,
) -> list[RenderableType]:
    """The checklist: findings by layer (the layer holding the worst first; every layer is
    named, "no findings" when it has none), worst first within a layer and numbered in that
    order; then every check not tested; then how many passed (or, with ``hidden``, what
    --only-problems left out)."""
    checks = record.checks
    why = record_why(checks, lang) if why is None else why
    findings = [c for c in checks if c.status is CheckStatus.FINDING]
    out: list[RenderableType] = [Text("")]
    if findings:
        out.append(_checklist_header(findings, lang))
    else:
        out.append(Text(t("table.checklist_none", lang), style="bold green"))
    n = 0
    for layer, group in findings_by_layer(findings):
        out.append(Text(""))
        out.append(Text(layer_title(layer, lang), style="bold"))
        if not group:
            out.append(Padding(Text(t("table.layer_none", lang)), (0, 0, 0, 2)))
        for c in group:
            n += 1
            out.extend(_finding(n, c, record.listeners, why, lang))
    not_tested = [c for c in checks if c.status is CheckStatus.NOT_TESTED]
    if not_tested:
        out.append(Text(""))
        out.append(Text(t("table.checks_not_tested", lang, n=len(not_tested)),
                        style="bold yellow"))
        out.extend(Padding(Text(_not_tested(c, lang), style="yellow"), (0, 0, 0, 2))
                   for c in not_tested)
    out.append(passed_renderable(checks, hidden, lang))
    return out


# -- listeners -----------------------------------------------------------------------------


def _service_text(rec: ListenerRecord, lang: str = "en") -> str:
    if rec.service:
        name = clean(rec.service, 40)
        return f"{name} ({clean(rec.product, 60)})" if rec.product else name
    return t("table.unidentified" if rec.probe_address else "table.not_probed", lang)


def _firewall_cell(rec: ListenerRecord, lang: str = "en") -> Text:
    if rec.firewall is None:
        return Text("-" if rec.scope.value == "loopback" else t("table.unknown", lang))
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


def listeners_renderables(
    listeners: Sequence[ListenerRecord], lang: str = "en"
) -> list[RenderableType]:
    """The listeners table, in the order given (the store's: most exposed first), then one
    line per listener whose firewall verdict is undetermined or unknown, and per listener not
    probed, each with the reason."""
    out: list[RenderableType] = [Text("")]
    if not listeners:
        out.append(Text(t("table.listeners_none", lang), style="bold"))
        return out
    n_exposed = sum(1 for r in listeners if exposed(r))
    out.append(Text(t("table.listeners", lang, n=len(listeners), exposed=n_exposed),
                    style="bold"))
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column(t("table.col.proto", lang), no_wrap=True)
    table.add_column(t("table.col.address", lang), no_wrap=True)
    table.add_column(t("table.col.scope", lang), no_wrap=True)
    table.add_column(t("table.col.process", lang), overflow="fold")
    table.add_column(t("table.col.user", lang), overflow="fold")
    table.add_column(t("table.col.firewall", lang), no_wrap=True)
    table.add_column(t("table.col.service", lang), overflow="fold")
    for rec in listeners:
        table.add_row(
            rec.proto.value,
            _host_port(rec.address, rec.port),
            rec.scope.value,
            _process_text(rec),
            clean(rec.user, 40) if rec.user else "?",
            _firewall_cell(rec, lang),
            _service_text(rec, lang),
        )
    out.append(table)
    for rec in listeners:
        where = f"{_host_port(rec.address, rec.port)}/{rec.proto.value}"
        unsure = rec.firewall is None and rec.scope.value != "loopback"
        if unsure or (rec.firewall is not None and rec.firewall.value == "undetermined"):
            backend = f" ({clean(rec.firewall_backend, 32)})" if rec.firewall_backend else ""
            reason = (
                clean(rec.firewall_reason, _REMOTE_LIMIT) or t("table.fw_no_backend", lang)
            )
            line = t("table.fw_undetermined", lang, where=where, backend=backend, reason=reason)
            out.append(Padding(Text(line, style="yellow"), (0, 0, 0, 2)))
    for rec in listeners:
        if rec.probe_address is None:
            where = f"{_host_port(rec.address, rec.port)}/{rec.proto.value}"
            reason = clean(rec.not_probed, 200) if rec.not_probed else t("table.no_reason", lang)
            out.append(Padding(Text(t("table.not_probed_line", lang, where=where, reason=reason)),
                               (0, 0, 0, 2)))
    return out


def _errors_renderables(errors: Sequence[ProbeError], lang: str = "en") -> list[RenderableType]:
    if not errors:
        return []
    out: list[RenderableType] = [Text("")]
    out.append(Text(t("table.probes_not_finished", lang, n=len(errors)), style="bold yellow"))
    out.extend(Text(_error_line(e, with_address=True, lang=lang), style="yellow")
               for e in errors)
    out.append(Text(t("untested_not_closed", lang, n=len(errors)), style="yellow"))
    return out


def render_checklist(
    record: ScanRecord,
    *,
    width: int | None = None,
    color: bool = False,
    why: Mapping[str, str] | None = None,
    lang: str = "en",
    only_problems: bool = False,
) -> str:
    """Return a scan of kind "check" as text: header, summary, checklist, listeners table,
    and every probe that could not finish. ``why`` maps check ids to one-line reasons
    (default: the results' stored texts, in ``lang``). ANSI colours only when ``color``.
    ``only_problems`` hides passed checks and info findings. Raises nothing for any record."""
    hidden: Hidden | None = None
    if only_problems:
        record, hidden = problems.only_problems(record)
    console, buf = _console(width, color)
    items = header_renderables(record, lang)
    items += summary_renderables(record, lang, hidden)
    items += checklist_renderables(record, why, lang, hidden)
    items += listeners_renderables(record.listeners, lang)
    items += path_renderables(record.paths, lang)
    items += _errors_renderables(record.errors, lang)
    for item in items:
        console.print(item)
    return _finish(buf)
