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
from mamori.report.json import duration_s

DEFAULT_WIDTH = 100

_STATUS_STYLE = {
    ScanStatus.DONE: "green",
    ScanStatus.RUNNING: "yellow",
    ScanStatus.FAILED: "bold red",
    ScanStatus.INTERRUPTED: "bold red",
}

_STATUS_WARNING = {
    ScanStatus.INTERRUPTED: "SCAN INTERRUPTED: the process stopped before finishing; "
    "the results below are incomplete.",
    ScanStatus.FAILED: "SCAN FAILED: the results below are incomplete.",
    ScanStatus.RUNNING: "SCAN STILL RUNNING (or stopped on another host): "
    "the results below are partial.",
}


_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "",
}

_LAYER_TITLE = {
    Layer.OS: "OS layer",
    Layer.NETWORK: "Network layer (TCP/IP)",
    Layer.APPLICATION: "Application layer",
}
_LAYER_ORDER = {layer: i for i, layer in enumerate(Layer)}

_DETAIL_INDENT = 6  # columns of indentation for a finding's detail lines
_NOT_TESTED_PREFIX = "not tested: "


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


def _error_line(err: ProbeError, with_address: bool) -> str:
    where = []
    if with_address and err.address:
        where.append(clean(err.address, 64))
    if err.port is not None:
        proto = err.proto.value if err.proto is not None else "?"
        where.append(f"{err.port}/{proto}")
    place = " ".join(where) or "scan"
    probe = f" [{clean(err.probe, 40)}]" if err.probe else ""
    return f"  not tested: {place}: {err.kind.value}: {clean(err.detail)}{probe}"


def _host_renderables(host: HostResult, errors: Sequence[ProbeError]) -> list[RenderableType]:
    out: list[RenderableType] = []
    name = f" ({clean(host.hostname, 120)})" if host.hostname else ""
    out.append(Text(f"Host {host.address}{name}", style="bold"))
    if host.endpoints:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column("PORT", no_wrap=True)
        table.add_column("STATE", no_wrap=True)
        table.add_column("SERVICE", no_wrap=True)
        table.add_column("VERSION", overflow="fold")
        for ep in host.endpoints:
            svc, version = _service_cells(ep)
            style = "green" if ep.state is PortState.OPEN else ""
            table.add_row(
                f"{ep.port}/{ep.proto.value}", Text(ep.state.value, style=style), svc, version
            )
        out.append(table)
    else:
        out.append(Text("  no ports to list"))
    for proto in sorted(host.not_shown):
        counts = host.not_shown[proto]
        for key in sorted(counts):
            n = counts[key]
            if n:
                plural = "port" if n == 1 else "ports"
                out.append(Text(f"Not shown: {n} {clean(key, 40)} {clean(proto, 8)} {plural}"))
    for err in errors:
        out.append(Text(_error_line(err, with_address=False), style="yellow"))
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


def _finding_renderables(c: CheckResult) -> list[RenderableType]:
    head = Text(c.severity.value.upper(), style=_SEVERITY_STYLE[c.severity])
    confidence = c.confidence.value if c.confidence is not None else "?"
    head.append(
        f" ({confidence})  {_endpoint_text(c.address, c.port, c.proto.value)}"
        f"  {clean(c.title, 160)} [{clean(c.check_id, 64)}]"
    )
    lines = [clean(c.summary, 300)]
    if c.evidence is not None:
        lines.append(f"test: {clean(c.evidence.test, 300)}")
    fix = _short(c.remediation.get("linux", ""), 200)
    if fix:
        lines.append(f"fix (Linux): {fix}")
    # Padding, not leading blanks: wrapped lines keep the indentation.
    out: list[RenderableType] = [Padding(head, (0, 0, 0, 2))]
    out.extend(Padding(Text(line), (0, 0, 0, _DETAIL_INDENT)) for line in lines)
    return out


def _findings_header(findings: Sequence[CheckResult]) -> Text:
    header = Text(f"Findings ({len(findings)})", style="bold")
    counts = {s: sum(1 for c in findings if c.severity is s) for s in Severity}
    parts = [(s, n) for s, n in sorted(counts.items(), key=lambda kv: -kv[0].rank) if n]
    for i, (sev, n) in enumerate(parts):
        header.append(": " if i == 0 else ", ")
        header.append(f"{n} {sev.value}", style=_SEVERITY_STYLE[sev])
    return header


def _not_tested_line(c: CheckResult) -> str:
    reason = c.summary
    if reason.startswith(_NOT_TESTED_PREFIX):
        reason = reason[len(_NOT_TESTED_PREFIX) :]
    where = _endpoint_text(c.address, c.port, c.proto.value)
    return f"not tested: {clean(c.check_id, 64)} on {where}: {clean(reason, 300)}"


def _checks_renderables(checks: Sequence[CheckResult]) -> list[RenderableType]:
    """The findings (grouped by layer, worst first), every check not tested, the pass count."""
    if not checks:
        return []  # no checks were run: nothing to say, and nothing claimed
    out: list[RenderableType] = [Text("")]
    findings = [c for c in checks if c.status is CheckStatus.FINDING]
    if findings:
        out.append(_findings_header(findings))
        by_layer: dict[Layer, list[CheckResult]] = {}
        for c in findings:
            by_layer.setdefault(c.layer, []).append(c)
        # The layer holding the worst finding comes first; equal ones in OS/network/app order.
        layers = sorted(
            by_layer,
            key=lambda layer: (-max(c.severity.rank for c in by_layer[layer]), _LAYER_ORDER[layer]),
        )
        for i, layer in enumerate(layers):
            if i:
                out.append(Text(""))
            out.append(Text(_LAYER_TITLE[layer], style="bold"))
            # A stable sort: the store's order (host, port, check) survives within a severity.
            for c in sorted(by_layer[layer], key=lambda c: -c.severity.rank):
                out.extend(_finding_renderables(c))
    else:
        out.append(Text("Findings: none", style="bold green"))
    not_tested = [c for c in checks if c.status is CheckStatus.NOT_TESTED]
    if not_tested:
        out.append(Text(""))
        out.append(Text(f"Checks not tested ({len(not_tested)}):", style="bold yellow"))
        out.extend(
            Padding(Text(_not_tested_line(c), style="yellow"), (0, 0, 0, 2)) for c in not_tested
        )
    passed = sum(1 for c in checks if c.status is CheckStatus.PASSED)
    out.append(Text(f"{passed} check{'' if passed == 1 else 's'} passed"))
    return out


def header_renderables(record: ScanRecord) -> list[RenderableType]:
    """The first lines of every scan view: kind, id, status, times, targets, and a warning
    when the results are incomplete."""
    header = Text(f"mamori {clean(record.kind, 32)} #{record.id}  ")
    header.append(record.status.value.upper(), style=_STATUS_STYLE.get(record.status, ""))
    header.append(
        f"  started {format_time(record.started_at)}"
        f"  took {format_duration(duration_s(record.started_at, record.finished_at))}"
    )
    out: list[RenderableType] = [header]
    out.append(Text("targets: " + ", ".join(clean(t, 120) for t in record.targets)))
    warning = _STATUS_WARNING.get(record.status)
    if warning:
        out.append(Text(f"!! {warning}", style="bold red"))
    return out


def render_table(record: ScanRecord, *, width: int | None = None, color: bool = False) -> str:
    """Return the scan as compact nmap-like text (ANSI colours only when ``color``).

    This is the outside view (kind "scan"); ``report.render`` shows kind "check" as the
    checklist (``report.checklist.render_checklist``)."""
    console, buf = _console(width, color)
    for item in header_renderables(record):
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
        console.print(Text("\nno hosts"))
    for host in record.hosts:
        console.print()
        for item in _host_renderables(host, by_host.get(host.address, ())):
            console.print(item)
    for item in _checks_renderables(record.checks):
        console.print(item)
    if loose:
        console.print()
        console.print(Text(f"Not tested ({len(loose)}):", style="bold yellow"))
        for err in loose:
            console.print(Text(_error_line(err, with_address=True), style="yellow"))
    total_errors = len(record.errors)
    if total_errors:
        console.print()
        console.print(
            Text(
                f"{total_errors} probe(s) could not finish: untested is not the same as closed.",
                style="yellow",
            )
        )
    return _finish(buf)


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
            ", ".join(clean(t, 60) for t in s.targets),
            str(s.open_ports),
            str(s.error_count),
        )
    console.print(table)
    return _finish(buf)
