"""Records of the path from the internet to a listener (frozen, no I/O).

Three halves meet here: what the router says (``RouterView``: external address, NAT kind, port
mappings, read over UPnP IGD or NAT-PMP/PCP), what a ``mamori serve`` instance saw when it
probed this host's own address from outside (``OutsideResult``), and, joined with the inside
view (bind scope, host firewall), one ``PathVerdict`` per listener.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mamori.model.base import Proto


class Reach(StrEnum):
    """Who can reach a listener, all halves joined."""

    INTERNET = "internet"  # proven from outside, or a mapping/open IPv6 path and nothing blocking
    LAN = "lan"  # reachable on the local network only
    HOST = "host"  # this machine only (loopback, or blocked by the host firewall)
    UNDETERMINED = "undetermined"  # a piece is missing: ``missing`` names it


class NatKind(StrEnum):
    """What stands between the router's WAN side and the internet, over IPv4."""

    PUBLIC = "public"  # the router's external address is a public one
    CGNAT = "cgnat"  # 100.64.0.0/10: the ISP's NAT; nothing reachable from outside over IPv4
    PRIVATE = "private"  # RFC 1918 or other non-public: a second NAT (double NAT) upstream
    UNKNOWN = "unknown"  # no gateway answered, or it did not tell its external address
    # the router is up (UPnP GetStatusInfo: Connected) but has no usable external address
    # (an empty NewExternalIPAddress), or NAT-PMP answered "network failure": what routers
    # behind CGNAT or another NAT do (miniupnpd withholds a private/reserved address).
    # Likely, not proven: nothing on this line is reachable over IPv4 from the internet
    NO_PUBLIC = "no-public-ipv4"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One entry of the router's port-mapping table (UPnP ``GetGenericPortMappingEntry``)."""

    external_port: int
    proto: Proto
    internal_client: str  # the LAN address the router forwards to
    internal_port: int
    description: str  # as the router reports it, cut to a bounded length
    lease_seconds: int  # 0 = permanent
    enabled: bool = True
    remote_host: str = ""  # "" = any source may use the mapping
    source: str = "upnp"  # "upnp" (opened by an application), "natpmp", "pcp"


@dataclass(frozen=True, slots=True)
class RouterView:
    """What the LAN's gateway told us, read-only. ``error`` says why a part is missing."""

    found: bool  # an IGD / NAT-PMP gateway answered at all
    protocol: str = ""  # "upnp-igd1", "upnp-igd2", "natpmp", "pcp", "" when none
    control_url: str = ""  # where the UPnP control requests went
    gateway: str = ""  # the gateway's LAN address
    server: str = ""  # the SSDP SERVER / device description, cut
    external_address: str | None = None
    nat: NatKind = NatKind.UNKNOWN
    mappings: tuple[PortMapping, ...] = ()
    mappings_truncated: bool = False  # the table had more entries than mamori reads
    # the router accepted a control request from this (unprivileged) LAN host without any
    # authentication: any program on the LAN can open it. None = not known.
    control_open: bool | None = None
    error: str | None = None  # why discovery/reading stopped (timeout, bad XML, refused…)
    evidence: tuple[str, ...] = ()  # one line per request made and its answer, in order
    # UPnP GetStatusInfo's NewConnectionStatus ("Connected", "Disconnected", …), asked only
    # when the external address was not told; "" when not asked or not answered
    connection_status: str = ""


class OutsideState(StrEnum):
    OPEN = "open"  # the outside probe connected (TCP) / got an answer (UDP)
    CLOSED = "closed"  # refused (RST): the path reaches the host, nothing allowed through
    FILTERED = "filtered"  # no answer: something on the path drops it
    NOT_TESTED = "not-tested"  # the service did not probe this port (cap, excluded): ``reason``


@dataclass(frozen=True, slots=True)
class OutsidePort:
    proto: Proto
    port: int
    state: OutsideState
    reason: str = ""  # for NOT_TESTED: the service's reason (excluded by operator, capped…)


@dataclass(frozen=True, slots=True)
class OutsideResult:
    """One outside probe by a ``mamori serve`` instance, for one address family."""

    service: str  # the base URL asked
    family: int  # 4 or 6
    seen_address: str | None  # the address the service saw the request come from
    ports: tuple[OutsidePort, ...] = ()
    error: str | None = None  # why there is no result (refused, rate-limited, timeout…)
    check_id: str = ""  # the service's id for the check (for the evidence)


@dataclass(frozen=True, slots=True)
class PathStep:
    """One link of the chain process → bind → host firewall → router → IPv6 → outside."""

    name: str  # "bind", "host-firewall", "router", "nat", "ipv6", "outside"
    verdict: str  # "open", "blocked", "loopback", "mapped", "no-mapping", "cgnat", "unknown"…
    detail: str  # one line of evidence for this step


@dataclass(frozen=True, slots=True)
class PathVerdict:
    """The joined verdict for one listener and one address family."""

    proto: Proto
    address: str  # as bound
    port: int
    family: int  # 4 or 6: the family this path is about
    reach: Reach
    steps: tuple[PathStep, ...] = ()
    missing: str = ""  # for UNDETERMINED: which piece is missing ("router not found", …)
    mapping: PortMapping | None = None  # the router mapping that reaches this listener
    proven: bool = False  # the outside probe connected: confirmed, not inferred
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class PathReport:
    """Everything ``mamori check`` learnt about the path from the internet, for one run: the
    router's view (None: not read), the outside results, this host's IPv6 addresses (global
    unicast and ULA, with their kind), the joined verdicts, and the mappings that point at
    other LAN hosts (listed, not findings about this host)."""

    verdicts: tuple[PathVerdict, ...] = ()
    router: RouterView | None = None
    outside: tuple[OutsideResult, ...] = ()
    ipv6: tuple[tuple[str, str], ...] = ()  # (address, "global" | "ula")
    other_hosts: tuple[PortMapping, ...] = ()
    unmatched: tuple[PortMapping, ...] = ()  # mappings to this host where nothing listens
