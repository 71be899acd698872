"""nmap's XML output (``nmap -oX``) read into mamori's records.

Pure and bounded: files over ``MAX_BYTES`` are refused before they are read, and a document
with an internal DTD subset, an external DTD, or any entity declaration is refused before it
is built (nmap writes only a bare ``<!DOCTYPE nmaprun>``), so entity expansion ("billion
laughs") and external entities cannot happen. Port states and reasons are kept as nmap gives
them where mamori's model has the same word; the raw reason is kept in the service's extras.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from xml.parsers import expat

from mamori.model import Endpoint, HostResult, PortState, Proto, Reason, Service

MAX_BYTES = 64 * 1024 * 1024

# nmap's service names where mamori's identification uses another word.
_SERVICE_NAMES = {
    "domain": "dns",
    "microsoft-ds": "smb",
    "netbios-ssn": "smb",
    "postgres": "postgresql",
    "mongod": "mongodb",
    "ms-wbt-server": "rdp",
    "submission": "smtp",
    "memcache": "memcached",
    "socks5": "socks",
    "socks4": "socks",
    "https": "http",
    "https-alt": "http",
    "http-alt": "http",
    "upnp": "ssdp",
    "vnc-http": "http",
    "afp": "afp",
    "afpovertcp": "afp",
}
_TLS_NAMES = {"https", "https-alt", "imaps", "pop3s", "smtps", "ldaps"}

_STATES = {
    "open": PortState.OPEN,
    "closed": PortState.CLOSED,
    "filtered": PortState.FILTERED,
    "open|filtered": PortState.OPEN_FILTERED,
    "closed|filtered": PortState.FILTERED,
    "unfiltered": PortState.CLOSED,  # ACK scans only: reachable, state unknown; never "open"
}
_REASONS = {
    "syn-ack": Reason.SYN_ACK,
    "conn-refused": Reason.CONN_REFUSED,
    "reset": Reason.CONN_REFUSED,
    "no-response": Reason.NO_RESPONSE,
    "host-unreach": Reason.HOST_UNREACH,
    "net-unreach": Reason.HOST_UNREACH,
    "admin-prohibited": Reason.HOST_UNREACH,
    "host-prohibited": Reason.HOST_UNREACH,
    "net-prohibited": Reason.HOST_UNREACH,
    "udp-response": Reason.UDP_RESPONSE,
    "port-unreach": Reason.PORT_UNREACH,
}
_DEFAULT_REASON = {
    PortState.OPEN: Reason.SYN_ACK,
    PortState.CLOSED: Reason.CONN_REFUSED,
    PortState.FILTERED: Reason.NO_RESPONSE,
    PortState.OPEN_FILTERED: Reason.NO_RESPONSE,
}


class NmapImportError(ValueError):
    """The file is not an nmap XML document mamori will read (one line, for the user)."""


@dataclass(frozen=True, slots=True)
class NmapRun:
    """One nmap run: its hosts (with endpoints and services) and how it was run."""

    hosts: tuple[HostResult, ...]
    args: str = ""
    version: str = ""
    start: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(h.address for h in self.hosts)


def _refuse_dtd(data: bytes) -> None:
    """Walk the document once with expat and refuse any DTD content beyond a bare name."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(name: str, sysid: str | None, pubid: str | None, internal: int) -> None:
        if sysid or pubid or internal:
            raise NmapImportError("refused: the document declares a DTD (external or internal)")

    def entity(*_args: object) -> None:
        raise NmapImportError("refused: the document declares entities")

    def external(*_args: object) -> int:
        raise NmapImportError("refused: the document refers to an external entity")

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise NmapImportError(f"not well-formed XML: {exc}") from None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _service(el: ET.Element | None, reason: str) -> Service | None:
    if el is None or not el.get("name"):
        return None
    raw = el.get("name", "unknown")
    tls = el.get("tunnel") == "ssl" or raw in _TLS_NAMES
    extra = {
        k: v
        for k, v in (
            ("nmap_name", raw),
            ("extrainfo", el.get("extrainfo")),
            ("ostype", el.get("ostype")),
            ("hostname", el.get("hostname")),
            ("nmap_method", el.get("method")),
            ("nmap_conf", el.get("conf")),
            ("nmap_reason", reason),
        )
        if v
    }
    probed = el.get("method") == "probed"
    return Service(
        name=_SERVICE_NAMES.get(raw, raw),
        product=el.get("product") or None,
        version=el.get("version") or None,
        tls=tls,
        confidence="confirmed" if probed else "port",
        method="nmap" if probed else "nmap-table",
        banner=None,
        extra=MappingProxyType(extra),
    )


def _host(el: ET.Element) -> HostResult | None:
    address = None
    for a in el.findall("address"):
        if a.get("addrtype") in ("ipv4", "ipv6") and a.get("addr"):
            address = a.get("addr")
            break
    if address is None:
        return None
    names = [h.get("name") for h in el.findall("hostnames/hostname") if h.get("type") == "user"]
    endpoints: list[Endpoint] = []
    for p in el.findall("ports/port"):
        port, proto = _int(p.get("portid")), p.get("protocol")
        st = p.find("state")
        if port is None or not 0 <= port <= 65535 or proto not in ("tcp", "udp") or st is None:
            continue  # sctp and ip-protocol scans have no place in mamori's model
        state = _STATES.get(st.get("state", ""))
        if state is None:
            continue
        raw_reason = st.get("reason", "")
        reason = _REASONS.get(raw_reason, _DEFAULT_REASON[state])
        endpoints.append(
            Endpoint(
                address=address,
                port=port,
                proto=Proto(proto),
                state=state,
                reason=reason,
                service=_service(p.find("service"), raw_reason),
            )
        )
    not_shown: dict[str, dict[str, int]] = {}
    protos = {e.proto.value for e in endpoints} or {"tcp"}
    proto_name = next(iter(protos)) if len(protos) == 1 else "tcp"
    for x in el.findall("ports/extraports"):
        count = _int(x.get("count"))
        state = _STATES.get(x.get("state", ""))
        if count is not None and state is not None:
            bucket = not_shown.setdefault(proto_name, {})
            bucket[state.value] = bucket.get(state.value, 0) + count
    endpoints.sort(key=lambda e: (e.proto.value, e.port))
    return HostResult(
        address=address,
        hostname=names[0] if names else None,
        endpoints=tuple(endpoints),
        not_shown=not_shown,
    )


def parse_nmap_xml(data: bytes) -> NmapRun:
    """Parse the bytes of an ``nmap -oX`` file. Raises ``NmapImportError`` for a file over
    ``MAX_BYTES``, a DTD or entity declaration, malformed XML, or a root other than
    ``nmaprun``."""
    if len(data) > MAX_BYTES:
        raise NmapImportError(f"refused: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    _refuse_dtd(data)
    try:
        root = ET.fromstring(data)  # noqa: S314 - _refuse_dtd ran first: no DTD, no entities
    except ET.ParseError as exc:
        raise NmapImportError(f"not well-formed XML: {exc}") from None
    if root.tag != "nmaprun":
        raise NmapImportError(f"not nmap XML output (root element <{root.tag}>, not <nmaprun>)")
    hosts: list[HostResult] = []
    seen: set[str] = set()
    for h in root.findall("host"):
        host = _host(h)
        if host is not None and host.address not in seen:
            seen.add(host.address)
            hosts.append(host)
    scaninfo = [dict(s.attrib) for s in root.findall("scaninfo")]
    return NmapRun(
        hosts=tuple(hosts),
        args=root.get("args", ""),
        version=root.get("version", ""),
        start=_int(root.get("start")),
        info={"scaninfo": scaninfo},
    )


def read_nmap_xml(path: Path) -> NmapRun:
    """Read and parse ``path``, refusing it unread when it is over ``MAX_BYTES``.

    Raises ``NmapImportError`` (see ``parse_nmap_xml``) or for a file that cannot be read.
    """
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise NmapImportError(
                    f"refused: {path} is larger than {MAX_BYTES // (1024 * 1024)} MiB"
                )
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise NmapImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_nmap_xml(data)
