"""The records every part of mamori shares: frozen, typed, and free of I/O.

Data flows one way (see docs/ARCHITECTURE.md): net + protocols produce these records, the
pipeline assembles them, the store keeps them, and report renders them. Errors are data too:
a probe that could not run yields a ``ProbeError`` and is never read as "closed" or "clean".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # audit.model imports this module; the types are only needed by mypy
    from mamori.audit.model import Scope, Verdict

JSON_SCHEMA_VERSION = "1.2"

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class PortState(StrEnum):
    """Port states as nmap defines them."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"  # TCP: no answer, or an ICMP unreachable other than port-unreachable
    OPEN_FILTERED = "open|filtered"  # UDP: silence


class Reason(StrEnum):
    """Why a port got its state: the observed evidence, as nmap's --reason."""

    SYN_ACK = "syn-ack"  # TCP connect completed
    CONN_REFUSED = "conn-refused"  # RST to our SYN
    NO_RESPONSE = "no-response"  # deadline passed
    HOST_UNREACH = "host-unreach"  # ICMP host/net unreachable or admin-prohibited
    UDP_RESPONSE = "udp-response"  # a datagram came back from the probed address:port
    PORT_UNREACH = "port-unreach"  # ICMP port unreachable
    SELF_CONNECT = "self-connect"  # TCP simultaneous open with ourselves: the port is not open


class ErrorKind(StrEnum):
    """Stable codes for what went wrong while probing (errors are data)."""

    TIMEOUT = "timeout"  # no complete answer before the deadline
    IDLE = "idle"  # the peer accepted and stayed silent
    CLOSED = "closed"  # the peer accepted and closed without sending a byte
    REFUSED = "refused"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    TOO_LARGE = "too-large"  # the peer sent more than the byte cap
    TRICKLE = "trickle"  # the peer sent so slowly that the total deadline passed
    GARBAGE = "garbage"  # bytes that match no known protocol
    PROTOCOL = "protocol"  # bytes that started like a protocol and then broke its rules
    TLS = "tls"  # TLS handshake failed
    RESOLVE = "resolve"  # host name did not resolve
    RESOURCE = "resource"  # out of file descriptors, ports, memory
    OS = "os"  # any other OSError, with errno in the detail
    INTERNAL = "internal"  # a bug in mamori: recorded, never hidden


class ScanStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process died mid-scan; found so on the next start


@dataclass(frozen=True, slots=True)
class Target:
    """One address to probe; ``hostname`` is what the user typed when it was a name."""

    address: str
    hostname: str | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True, slots=True)
class PortResult:
    """What the sweep saw at one (address, proto, port)."""

    address: str
    port: int
    proto: Proto
    state: PortState
    reason: Reason
    rtt_ms: float | None = None
    # Raw reply of a UDP probe (capped), so identification need not ask again.
    reply: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProbeError:
    """A probe that could not finish. ``port`` is None for host- or scan-level errors."""

    address: str | None
    port: int | None
    proto: Proto | None
    kind: ErrorKind
    detail: str
    probe: str | None = None  # which probe or stage: "sweep", "identify:http", ...


@dataclass(frozen=True, slots=True)
class Service:
    """What answers on an endpoint, judged from its replies, not from its port number."""

    name: str  # "ssh", "http", "smtp", ... ("unknown" when something answered but matched nothing)
    product: str | None = None
    version: str | None = None
    tls: bool = False
    # "confirmed": a reply matched a protocol's rules; "likely": partial evidence;
    # "port": nothing answered usefully, name guessed from the port number only.
    confidence: str = "confirmed"
    method: str = ""  # the probe whose reply identified it, e.g. "null", "http-get", "tls"
    banner: str | None = None  # printable excerpt of the identifying reply, capped
    extra: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    proto: Proto
    state: PortState
    reason: Reason
    rtt_ms: float | None = None
    service: Service | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.address, self.proto.value, self.port)


@dataclass(frozen=True, slots=True)
class HostResult:
    address: str
    hostname: str | None
    endpoints: tuple[Endpoint, ...]
    # Ports probed but not listed individually, per protocol and state: {"tcp": {"closed": 65530}}
    not_shown: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


class Layer(StrEnum):
    """The three layers the old checklists thought in."""

    OS = "os"
    NETWORK = "network"
    APPLICATION = "application"


class Confidence(StrEnum):
    CONFIRMED = "confirmed"  # the behaviour itself was observed (data read, mail relayed, ...)
    LIKELY = "likely"  # strong partial evidence (RCPT accepted, but DATA not tried or refused)


class CheckStatus(StrEnum):
    FINDING = "finding"  # the problem was shown
    PASSED = "passed"  # the check ran to the end and the problem was not there
    NOT_TESTED = "not-tested"  # the check could not run: never read as "passed"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What was done and what came back, capped in size, so a finding proves itself."""

    test: str  # the exact test performed, in words
    request: str | None = None  # excerpt of what mamori sent
    reply: str | None = None  # excerpt of what came back
    facts: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # parsed, e.g. version


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check run against one endpoint: a finding, a pass, or "not tested: reason"."""

    check_id: str
    address: str
    port: int
    proto: Proto
    status: CheckStatus
    severity: Severity
    layer: Layer
    confidence: Confidence | None  # None unless status is FINDING
    title: str
    summary: str  # one line: what was found, or why it passed / could not run
    evidence: Evidence | None = None
    remediation: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # linux/macos/router
    references: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.address, self.proto.value, self.port, self.check_id)


@dataclass(frozen=True, slots=True)
class ListenerRecord:
    """One socket listening on this machine, as ``mamori check`` stores and reports it.

    ``firewall`` is None when the firewall was not asked (a loopback-only listener, where it
    does not matter); ``Verdict.UNDETERMINED`` with ``firewall_reason`` when it was asked and
    could not tell. ``probe_address`` is where the probes went (None: not probed, and
    ``not_probed`` says why); ``service``/``product`` are what identification named there.
    """

    proto: Proto
    address: str  # as bound: "0.0.0.0", "::", "127.0.0.1", "fe80::1%eth0"
    port: int
    scope: Scope
    pid: int | None = None
    process: str | None = None
    user: str | None = None
    exe: str | None = None
    firewall: Verdict | None = None
    firewall_backend: str = ""  # "nftables", "iptables", "ufw", "firewalld", "pf", "none"
    firewall_reason: str = ""  # the deciding rule or policy, or why it is undetermined
    firewall_rule: str | None = None  # the rule text that decided, when one did
    service: str | None = None
    product: str | None = None
    probe_address: str | None = None
    not_probed: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.address, self.proto.value, self.port)

    @property
    def exposure(self) -> tuple[int, int, int]:
        """Sort key, most exposed first: reachable from outside (loopback last), then by
        firewall verdict (allowed / no firewall, then undetermined or not asked, then
        blocked), then by scope (all interfaces before one interface)."""
        scope = self.scope.value
        rank = _VERDICT_RANK.get(self.firewall.value, 1) if self.firewall is not None else 1
        return (1 if scope == "loopback" else 0, rank, 0 if scope == "all" else 1)


# Verdict values (audit.model.Verdict) by exposure: let in first, blocked last.
_VERDICT_RANK: dict[str, int] = {"allowed": 0, "no-firewall": 0, "undetermined": 1, "blocked": 2}


@dataclass(frozen=True, slots=True)
class ScanSummary:
    id: int
    kind: str  # "scan", later "check", "import"
    status: ScanStatus
    started_at: datetime
    finished_at: datetime | None
    targets: tuple[str, ...]
    open_ports: int
    error_count: int


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One scan as stored and as reported."""

    id: int
    kind: str
    status: ScanStatus
    started_at: datetime
    finished_at: datetime | None
    targets: tuple[str, ...]
    options: Mapping[str, Any]
    hosts: tuple[HostResult, ...]
    errors: tuple[ProbeError, ...]
    mamori_version: str = ""
    checks: tuple[CheckResult, ...] = ()
    listeners: tuple[ListenerRecord, ...] = ()  # kind "check": this machine's sockets

    @property
    def findings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.FINDING)
