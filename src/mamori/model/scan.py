"""What a scan produces: targets, port results, services, errors, check results, the stored
scan. Frozen, typed, free of I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from mamori.model.accept import Acceptance
from mamori.model.audit import ListenerRecord, Scope, Verdict
from mamori.model.base import Proto, Severity
from mamori.model.path import PathReport

JSON_SCHEMA_VERSION = "1.6"

_EMPTY: Mapping[str, str] = MappingProxyType({})


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


PLATFORMS = ("linux", "macos", "router")  # the keys of a check's fixes
TEXT_LANGS = ("en", "ja")  # the languages a check result carries its text in


@dataclass(frozen=True, slots=True)
class CheckText:
    """A check result's report text in one language, resolved when the check ran: the
    catalog's title, why it matters and fixes, and the summary filled with what was observed
    (for passed / not-tested results the English evidence, behind a translated prefix)."""

    title: str
    summary: str
    why: str = ""
    fixes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # linux/macos/router


@dataclass(frozen=True, slots=True)
class Exposure:
    """How exposed the listener behind a finding of `mamori check` is, and the severity the
    check itself gave before the finding was re-graded by that exposure."""

    address: str  # the bound address of the listener (0.0.0.0, ::, 192.168.1.5, 127.0.0.1)
    port: int
    scope: Scope
    firewall: Verdict | None  # None: not asked (loopback) or no backend could be read
    check_severity: Severity
    # the joined reach (model.path.Reach value: internet, lan, host, undetermined) when
    # mamori check joined the router / outside views; None: graded by bind and firewall only
    reach: str | None = None


_NO_TEXTS: Mapping[str, CheckText] = MappingProxyType({})


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
    # Language code ("en", "ja") -> the text in that language; empty for records stored before
    # texts were (reports then fall back to the English fields above).
    texts: Mapping[str, CheckText] = field(default_factory=lambda: _NO_TEXTS)
    exposure: Exposure | None = None  # `mamori check` findings graded by their listener
    # The accepted risk that covers this finding in the report at hand (never stored with the
    # result: a command marks it from the store's acceptances before rendering).
    accepted: Acceptance | None = None

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.address, self.proto.value, self.port, self.check_id)


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
    paths: PathReport | None = None  # kind "check": the joined verdicts (None: not joined)

    @property
    def findings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.FINDING)
