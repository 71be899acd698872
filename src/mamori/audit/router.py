"""The router's view: the LAN gateway's external address and port mappings, read-only.

``read_router`` asks the default route's gateway (or the one given) over UPnP IGD: SSDP
search, the device description (LOCATION only on the gateway itself), then SOAP
GetExternalIPAddress and GetGenericPortMappingEntry from index 0 until the table ends (713 /
402 / any fault), at most ``max_mappings``. Without UPnP it asks NAT-PMP for the external
address and whether PCP answers. Every request and its answer is one evidence line; every
failure is ``RouterView.error``, never an exception. ``delete_mapping`` is the one write
(``mamori router close``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from mamori.model.base import Proto
from mamori.model.path import NatKind, PortMapping, RouterView
from mamori.net.igd import (
    IgdIoError,
    datagram_ask,
    default_gateway,
    http_request,
    local_address_towards,
    ssdp_search,
)
from mamori.protocols.natpmp import (
    NATPMP_NETWORK_FAILURE,
    NATPMP_PORT,
    NatPmpAnswer,
    NatPmpFormatError,
    build_external_address_request,
    build_pcp_announce,
    parse_external_address,
    parse_pcp_announce,
)
from mamori.protocols.upnp_igd import (
    ARRAY_INDEX_INVALID,
    INVALID_ARGS,
    MAX_DESCRIPTION,
    MAX_SOAP,
    IgdDescription,
    IgdFormatError,
    SoapFault,
    delete_mapping_args,
    location_refusal,
    mapping_entry_args,
    parse_description,
    parse_mapping,
    parse_soap,
    parse_ssdp_reply,
    search_requests,
    soap_request,
)

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NOT_AUTHORIZED = (606, 401, 403)  # UPnP "Action not authorized", HTTP auth/forbidden


@dataclass(frozen=True)
class RouterProbe:
    """Where and how long to ask. Ports are settable for tests with a fake gateway."""

    gateway: str | None = None  # None: the IPv4 default route's gateway
    ssdp_port: int = 1900
    natpmp_port: int = NATPMP_PORT
    multicast: bool = True
    ssdp_timeout: float = 2.0
    http_timeout: float = 3.0
    http_deadline: float = 8.0
    max_mappings: int = 1024
    table_deadline: float = 60.0  # the whole mapping-table read


def nat_kind(address: str | None) -> NatKind:
    """PUBLIC, CGNAT (100.64.0.0/10), PRIVATE (RFC 1918 and other non-global) or UNKNOWN."""
    if not address:
        return NatKind.UNKNOWN
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return NatKind.UNKNOWN
    if ip.is_unspecified:
        return NatKind.UNKNOWN
    if ip in _CGNAT:
        return NatKind.CGNAT
    return NatKind.PUBLIC if ip.is_global else NatKind.PRIVATE


@dataclass
class _Log:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        if len(self.lines) < 64:
            self.lines.append(" ".join(line.split())[:300])


@dataclass(frozen=True)
class Igd:
    """A found IGD: where its control URL is and what it is."""

    gateway: str
    location: str
    description: IgdDescription
    server: str


def _hostport(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "", parts.port or 80, path


@dataclass(frozen=True)
class NoIgd:
    """Why no IGD could be read; ``refused``: one answered SSDP but refused our requests."""

    reason: str
    refused: bool = False
    version: int = 1  # the IGD version its SSDP answer named


MAX_LOCATIONS = 3  # distinct LOCATIONs tried: a liar cannot make us fetch on and on


def find_igd(probe: RouterProbe, gateway: str, log: _Log) -> Igd | NoIgd:
    """The gateway's IGD, or why none was found."""
    try:
        raw = ssdp_search(gateway, search_requests(), timeout=probe.ssdp_timeout,
                          port=probe.ssdp_port, multicast=probe.multicast)
    except IgdIoError as exc:
        log.add(f"SSDP M-SEARCH to {gateway}: {exc}")
        return NoIgd(str(exc))
    log.add(f"SSDP M-SEARCH for the IGD (multicast out of the LAN interface, TTL 2, and "
            f"unicast to {gateway}:{probe.ssdp_port}): {len(raw)} answer(s) from the gateway")
    why = NoIgd(f"no UPnP IGD answered SSDP within {probe.ssdp_timeout:g} s")
    tried: list[str] = []
    for data in raw:
        try:
            reply = parse_ssdp_reply(data)
        except IgdFormatError as exc:
            log.add(f"SSDP answer ignored: {exc}")
            why = NoIgd(str(exc))
            continue
        if reply.location in tried:
            continue
        if len(tried) >= MAX_LOCATIONS:
            break
        tried.append(reply.location)
        refused = location_refusal(reply.location, gateway)
        if refused is not None:
            log.add(f"SSDP LOCATION {refused}")
            why = NoIgd(f"LOCATION {refused}")
            continue
        version = 2 if reply.st.endswith("Device:2") else 1
        host, port, path = _hostport(reply.location)
        try:
            ans = http_request(host, port, "GET", path, timeout=probe.http_timeout,
                               deadline=probe.http_deadline, max_body=MAX_DESCRIPTION)
        except IgdIoError as exc:
            log.add(f"GET {reply.location}: {exc}")
            why = NoIgd(f"device description: {exc}", "refused" in str(exc), version)
            continue
        if ans.status != 200:
            log.add(f"GET {reply.location}: HTTP {ans.status}")
            why = NoIgd(f"device description: HTTP {ans.status}", ans.status in (401, 403),
                        version)
            continue
        try:
            desc = parse_description(ans.body, reply.location, gateway)
        except IgdFormatError as exc:
            log.add(f"GET {reply.location}: {exc}")
            why = NoIgd(str(exc))
            continue
        log.add(f"GET {reply.location}: HTTP 200, {len(ans.body)} bytes, "
                f"{desc.service_type.rsplit(':', 2)[-2]}:{desc.service_type[-1]} control URL "
                f"{desc.control_url}")
        server = reply.server or desc.server
        return Igd(gateway, reply.location, desc, server)
    return why


class _Soap:
    def __init__(self, probe: RouterProbe, igd: Igd, log: _Log) -> None:
        self.probe, self.igd, self.log = probe, igd, log
        self.answered = False  # a control request got a real answer
        self.refused = False  # the router said "not authorized" / refused the connection

    def call(self, action: str, args: tuple[tuple[str, str], ...] = (), quiet: bool = False
             ) -> dict[str, str] | SoapFault | str:
        body, soap_action = soap_request(self.igd.description.service_type, action, args)
        host, port, path = _hostport(self.igd.description.control_url)
        what = f"POST {action}" + (f"({args[0][1]})" if len(args) == 1 else "")
        try:
            ans = http_request(host, port, "POST", path, body=body, headers=(
                ("Content-Type", 'text/xml; charset="utf-8"'), ("SOAPAction", soap_action)),
                timeout=self.probe.http_timeout, deadline=self.probe.http_deadline,
                max_body=MAX_SOAP)
        except IgdIoError as exc:
            if "refused" in str(exc):
                self.refused = True
            self.log.add(f"{what}: {exc}")
            return str(exc)
        if ans.status in (401, 403):
            self.refused = True
            self.log.add(f"{what}: HTTP {ans.status}")
            return f"HTTP {ans.status}"
        try:
            out = parse_soap(ans.body, action)
        except IgdFormatError as exc:
            self.log.add(f"{what}: HTTP {ans.status}, {exc}")
            return str(exc)
        if isinstance(out, SoapFault):
            if out.code in _NOT_AUTHORIZED:
                self.refused = True
            else:
                self.answered = True
            self.log.add(f"{what}: fault {out.code} {out.description}")
            return out
        self.answered = True
        if not quiet:
            self.log.add(f"{what}: HTTP {ans.status}, " + ", ".join(
                f"{k}={v[:40]!r}" for k, v in list(out.items())[:8]))
        return out


def _read_table(probe: RouterProbe, soap: _Soap
                ) -> tuple[tuple[PortMapping, ...], bool, str | None]:
    """(mappings, truncated, error)."""
    out: list[PortMapping] = []
    end = time.monotonic() + probe.table_deadline
    for index in range(probe.max_mappings):
        if time.monotonic() > end:
            return tuple(out), True, (f"the mapping table read stopped after "
                                      f"{probe.table_deadline:g} s at entry {index}")
        ans = soap.call("GetGenericPortMappingEntry", mapping_entry_args(index),
                        quiet=index > 0 and index % 64 != 0)
        if isinstance(ans, SoapFault):
            if ans.code in (ARRAY_INDEX_INVALID, INVALID_ARGS):
                return tuple(out), False, None
            return tuple(out), False, f"entry {index}: fault {ans.code} {ans.description}"
        if isinstance(ans, str):
            return tuple(out), False, f"entry {index}: {ans}"
        try:
            out.append(parse_mapping(ans))
        except IgdFormatError as exc:
            soap.log.add(f"entry {index}: {exc}")
            return tuple(out), False, f"entry {index}: {exc}"
    soap.log.add(f"stopped after {probe.max_mappings} entries: the table may hold more")
    return tuple(out), True, None


def _read_upnp(probe: RouterProbe, igd: Igd, log: _Log) -> RouterView:
    soap = _Soap(probe, igd, log)
    ext = soap.call("GetExternalIPAddress")
    address: str | None = None
    error: str | None = None
    if isinstance(ext, dict):
        address = ext.get("NewExternalIPAddress", "").strip() or None
        if address is not None and nat_kind(address) is NatKind.UNKNOWN:
            log.add(f"external address {address[:40]!r} is not an IPv4 address in use")
    else:
        error = f"GetExternalIPAddress: {ext if isinstance(ext, str) else ext.description}"
    status = ""
    if isinstance(ext, dict) and address is None:
        # why no address: a router that is up but withholds it (no usable public address)
        # differs from one whose WAN link is down
        info = soap.call("GetStatusInfo")
        if isinstance(info, dict):
            status = " ".join(info.get("NewConnectionStatus", "").split())[:40]
    mappings: tuple[PortMapping, ...] = ()
    truncated = False
    if not soap.refused:
        mappings, truncated, table_error = _read_table(probe, soap)
        error = error or table_error
    if not soap.answered and soap.refused:
        error = error or "the router refused our control requests"
    control_open: bool | None = True if soap.answered else (False if soap.refused else None)
    d = igd.description
    proto = "upnp-igd2" if d.igd_version == 2 else "upnp-igd1"
    return RouterView(found=True, protocol=proto, control_url=d.control_url, gateway=igd.gateway,
                      server=igd.server, external_address=address, nat=nat_kind(address),
                      mappings=mappings, mappings_truncated=truncated,
                      control_open=control_open, error=error, evidence=tuple(log.lines),
                      connection_status=status)


def _ask_natpmp(probe: RouterProbe, gateway: str, log: _Log) -> NatPmpAnswer | str:
    """NAT-PMP's external-address answer, or why there is none."""
    data = datagram_ask(gateway, probe.natpmp_port, build_external_address_request())
    if data is None:
        log.add(f"NAT-PMP external address request to {gateway}:{probe.natpmp_port}: no answer")
        return "no answer"
    try:
        ans = parse_external_address(data)
    except NatPmpFormatError as exc:
        log.add(f"NAT-PMP to {gateway}: {exc}")
        return str(exc)
    log.add(f"NAT-PMP external address request to {gateway}: {ans.result_text}"
            + (f", {ans.address}" if ans.address else ""))
    return ans


def _pcp_present(probe: RouterProbe, gateway: str, log: _Log) -> bool:
    local = local_address_towards(gateway)
    if local is None:
        return False
    data = datagram_ask(gateway, probe.natpmp_port, build_pcp_announce(local), tries=1)
    if data is None:
        return False
    try:
        ans = parse_pcp_announce(data)
    except NatPmpFormatError as exc:
        log.add(f"PCP ANNOUNCE to {gateway}: {exc}")
        return False
    log.add(f"PCP ANNOUNCE to {gateway}: " + (f"a PCP server answered ({ans.result_text})"
                                               if ans.version == 2 else "NAT-PMP only"))
    return ans.version == 2


def _read_natpmp(probe: RouterProbe, gateway: str, log: _Log, upnp_error: str) -> RouterView:
    ans = _ask_natpmp(probe, gateway, log)
    if isinstance(ans, str):
        return RouterView(found=False, gateway=gateway, error=(
            f"UPnP: {upnp_error}; NAT-PMP: {ans}"), evidence=tuple(log.lines))
    protocol = "pcp" if _pcp_present(probe, gateway, log) else "natpmp"
    return RouterView(found=True, protocol=protocol, gateway=gateway,
                      external_address=ans.address, nat=_natpmp_kind(ans),
                      control_open=True if ans.result == 0 else None,
                      error=None if ans.result == 0 else f"NAT-PMP: {ans.result_text}",
                      evidence=tuple(log.lines))


def _natpmp_kind(ans: NatPmpAnswer) -> NatKind:
    """NAT-PMP's "network failure" (result 3) is what a gateway without a usable public
    address answers (miniupnpd: "private/reserved address is not suitable")."""
    if ans.address is None and ans.result == NATPMP_NETWORK_FAILURE:
        return NatKind.NO_PUBLIC
    return nat_kind(ans.address)


def _with_natpmp(probe: RouterProbe, view: RouterView, log: _Log) -> RouterView:
    """The UPnP view; when it lacks the external address, NAT-PMP's word added. No address
    while the IGD says Connected (or NAT-PMP says "network failure" and the IGD did not say
    its link is down) is NO_PUBLIC; a link that is down is never called that."""
    if view.external_address is not None:
        return view
    log.add("the IGD did not tell its external address (miniupnpd, for one, hides a private "
            "or reserved one: CGNAT or double NAT)")
    ans = _ask_natpmp(probe, view.gateway, log)
    address = ans.address if isinstance(ans, NatPmpAnswer) else None
    kind = nat_kind(address)
    status = view.connection_status
    if address is None and status in ("", "Connected") and (
            status == "Connected" or (isinstance(ans, NatPmpAnswer)
                                      and _natpmp_kind(ans) is NatKind.NO_PUBLIC)):
        kind = NatKind.NO_PUBLIC
        log.add("the router is up (" + (f"status {status}" if status else
                                         "NAT-PMP: network failure")
                + ") but tells no external address: it has no usable public IPv4 address")
    elif address is None and status:
        log.add(f"the router's WAN connection is {status!r}: not connected, not judged CGNAT")
    return replace(view, external_address=address, nat=kind, evidence=tuple(log.lines))


def read_router(probe: RouterProbe | None = None) -> RouterView:
    """What the LAN gateway tells us, read-only. Never raises: failures are ``error``."""
    probe = probe or RouterProbe()
    log = _Log()
    gateway = probe.gateway
    if gateway is None:
        route = default_gateway()
        if route is None:
            return RouterView(found=False, error="no IPv4 default route: no gateway to ask")
        gateway = route[1]
        log.add(f"default route via {gateway} on {route[0]}")
    try:
        igd = find_igd(probe, gateway, log)
        if isinstance(igd, Igd):
            return _with_natpmp(probe, _read_upnp(probe, igd, log), log)
        view = _read_natpmp(probe, gateway, log, igd.reason)
        if igd.refused and not view.found:
            # an IGD is there (it answered SSDP) and turned our requests away
            return replace(view, found=True, protocol=f"upnp-igd{igd.version}",
                           control_open=False, evidence=tuple(log.lines))
        return view
    except (OSError, ValueError) as exc:  # a socket or parser surprise: still data
        return RouterView(found=False, gateway=gateway, error=f"{type(exc).__name__}: {exc}",
                          evidence=tuple(log.lines))


def delete_mapping(gateway: str, external_port: int, proto: Proto,
                   probe: RouterProbe | None = None) -> tuple[bool, str, tuple[str, ...]]:
    """DeletePortMapping on ``gateway``'s IGD (found again, as ``read_router`` does):
    (done, one line, evidence). Never raises."""
    probe = probe or RouterProbe()
    log = _Log()
    try:
        igd = find_igd(probe, gateway, log)
        if not isinstance(igd, Igd):
            return False, f"no UPnP IGD: {igd.reason}", tuple(log.lines)
        soap = _Soap(probe, igd, log)
        ans = soap.call("DeletePortMapping", delete_mapping_args(external_port, proto))
    except (OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}", tuple(log.lines)
    if isinstance(ans, dict):
        return True, f"removed {proto.value}/{external_port} from the router", tuple(log.lines)
    if isinstance(ans, SoapFault):
        return (False, f"the router refused: fault {ans.code} {ans.description}",
                tuple(log.lines))
    return False, ans, tuple(log.lines)


def host_ipv4_addresses() -> tuple[str, ...]:
    """This host's IPv4 addresses (loopback left out): which mappings point here."""
    import psutil

    out: list[str] = []
    try:
        table = psutil.net_if_addrs()
    except OSError:
        return ()
    for addrs in table.values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127.") \
                    and a.address not in out:
                out.append(a.address)
    return tuple(out)
