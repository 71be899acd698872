"""nmap's XML output (``nmap -oX``) read into mamori's records, as a stream.

Pure and bounded: the document is fed to expat in chunks and each ``<host>`` becomes a
``HostResult`` as soon as its end tag is read, then is forgotten, so memory does not grow with
the file (a 63 MB file used to take 800 MB). Only the elements mamori uses are kept while a
host is read (addresses, hostnames, ports, their state and service, extraports).

A document with an internal DTD subset, an external DTD, or any entity declaration is refused
(nmap writes only a bare ``<!DOCTYPE nmaprun>``), so entity expansion ("billion laughs") and
external entities cannot happen; these come before the root element, so before any host.

What the file says that mamori will not take is reported, never dropped silently: a host
address that is not an IP address (it would be resolved through the system's resolver later),
a port number that is not 1-65535, a port state nmap does not define, a host listed twice.
Each is an ``ImportProblem`` in the stream. SCTP and IP-protocol scans have no place in
mamori's model and are skipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from xml.parsers import expat

from mamori.model import Endpoint, HostResult, PortState, Proto, Reason, Service

MAX_BYTES = 64 * 1024 * 1024
CHUNK = 64 * 1024
# More port elements than two full protocol sweeps in one host: the rest is not kept.
MAX_PORTS_PER_HOST = 2 * 65535

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
# Elements read inside <host>; everything else there (scripts, os, trace, times) is skipped.
_HOST_PARTS = frozenset({"address", "hostname", "port", "state", "service", "extraports",
                         "extrareasons"})
_CONTAINERS = frozenset({"hostnames", "ports"})  # passed through to the parts inside

_Attrs = dict[str, str]


class NmapImportError(ValueError):
    """The file is not an nmap XML document mamori will read (one line, for the user)."""


@dataclass(frozen=True, slots=True)
class NmapHeader:
    """How nmap was run: the root element's attributes and the ``<scaninfo>`` elements."""

    args: str = ""
    version: str = ""
    start: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """Something in the file mamori did not take: ``address`` and the raw ``port`` text where
    it concerns one; ``detail`` says what and why, in one line."""

    address: str | None
    port: str | None
    detail: str

    @property
    def port_number(self) -> int | None:
        """The port as a number when it is one in 1-65535, else None."""
        value = _int(self.port)
        return value if value is not None and 0 < value <= 65535 else None


NmapItem = NmapHeader | HostResult | ImportProblem


@dataclass(frozen=True, slots=True)
class NmapRun:
    """One nmap run read whole: its hosts, what was not taken, and how it was run."""

    hosts: tuple[HostResult, ...]
    problems: tuple[ImportProblem, ...] = ()
    args: str = ""
    version: str = ""
    start: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(h.address for h in self.hosts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class _HostParts:
    """The kept parts of one ``<host>`` while it is read."""

    addresses: list[_Attrs] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    ports: list[tuple[_Attrs, _Attrs | None, _Attrs | None]] = field(default_factory=list)
    extraports: list[tuple[_Attrs, str | None]] = field(default_factory=list)
    port: _Attrs | None = None  # the <port> being read, its <state> and <service>
    state: _Attrs | None = None
    service: _Attrs | None = None
    dropped_ports: int = 0


def _service(attrs: _Attrs | None, reason: str) -> Service | None:
    if attrs is None or not attrs.get("name"):
        return None
    raw = attrs.get("name", "unknown")
    tls = attrs.get("tunnel") == "ssl" or raw in _TLS_NAMES
    extra = {
        k: v
        for k, v in (
            ("nmap_name", raw),
            ("extrainfo", attrs.get("extrainfo")),
            ("ostype", attrs.get("ostype")),
            ("hostname", attrs.get("hostname")),
            ("nmap_method", attrs.get("method")),
            ("nmap_conf", attrs.get("conf")),
            ("nmap_reason", reason),
        )
        if v
    }
    probed = attrs.get("method") == "probed"
    return Service(
        name=_SERVICE_NAMES.get(raw, raw),
        product=attrs.get("product") or None,
        version=attrs.get("version") or None,
        tls=tls,
        confidence="confirmed" if probed else "port",
        method="nmap" if probed else "nmap-table",
        banner=None,
        extra=MappingProxyType(extra),
    )


def _address(parts: _HostParts) -> tuple[str | None, ImportProblem | None]:
    ips = [a for a in parts.addresses if a.get("addrtype", "ipv4") in ("ipv4", "ipv6")]
    if not ips:
        return None, ImportProblem(None, None, "a host without an IPv4 or IPv6 address: skipped")
    raw = ips[0].get("addr", "")
    try:
        return str(ipaddress.ip_address(raw)), None
    except ValueError:
        return None, ImportProblem(
            raw[:100], None, f"host address {raw[:100]!r} is not an IP address: refused"
        )


def _endpoint(
    address: str, port: _Attrs, state: _Attrs | None, service: _Attrs | None
) -> Endpoint | ImportProblem | None:
    proto, raw_port = port.get("protocol"), port.get("portid", "")
    if proto not in ("tcp", "udp"):
        return None  # sctp and ip-protocol scans have no place in mamori's model
    number = _int(raw_port)
    if number is None or not 0 < number <= 65535:
        return ImportProblem(address, raw_port[:20],
                             f"{address}: bad port {raw_port[:20]!r}/{proto}: not 1-65535")
    raw_state = state.get("state", "") if state is not None else ""
    st = _STATES.get(raw_state)
    if st is None or state is None:
        return ImportProblem(address, raw_port,
                             f"{address}: port {number}/{proto} has no known state "
                             f"({raw_state[:30]!r})")
    raw_reason = state.get("reason", "")
    return Endpoint(
        address=address,
        port=number,
        proto=Proto(proto),
        state=st,
        reason=_REASONS.get(raw_reason, _DEFAULT_REASON[st]),
        service=_service(service, raw_reason),
    )


def _host(parts: _HostParts) -> Iterator[HostResult | ImportProblem]:
    address, problem = _address(parts)
    if address is None:
        if problem is not None:
            yield problem
        return
    endpoints: dict[tuple[str, int], Endpoint] = {}
    for port, state, service in parts.ports:
        item = _endpoint(address, port, state, service)
        if isinstance(item, ImportProblem):
            yield item
        elif item is not None:
            endpoints.setdefault((item.proto.value, item.port), item)
    if parts.dropped_ports:
        yield ImportProblem(address, None, f"{address}: {parts.dropped_ports} port elements "
                            f"beyond {MAX_PORTS_PER_HOST} not read")
    protos = {p for p, _ in endpoints} or {"tcp"}
    fallback = next(iter(protos)) if len(protos) == 1 else "tcp"
    not_shown: dict[str, dict[str, int]] = {}
    for attrs, proto in parts.extraports:
        count, shown = _int(attrs.get("count")), _STATES.get(attrs.get("state", ""))
        if count is not None and count > 0 and shown is not None:
            bucket = not_shown.setdefault(proto if proto in ("tcp", "udp") else fallback, {})
            bucket[shown.value] = bucket.get(shown.value, 0) + count
    yield HostResult(
        address=address,
        hostname=parts.names[0] if parts.names else None,
        endpoints=tuple(endpoints[k] for k in sorted(endpoints)),
        not_shown=not_shown,
    )


class _Reader:
    """expat handlers: the header, then one host at a time, queued for the caller."""

    def __init__(self) -> None:
        self.parser = expat.ParserCreate()
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartDoctypeDeclHandler = self._doctype
        self.parser.EntityDeclHandler = self._entity
        self.parser.UnparsedEntityDeclHandler = self._entity
        self.parser.ExternalEntityRefHandler = self._external
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.out: list[NmapItem] = []
        self.depth = 0
        self.root: _Attrs | None = None
        self.scaninfo: list[_Attrs] = []
        self.header_sent = False
        self.host: _HostParts | None = None
        self.skip_depth = 0  # > 0 while inside an element of <host> mamori does not read
        self.extraports: _Attrs | None = None
        self.extra_proto: str | None = None
        self.seen: set[str] = set()

    @staticmethod
    def _doctype(_name: str, sysid: str | None, pubid: str | None, internal: int) -> None:
        if sysid or pubid or internal:
            raise NmapImportError("refused: the document declares a DTD (external or internal)")

    @staticmethod
    def _entity(*_args: object) -> None:
        raise NmapImportError("refused: the document declares entities")

    @staticmethod
    def _external(*_args: object) -> int:
        raise NmapImportError("refused: the document refers to an external entity")

    def header(self) -> None:
        if self.header_sent:
            return
        self.header_sent = True
        root = self.root or {}
        self.out.append(NmapHeader(
            args=root.get("args", ""), version=root.get("version", ""),
            start=_int(root.get("start")), info={"scaninfo": list(self.scaninfo)},
        ))

    def _start(self, name: str, attrs: _Attrs) -> None:
        self.depth += 1
        if self.depth == 1:
            if name != "nmaprun":
                raise NmapImportError(
                    f"not nmap XML output (root element <{name[:40]}>, not <nmaprun>)")
            self.root = attrs
        elif self.host is not None:
            self._host_part(self.host, name, attrs)
        elif self.depth == 2 and name == "scaninfo":
            self.scaninfo.append(attrs)
        elif self.depth == 2 and name == "host":
            self.header()
            self.host = _HostParts()

    def _host_part(self, host: _HostParts, name: str, attrs: _Attrs) -> None:
        if self.skip_depth or name not in _HOST_PARTS | _CONTAINERS:
            self.skip_depth += 1  # this element and all inside it
            return
        if name == "address":
            host.addresses.append(attrs)
        elif name == "hostname" and attrs.get("type", "user") == "user" and attrs.get("name"):
            host.names.append(attrs["name"])
        elif name == "port":
            host.port, host.state, host.service = attrs, None, None
        elif name == "state" and host.port is not None:
            host.state = attrs
        elif name == "service" and host.port is not None:
            host.service = attrs
        elif name == "extraports":
            self.extraports, self.extra_proto = attrs, None
        elif name == "extrareasons" and self.extraports is not None:
            self.extra_proto = self.extra_proto or attrs.get("proto")

    def _end(self, name: str) -> None:
        self.depth -= 1
        host = self.host
        if host is None:
            if self.depth == 0:
                self.header()
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if name == "port" and host.port is not None:
            if len(host.ports) < MAX_PORTS_PER_HOST:
                host.ports.append((host.port, host.state, host.service))
            else:
                host.dropped_ports += 1
            host.port = None
        elif name == "extraports" and self.extraports is not None:
            host.extraports.append((self.extraports, self.extra_proto))
            self.extraports = None
        elif name == "host" and self.depth == 1:
            self.host = None
            for item in _host(host):
                if isinstance(item, HostResult) and item.address in self.seen:
                    self.out.append(ImportProblem(item.address, None, f"{item.address}: "
                                                  "listed again: only its first <host> is kept"))
                    continue
                if isinstance(item, HostResult):
                    self.seen.add(item.address)
                self.out.append(item)

    def feed(self, chunk: bytes, final: bool = False) -> list[NmapItem]:
        try:
            self.parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            raise NmapImportError(f"not well-formed XML: {exc}") from None
        out, self.out = self.out, []
        return out


def iter_nmap_xml(chunks: Iterable[bytes]) -> Iterator[NmapItem]:
    """Parse an ``nmap -oX`` document given as byte chunks, yielding one ``NmapHeader``
    (before the first host), then each host as a ``HostResult`` and each thing not taken as
    an ``ImportProblem``, in document order. Memory holds one chunk and one host.

    Raises ``NmapImportError`` for a DTD or entity declaration, malformed XML, or a root other
    than ``nmaprun`` (the last two possibly after hosts were yielded).
    """
    reader = _Reader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    yield from reader.feed(b"", final=True)


def parse_nmap_xml(data: bytes) -> NmapRun:
    """Parse the bytes of an ``nmap -oX`` file whole. Raises ``NmapImportError`` for data over
    ``MAX_BYTES`` or as ``iter_nmap_xml`` does."""
    if len(data) > MAX_BYTES:
        raise NmapImportError(f"refused: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    header = NmapHeader()
    hosts: list[HostResult] = []
    problems: list[ImportProblem] = []
    for item in iter_nmap_xml(data[i:i + CHUNK] for i in range(0, len(data), CHUNK)):
        if isinstance(item, NmapHeader):
            header = item
        elif isinstance(item, HostResult):
            hosts.append(item)
        else:
            problems.append(item)
    return NmapRun(hosts=tuple(hosts), problems=tuple(problems), args=header.args,
                   version=header.version, start=header.start, info=header.info)


def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise NmapImportError(
                    f"refused: {path} is larger than {MAX_BYTES // (1024 * 1024)} MiB"
                )
            read = 0
            while chunk := f.read(CHUNK):
                read += len(chunk)
                if read > MAX_BYTES:  # grew while being read
                    raise NmapImportError(
                        f"refused: {path} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
                yield chunk
    except OSError as exc:
        raise NmapImportError(f"cannot read {path}: {exc.strerror or exc}") from None


def stream_nmap_file(path: Path) -> Iterator[NmapItem]:
    """``iter_nmap_xml`` over the file at ``path``, read in chunks; a file over ``MAX_BYTES``
    is refused unread. Raises ``NmapImportError`` (also when the file cannot be read)."""
    return iter_nmap_xml(_file_chunks(path))
