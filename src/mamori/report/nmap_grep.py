"""A stored scan as nmap's grepable output (``mamori scan -oG``): one ``Host:`` line with its
status and one with its ports, in nmap's field layout
(``port/state/protocol/owner/service/rpc/version/``), so ``grep``/``cut`` recipes written for
``nmap -oG`` work unchanged. Pure: a ``ScanRecord`` in, text out.
"""

from __future__ import annotations

import re

from mamori.model import Endpoint, HostResult, ScanRecord
from mamori.report.nmap_xml import scan_args

_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _field(text: str | None) -> str:
    # nmap's own rule: the field separators / and , never appear inside a field; a control
    # character (a newline in a hostile banner) would break the one-host-per-line format.
    return _CONTROL.sub(" ", (text or "").replace("/", "|").replace(",", " ")).strip()


def _port(ep: Endpoint) -> str:
    svc = ep.service
    name = svc.name if svc is not None else ""
    if svc is not None and svc.tls:
        name = f"ssl|{name}"
    version = " ".join(p for p in (svc.product, svc.version) if p) if svc is not None else ""
    return f"{ep.port}/{ep.state.value}/{ep.proto.value}//{_field(name)}//{_field(version)}/"


def _host_lines(host: HostResult) -> list[str]:
    who = f"Host: {host.address} ({_field(host.hostname)})"
    line = f"{who}\tPorts: " + ", ".join(
        _port(ep) for ep in sorted(host.endpoints, key=lambda e: (e.proto.value, e.port))
    )
    ignored = [(state, n) for counts in host.not_shown.values() for state, n in counts.items()
               if n > 0]
    if len(ignored) == 1:
        line += f"\tIgnored State: {ignored[0][0]} ({ignored[0][1]})"
    lines = [f"{who}\tStatus: Up"]
    if host.endpoints or ignored:
        lines.append(line)
    return lines


def render_nmap_grepable(record: ScanRecord) -> str:
    """Return ``record`` in nmap's grepable format (comment header, host lines, footer)."""
    started = record.started_at.strftime("%a %b %d %H:%M:%S %Y")
    lines = [f"# mamori {record.mamori_version} scan initiated {started} as: "
             f"{scan_args(record)}"]
    for host in record.hosts:
        lines.extend(_host_lines(host))
    n = len(record.hosts)
    elapsed = ((record.finished_at - record.started_at).total_seconds()
               if record.finished_at is not None else 0.0)
    done = (record.finished_at or record.started_at).strftime("%a %b %d %H:%M:%S %Y")
    lines.append(f"# mamori done at {done} -- {n} IP address{'es' if n != 1 else ''} "
                 f"({n} host{'s' if n != 1 else ''} up) scanned in {elapsed:.2f} seconds")
    return "\n".join(lines) + "\n"
