"""Terminal output: compact, nmap-like tables rendered with rich into a string.

Every probe error is printed (under its host, or at the end for scan-level ones), and so is
every check that could not run: "could not test" must never read as "nothing there". Text that
came from the network is sanitised so a hostile banner cannot drive the terminal, and rich
markup is off, so "[bold]" in a banner stays literal text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mamori.model import (
    CheckResult,
    CheckStatus,
    Endpoint,
    HostResult,
    Layer,
    PortState,
    ProbeError,
    ScanRecord,
    ScanStatus,
    ScanSummary,
    Severity,
)
from mamori.report import problems
from mamori.report import text as catalog_text
from mamori.report.accepted import accepted_text
from mamori.report.i18n import confidence_name, t
from mamori.report.json import duration_s
from mamori.report.problems import Hidden

DEFAULT_WIDTH = 100

_STATUS_STYLE = {
    ScanStatus.DONE: "green",
    ScanStatus.RUNNING: "yellow",
    ScanStatus.FAILED: "bold red",
    ScanStatus.INTERRUPTED: "bold red",
}

_STATUS_WARNING = {
    ScanStatus.INTERRUPTED: "table.warn.interrupted",
    ScanStatus.FAILED: "table.warn.failed",
    ScanStatus.RUNNING: "table.warn.running",
}


_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "",
}

_LAYER_ORDER = {layer: i for i, layer in enumerate(Layer)}

_DETAIL_INDENT = 6  # columns of indentation for a finding's detail lines
_NOT_TESTED_PREFIX = "not tested: "


def layer_title(layer: Layer, lang: str = "en") -> str:
    """"OS layer", "Network layer (TCP/IP)", "Application layer" in ``lang``."""
    return t(f"layer_title.{layer.value}", lang)


def severity_label(severity: Severity, lang: str = "en") -> str:
    """"CRITICAL", "HIGH"... in English; the Japanese word in Japanese."""
    return t(f"severity.{severity.value}", lang).upper()


def worst_first(findings: Sequence[CheckResult]) -> list[CheckResult]:
    """Findings worst first; stable, so the store's order (host, port, check) survives
    within a severity."""
    return sorted(findings, key=lambda c: -c.severity.rank)


def findings_by_layer(
    findings: Sequence[CheckResult], *, every_layer: bool = True
) -> list[tuple[Layer, list[CheckResult]]]:
    """The findings grouped by layer, as every report format shows them: the layer holding the
    worst finding first (equal ones in OS, network, application order), findings worst first
    within a layer. ``every_layer``: empty layers too (a checklist says "nothing found" for
    them), else only layers with findings."""
    groups: dict[Layer, list[CheckResult]] = {layer: [] for layer in Layer}
    for c in findings:
        groups[c.layer].append(c)
    order = sorted(
        (layer for layer in Layer if every_layer or groups[layer]),
        key=lambda layer: (-max((c.severity.rank for c in groups[layer]), default=-1),
                           _LAYER_ORDER[layer]),
    )
    return [(layer, worst_first(groups[layer])) for layer in order]


def clean(value: str, limit: int = 200) -> str:
    """Return ``value`` with control and other non-printable characters escaped, capped.

    Used for every string that may come from the network (banners, products, hostnames).
    """
    out = []
    for ch in value[:limit]:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if len(value) > limit else "")


def format_time(value: datetime) -> str:
    """Return ``value`` as "YYYY-MM-DD HH:MM:SS UTC"."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """Return a short human duration ("0.42s", "3m05s", "1h02m") or "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _console(width: int | None, color: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width or DEFAULT_WIDTH,
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )
    return console, buf


def _finish(buf: io.StringIO) -> str:
    # rich pads table cells to the column width; trailing blanks only make diffs noisy.
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _service_cells(ep: Endpoint) -> tuple[str, str]:
    svc = ep.service
    if svc is None:
        return "-", ""
    name = clean(svc.name, 40)
    if svc.tls:
        name = f"tls/{name}"
    if svc.confidence == "port":
        name += "?"  # as nmap: a guess from the port number alone
    version = " ".join(clean(p, 80) for p in (svc.product, svc.version) if p)
    if svc.confidence == "likely":
        version = f"{version} (likely)".strip()
    return name, version


def _error_line(err: ProbeError, with_address: bool, lang: str = "en") -> str:
    where = []
    if with_address and err.address:
        where.append(clean(err.address, 64))
    if err.port is not None:
        proto = err.proto.value if err.proto is not None else "?"
        where.append(f"{err.port}/{proto}")
    place = " ".join(where) or ("scan" if lang == "en" else t("the_scan", lang))
    probe = f" [{clean(err.probe, 40)}]" if err.probe else ""
    prefix = t("table.not_tested_prefix", lang)
    return f"  {prefix}{place}: {err.kind.value}: {clean(err.detail)}{probe}"


def _host_renderables(
    host: HostResult, errors: Sequence[ProbeError], lang: str = "en"
) -> list[RenderableType]:
    out: list[RenderableType] = []
    name = f" ({clean(host.hostname, 120)})" if host.hostname else ""
    out.append(Text(t("table.host", lang, address=host.address, name=name), style="bold"))
    if host.endpoints:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column(t("table.col.port", lang), no_wrap=True)
        table.add_column(t("table.col.state", lang), no_wrap=True)
        table.add_column(t("table.col.service", lang), no_wrap=True)
        table.add_column(t("table.col.version", lang), overflow="fold")
        for ep in host.endpoints:
            svc, version = _service_cells(ep)
            style = "green" if ep.state is PortState.OPEN else ""
            table.add_row(
                f"{ep.port}/{ep.proto.value}", Text(ep.state.value, style=style), svc, version
            )
        out.append(table)
    else:
        out.append(Text(t("table.no_ports", lang)))
    for proto in sorted(host.not_shown):
        counts = host.not_shown[proto]
        for key in sorted(counts):
            n = counts[key]
            if n:
                out.append(Text(t("table.not_shown", lang, n=n, state=clean(key, 40),
                                  proto=clean(proto, 8))))
    for err in errors:
        out.append(Text(_error_line(err, with_address=False, lang=lang), style="yellow"))
    return out


def _endpoint_text(address: str, port: int, proto: str) -> str:
    host = clean(address, 64)
    if ":" in host:
        host = f"[{host}]"  # IPv6: keep the port readable
    return f"{host}:{port}/{proto}"


def _short(value: str, limit: int) -> str:
    """The first non-empty line of ``value``, cleaned and capped (a short fix, a one-liner)."""
    for line in value.splitlines():
        if line.strip():
            return clean(line.strip(), limit)
    return ""


def _finding_renderables(c: CheckResult, lang: str = "en") -> list[RenderableType]:
    head = Text(severity_label(c.severity, lang), style=_SEVERITY_STYLE[c.severity])
    confidence = confidence_name(c.confidence.value if c.confidence else None, lang)
    head.append(
        f" ({confidence})  {_endpoint_text(c.address, c.port, c.proto.value)}"
        f"  {clean(catalog_text.title(c, lang), 160)} [{clean(c.check_id, 64)}]"
    )
    lines = [clean(catalog_text.summary(c, lang), 300)]
    if c.accepted is not None:
        lines.append(clean(accepted_text(c, lang), 600))
    exposure = catalog_text.exposure(c, lang)
    if exposure:
        lines.append(f"{t('exposure.label', lang)}: {clean(exposure, 200)}")
    if c.evidence is not None:
        lines.append(f"{t('table.test', lang)}{clean(c.evidence.test, 300)}")
    for key, value in catalog_text.fixes(c, lang).items():  # the platforms the record holds
        fix = _short(value, 200)
        if fix and fix != "-":
            label = catalog_text.PLATFORM_LABEL[key]
            lines.append(f"{t('table.fix', lang, platform=label)}{fix}")
    # Padding, not leading blanks: wrapped lines keep the indentation.
    out: list[RenderableType] = [Padding(head, (0, 0, 0, 2))]
    out.extend(Padding(Text(line), (0, 0, 0, _DETAIL_INDENT)) for line in lines)
    return out


def severity_counts(header: Text, findings: Sequence[CheckResult], lang: str,
                    first: str) -> int:
    """Append "1 critical, 2 low" (coloured, worst first; "緊急 1、低 2" in Japanese) to
    ``header`` after ``first``; return the number of severities named."""
    counts = {s: sum(1 for c in findings if c.severity is s) for s in Severity}
    parts = [(s, n) for s, n in sorted(counts.items(), key=lambda kv: -kv[0].rank) if n]
    for i, (sev, n) in enumerate(parts):
        header.append(first if i == 0 else t("list_sep", lang))
        name = t(f"severity.{sev.value}", lang)
        header.append(t("severity_count", lang, n=n, severity=name), style=_SEVERITY_STYLE[sev])
    return len(parts)


def _findings_header(findings: Sequence[CheckResult], lang: str = "en") -> Text:
    header = Text(t("table.findings_n", lang, n=len(findings)), style="bold")
    severity_counts(header, findings, lang, ": ")
    return header


def _not_tested_line(c: CheckResult, lang: str = "en") -> str:
    reason = c.summary
    if reason.startswith(_NOT_TESTED_PREFIX):
        reason = reason[len(_NOT_TESTED_PREFIX) :]
    where = _endpoint_text(c.address, c.port, c.proto.value)
    return t("table.not_tested_check", lang, check=clean(c.check_id, 64), where=where,
             reason=clean(reason, 300))


def _ran_hidden(hidden: Hidden | None) -> bool:
    """Checks ran but --only-problems hid every one of them."""
    return hidden is not None and bool(hidden.passed or hidden.info)


def passed_renderable(checks: Sequence[CheckResult], hidden: Hidden | None, lang: str) -> Text:
    """"N checks passed", or with --only-problems what was hidden."""
    if hidden is not None:
        return Text(t("only_problems_hidden", lang, passed=hidden.passed, info=hidden.info,
                      closed=hidden.closed))
    passed = sum(1 for c in checks if c.status is CheckStatus.PASSED)
    return Text(t("checks_passed", lang, n=passed))


def summary_renderables(
    record: ScanRecord, lang: str = "en", hidden: Hidden | None = None
) -> list[RenderableType]:
    """The short summary every table starts with: counts by severity, the three worst
    findings, and how many checks passed, were not tested, and probes did not finish.
    Nothing when no check ran (the table then has nothing to sum up)."""
    if not record.checks and not _ran_hidden(hidden):
        return []
    findings = record.findings
    out: list[RenderableType] = [Text("")]
    if not findings:
        out.append(Text(t("table.summary_none", lang), style="bold green"))
    else:
        head = Text(t("table.summary", lang, n=len(findings)), style="bold")
        if severity_counts(head, findings, lang, " ("):
            head.append(")")
        out.append(head)
        out.append(Text(t("table.fix_first", lang)))
        for i, c in enumerate(worst_first(findings)[:3], 1):
            line = Text(f"{i}. ")
            line.append(severity_label(c.severity, lang), style=_SEVERITY_STYLE[c.severity])
            where = f", {_endpoint_text(c.address, c.port, c.proto.value)}" if c.port else ""
            line.append(f"  {clean(catalog_text.title(c, lang), 160)}{where}")
            out.append(Padding(line, (0, 0, 0, 2)))
    not_tested = sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED)
    passed = hidden.passed if hidden is not None else sum(
        1 for c in record.checks if c.status is CheckStatus.PASSED)
    out.append(Text(t("table.summary_checks", lang, passed=passed, not_tested=not_tested,
                      errors=len(record.errors))))
    return out


def _checks_renderables(
    checks: Sequence[CheckResult], lang: str = "en", hidden: Hidden | None = None
) -> list[RenderableType]:
    """The findings (grouped by layer, worst first), every check not tested, the pass count."""
    if not checks and not _ran_hidden(hidden):
        return []  # no checks were run: nothing to say, and nothing claimed
    out: list[RenderableType] = [Text("")]
    findings = [c for c in checks if c.status is CheckStatus.FINDING]
    if findings:
        out.append(_findings_header(findings, lang))
        for i, (layer, group) in enumerate(findings_by_layer(findings, every_layer=False)):
            if i:
                out.append(Text(""))
            out.append(Text(layer_title(layer, lang), style="bold"))
            for c in group:
                out.extend(_finding_renderables(c, lang))
    else:
        out.append(Text(t("table.findings_none", lang), style="bold green"))
    not_tested = [c for c in checks if c.status is CheckStatus.NOT_TESTED]
    if not_tested:
        out.append(Text(""))
        out.append(Text(t("table.checks_not_tested", lang, n=len(not_tested)),
                        style="bold yellow"))
        out.extend(
            Padding(Text(_not_tested_line(c, lang), style="yellow"), (0, 0, 0, 2))
            for c in not_tested
        )
    out.append(passed_renderable(checks, hidden, lang))
    return out


def status_label(status: ScanStatus, lang: str = "en") -> str:
    return t(f"status.{status.value}", lang).upper()


def header_renderables(record: ScanRecord, lang: str = "en") -> list[RenderableType]:
    """The first lines of every scan view: kind, id, status, times, targets, and a warning
    when the results are incomplete."""
    header = Text(f"mamori {clean(record.kind, 32)} #{record.id}  ")
    header.append(status_label(record.status, lang), style=_STATUS_STYLE.get(record.status, ""))
    header.append(
        f"  {t('table.started', lang)} {format_time(record.started_at)}"
        f"  {t('table.took', lang)} "
        f"{format_duration(duration_s(record.started_at, record.finished_at))}"
    )
    out: list[RenderableType] = [header]
    out.append(Text(t("table.targets", lang) + ", ".join(clean(x, 120) for x in record.targets)))
    warning = _STATUS_WARNING.get(record.status)
    if warning:
        out.append(Text(f"!! {t(warning, lang)}", style="bold red"))
    return out


def render_table(
    record: ScanRecord,
    *,
    width: int | None = None,
    color: bool = False,
    lang: str = "en",
    only_problems: bool = False,
) -> str:
    """Return the scan as compact nmap-like text (ANSI colours only when ``color``): the
    header, a short summary, the hosts and their ports, the findings by layer, the checks
    not tested and the probes that could not finish. ``only_problems`` hides passed checks,
    info findings and closed/filtered ports (``report.problems``). ``lang``: "en" or "ja".

    This is the outside view (kind "scan"); ``report.render`` shows kind "check" as the
    checklist (``report.checklist.render_checklist``)."""
    hidden: Hidden | None = None
    if only_problems:
        record, hidden = problems.only_problems(record)
    console, buf = _console(width, color)
    for item in header_renderables(record, lang):
        console.print(item)
    for item in summary_renderables(record, lang, hidden):
        console.print(item)

    by_host: dict[str, list[ProbeError]] = {}
    loose: list[ProbeError] = []
    addresses = {h.address for h in record.hosts}
    for err in record.errors:
        if err.address is not None and err.address in addresses:
            by_host.setdefault(err.address, []).append(err)
        else:
            loose.append(err)

    if not record.hosts:
        console.print(Text("\n" + t("table.no_hosts", lang)))
    for host in record.hosts:
        console.print()
        for item in _host_renderables(host, by_host.get(host.address, ()), lang):
            console.print(item)
    for item in _checks_renderables(record.checks, lang, hidden):
        console.print(item)
    if loose:
        console.print()
        console.print(Text(t("table.loose_not_tested", lang, n=len(loose)), style="bold yellow"))
        for err in loose:
            console.print(Text(_error_line(err, with_address=True, lang=lang), style="yellow"))
    total_errors = len(record.errors)
    if total_errors:
        console.print()
        console.print(Text(t("untested_not_closed", lang, n=total_errors), style="yellow"))
    return _finish(buf)


def targets_cell(targets: Sequence[str], shown: int = 2) -> str:
    """A run's targets for one table cell: the first ``shown`` and how many more (an import
    of 3,285 hosts is one row, not 1,640 lines); JSON keeps them all."""
    if len(targets) <= shown + 1:  # "(+1 more)" would be longer than the one it hides
        return ", ".join(clean(t, 60) for t in targets)
    first = ", ".join(clean(t, 60) for t in targets[:shown])
    return f"{first}, … (+{len(targets) - shown:,} more)"


def render_history_table(
    summaries: Sequence[ScanSummary], *, width: int | None = None, color: bool = False
) -> str:
    """Return the scan history as a table (newest first, as given)."""
    console, buf = _console(width, color)
    if not summaries:
        console.print(Text("no scans stored yet"))
        return _finish(buf)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col in ("ID", "KIND", "STATUS", "STARTED", "DURATION", "TARGETS", "OPEN", "ERRORS"):
        table.add_column(
            col,
            justify="right" if col in {"ID", "OPEN", "ERRORS"} else "left",
            overflow="fold",
            no_wrap=col != "TARGETS",
        )
    for s in summaries:
        table.add_row(
            str(s.id),
            s.kind,
            Text(s.status.value, style=_STATUS_STYLE.get(s.status, "")),
            format_time(s.started_at),
            format_duration(duration_s(s.started_at, s.finished_at)),
            targets_cell(s.targets),
            str(s.open_ports),
            str(s.error_count),
        )
    console.print(table)
    return _finish(buf)
