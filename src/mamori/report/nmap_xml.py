"""A stored scan as nmap's XML output (``mamori scan -oX``), valid against nmap's DTD.

Pure: a ``ScanRecord`` in, the document's text out. nmap's tools (``ndiff``) and programs
that import nmap XML (mamori's own ``mamori import`` too) read it. Where nmap's vocabulary
has no word for what mamori did, the nearest honest one is used: mamori does no host
discovery, so every host is ``up`` with reason ``user-set`` (what nmap writes under ``-Pn``);
the TCP sweep is a full connect, so its scaninfo type is ``connect``; findings are script
results of their port (``<script id="mamori-CHECK" output="severity: summary"/>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from xml.sax.saxutils import quoteattr

from mamori.model import (
    CheckResult,
    Endpoint,
    HostResult,
    PortState,
    ScanRecord,
    ScanStatus,
    Service,
)

XML_OUTPUT_VERSION = "1.05"

# mamori's service names where nmap's service table uses another word.
_NMAP_NAMES = {"dns": "domain", "smb": "microsoft-ds", "rdp": "ms-wbt-server"}
# A service's confidence as nmap's conf (0-10) and method.
_CONF = {"confirmed": ("10", "probed"), "likely": ("7", "probed"), "port": ("3", "table")}
# The reason nmap gives for ports it does not list one by one, by state.
_EXTRA_REASON = {
    PortState.CLOSED.value: "conn-refused",
    PortState.FILTERED.value: "no-response",
    PortState.OPEN_FILTERED.value: "no-response",
}


# Characters XML 1.0 forbids even when escaped: a hostile banner must not break the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _attrs(values: Mapping[str, object]) -> str:
    return "".join(f" {k}={quoteattr(_NOT_XML.sub('?', str(v)))}"
                   for k, v in values.items() if v is not None)


def _el(name: str, values: Mapping[str, object], indent: int = 0) -> str:
    return f"{' ' * indent}<{name}{_attrs(values)}/>"


def _epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def scan_args(record: ScanRecord) -> str:
    """The command line the record stands for, rebuilt from its stored options."""
    opts = record.options
    parts = [f"mamori {record.kind}"]
    if opts.get("ports"):
        parts.append(f"-p {opts['ports']}")
    elif opts.get("top_ports"):
        parts.append(f"--top-ports {opts['top_ports']}")
    if opts.get("udp"):
        parts.append("--udp")
    parts.extend(record.targets)
    return " ".join(parts)


def _scaninfo(record: ScanRecord) -> Iterator[str]:
    ranges = record.options.get("probed")  # {"tcp": "22,80,1000-2000", "udp": "53"}
    if not isinstance(ranges, Mapping):
        return
    for proto, kind in (("tcp", "connect"), ("udp", "udp")):
        spec = ranges.get(proto)
        count = record.options.get(f"{proto}_port_count")
        if spec and isinstance(count, int) and count > 0:
            yield _el("scaninfo", {"type": kind, "protocol": proto,
                                   "numservices": count, "services": spec})


def _service(svc: Service) -> str:
    conf, method = _CONF.get(svc.confidence, ("3", "table"))
    name = svc.extra.get("nmap_name") or _NMAP_NAMES.get(svc.name, svc.name)
    return _el("service", {
        "name": name, "product": svc.product, "version": svc.version,
        "extrainfo": svc.extra.get("extrainfo"), "tunnel": "ssl" if svc.tls else None,
        "method": method, "conf": conf,
    }, 3)


def _port(ep: Endpoint, findings: Sequence[CheckResult]) -> Iterator[str]:
    yield f'  <port protocol="{ep.proto.value}" portid="{ep.port}">'
    yield _el("state", {"state": ep.state.value, "reason": ep.reason.value,
                        "reason_ttl": "0"}, 3)
    if ep.service is not None:
        yield _service(ep.service)
    for finding in findings:  # as NSE script results: ndiff shows them appear and go
        yield _el("script", {"id": f"mamori-{finding.check_id}",
                             "output": f"{finding.severity.value}: {finding.summary}"}, 3)
    yield "  </port>"


def _host(
    host: HostResult, findings: Mapping[tuple[str, str, int], Sequence[CheckResult]]
) -> Iterator[str]:
    yield "<host>"
    yield _el("status", {"state": "up", "reason": "user-set", "reason_ttl": "0"}, 1)
    family = "ipv6" if ":" in host.address else "ipv4"
    yield _el("address", {"addr": host.address, "addrtype": family}, 1)
    if host.hostname:
        yield " <hostnames>"
        yield _el("hostname", {"name": host.hostname, "type": "user"}, 2)
        yield " </hostnames>"
    else:
        yield " <hostnames/>"
    yield " <ports>"
    for proto, counts in sorted(host.not_shown.items()):
        for state, count in sorted(counts.items()):
            if count > 0:
                yield f'  <extraports state={quoteattr(state)} count="{int(count)}">'
                yield _el("extrareasons", {"reason": _EXTRA_REASON.get(state, "no-response"),
                                           "count": int(count), "proto": proto}, 3)
                yield "  </extraports>"
    for ep in sorted(host.endpoints, key=lambda e: (e.proto.value, e.port)):
        yield from _port(ep, findings.get(ep.key, ()))
    yield " </ports>"
    yield "</host>"


def render_nmap_xml(record: ScanRecord) -> str:
    """Return ``record`` as an nmap XML document (nmaprun, scaninfo, one host element per
    host with status, address, hostnames and ports, runstats), ending in a newline."""
    start, end = _epoch(record.started_at), _epoch(record.finished_at)
    args = scan_args(record)
    ok = record.status is ScanStatus.DONE
    run = {
        "scanner": "nmap", "args": args, "start": start,
        "startstr": record.started_at.strftime("%a %b %d %H:%M:%S %Y"),
        "version": f"mamori-{record.mamori_version}",
        "xmloutputversion": XML_OUTPUT_VERSION,
    }
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE nmaprun>",
        f"<!-- mamori scan {record.id}, written in nmap's XML format -->",
        f"<nmaprun{_attrs(run)}>",
        *_scaninfo(record),
        '<verbose level="0"/>',
        '<debugging level="0"/>',
    ]
    findings: dict[tuple[str, str, int], list[CheckResult]] = {}
    for finding in record.findings:
        findings.setdefault((finding.address, finding.proto.value, finding.port),
                            []).append(finding)
    for host in record.hosts:
        lines.extend(_host(host, findings))
    n = len(record.hosts)
    elapsed = max(0, (end or start or 0) - (start or 0))
    lines += [
        "<runstats>",
        _el("finished", {
            "time": end if end is not None else start, "elapsed": elapsed,
            "summary": f"mamori done; {n} IP address{'es' if n != 1 else ''} scanned",
            "exit": "success" if ok else "error",
            "errormsg": None if ok else f"scan {record.status.value}",
        }, 1),
        _el("hosts", {"up": n, "down": 0, "total": n}, 1),
        "</runstats>",
        "</nmaprun>",
    ]
    return "\n".join(lines) + "\n"
