"""What the TCP and UDP sweeps share: options, totals, target checks, and where findings go.

Nothing here sends a packet; ``route_source`` only asks the routing table (a UDP ``connect``).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mamori.model import PortResult, ProbeError
from mamori.net.limits import RESOURCE_ERRNOS

ResultCallback = Callable[[PortResult], None]
ErrorCallback = Callable[[ProbeError], None]
ProgressCallback = Callable[[int], None]
StopCallback = Callable[[], bool]

# Ports handed to a lane at a time, and probes launched between two looks at the selector.
CHUNK = 512
BATCH = 256
# Chunks a lane holds at once while their hosts sit at the per-host cap.
MAX_ACTIVE = 64
# How often progress is reported and should_stop asked, at most (seconds).
PROGRESS_EVERY = 0.1
# Back-off when the machine is short of descriptors/buffers/ports, and when to give up.
BACKOFF_MIN = 0.005
BACKOFF_MAX = 0.5
RESOURCE_GIVE_UP = 20.0

_LINGER_RST = struct.pack("ii", 1, 0)
# ICMP-signalled or local-policy refusals: nmap calls the port "filtered".
UNREACH_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EACCES,
        errno.EPERM,
        getattr(errno, "ENONET", errno.EHOSTUNREACH),
    }
)


@dataclass(frozen=True)
class SweepOptions:
    """How hard and how fast to sweep. Raises ValueError on inconsistent values."""

    max_timeout: float = 1.5  # seconds, per probe upper bound (user's --timeout)
    min_timeout: float = 0.1
    initial_timeout: float = 1.0
    retries: int = 1  # extra tries for ports that saw no answer
    rate: float | None = None  # max connect attempts (TCP) / datagrams (UDP) per second
    max_inflight: int | None = None  # global; None = derive from the descriptor limit
    per_host: int | None = None  # None = derive
    # TCP lanes: the calling thread plus forked worker processes (Linux only); None = 2 on a
    # machine with 2+ cores for big uncapped sweeps, else 1.
    workers: int | None = None
    source_address: str | None = None  # bind probes to this local address (nmap -S)
    # With several lanes, run them all in worker processes and keep the calling thread free
    # (it only drains their pipes): the CLI opens the store in another thread meanwhile, and a
    # sweep lane sharing the GIL with that work runs about three times slower.
    parent_lane: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_timeout <= self.max_timeout:
            raise ValueError("need 0 < min_timeout <= max_timeout")
        if self.initial_timeout <= 0:
            raise ValueError("initial_timeout must be positive")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        for name in ("max_inflight", "per_host", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.source_address is not None:
            ipaddress.ip_address(self.source_address)  # ValueError when not a literal


@dataclass
class SweepStats:
    """Totals of one sweep. ``counts`` maps address -> {PortState value: ports}."""

    counts: dict[str, dict[str, int]]
    elapsed: float
    attempts: int  # probes sent, retries included
    errors: int = 0  # (address, port) pairs that ended in a ProbeError instead of a state
    self_connects: int = 0  # connects that reached our own socket (counted as closed)
    stopped: bool = False  # should_stop() ended the sweep early
    retried: int = 0  # probes repeated after silence
    backoffs: int = 0  # pauses because the machine ran short of descriptors/buffers/ports


def validate_targets(addresses: Sequence[str], ports: Sequence[int]) -> tuple[list[str], list[int]]:
    """Return de-duplicated addresses and ports (order kept); raise ValueError on bad input.

    Addresses must be IP literals (no name is ever resolved); they are kept as the caller
    wrote them, so results carry the same strings.
    """
    addrs = list(dict.fromkeys(addresses))
    for raw in addrs:
        if not isinstance(raw, str):
            raise ValueError(f"address must be an IP literal string, got {raw!r}")
        ipaddress.ip_address(raw)  # ValueError for names and garbage
    plist = list(dict.fromkeys(ports))
    for port in plist:
        if not 1 <= port <= 65535:
            raise ValueError(f"port out of range 1-65535: {port}")
    return addrs, plist


def check_source(opts: SweepOptions, addresses: Sequence[str]) -> None:
    """Raise ValueError unless ``opts.source_address`` (if any) is local and fits every target."""
    src = opts.source_address
    if src is None:
        return
    fam = family_of(src)
    for a in addresses:
        if family_of(a) != fam:
            raise ValueError(f"source address {src} cannot reach {a} (other address family)")
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((src, 0))
        except OSError as exc:
            raise ValueError(f"cannot use source address {src}: {exc.strerror}") from exc


def family_of(address: str) -> socket.AddressFamily:
    """Return AF_INET6 for an IPv6 literal, AF_INET otherwise."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def ephemeral_range() -> tuple[int, int]:
    """Return the OS's ephemeral (source) port range, inclusive."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(x) for x in fh.read().split())
            if 1024 <= low <= high <= 65535:
                return low, high
    except (OSError, ValueError):
        pass
    return 49152, 65535


def route_source(address: str, family: socket.AddressFamily) -> str | None:
    """Return the source address the kernel would use toward ``address``.

    Connecting a UDP socket sends nothing; it only consults the routing table. Without a route
    the wildcard address comes back (the probe's own connect then reports the failure); None
    when the machine is short of descriptors or buffers right now (ask again later).
    """
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((address, 9))
            return str(udp.getsockname()[0])
    except OSError as exc:
        return None if exc.errno in RESOURCE_ERRNOS else wildcard


def open_selector() -> selectors.BaseSelector:
    """Return a new selector, waiting out a descriptor shortage for up to RESOURCE_GIVE_UP s.

    Raises OSError when the shortage lasts longer or the error is not a shortage.
    """
    step = BACKOFF_MIN
    give_up = time.monotonic() + RESOURCE_GIVE_UP
    while True:
        try:
            return selectors.DefaultSelector()
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS or time.monotonic() > give_up:
                raise
        time.sleep(step)
        step = min(BACKOFF_MAX, step * 2)


def errno_name(err: int) -> str:
    """Return ``"ECONNRESET (Connection reset by peer)"`` style text for an errno value."""
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def is_self_connect(sock: socket.socket) -> bool:
    """Return True when a connected TCP socket is connected to itself (simultaneous open).

    A connect to a free port of our own address can pick that same port as its source; the
    SYN then meets itself and the socket "connects". Nothing listens there: not open.
    """
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        # ENOTCONN: the peer reset right after the handshake. A peer answered: not ourselves.
        return False


def close_rst(sock: socket.socket) -> None:
    """Close a (possibly connected) socket with RST, leaving no TIME_WAIT behind."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()


# --------------------------------------------------------------------------------------------
# Where lanes send what they find.


class Sink(Protocol):
    def result(self, res: PortResult) -> None: ...
    def error(self, err: ProbeError) -> None: ...
    def progress(self, n: int) -> None: ...
    def flush(self) -> None: ...
    def stopped(self) -> bool: ...


class DirectSink:
    """Calls the callbacks in the lane's own thread; progress and should_stop rate-limited."""

    def __init__(
        self,
        on_result: ResultCallback,
        on_error: ErrorCallback | None,
        on_progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> None:
        self._on_result = on_result
        self._on_error = on_error
        self._on_progress = on_progress
        self._should_stop = should_stop
        self._pending_progress = 0
        self._last_progress = time.monotonic()
        self._last_stop_check = 0.0
        self._stop = False

    def result(self, res: PortResult) -> None:
        self._on_result(res)

    def error(self, err: ProbeError) -> None:
        if self._on_error is not None:
            self._on_error(err)

    def progress(self, n: int) -> None:
        self._pending_progress += n
        now = time.monotonic()
        if self._pending_progress and now - self._last_progress >= PROGRESS_EVERY:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Hand any progress not yet reported to on_progress (in this thread)."""
        self._last_progress = time.monotonic() if now is None else now
        if self._pending_progress and self._on_progress is not None:
            self._on_progress(self._pending_progress)
        self._pending_progress = 0

    def stopped(self) -> bool:
        if self._stop or self._should_stop is None:
            return self._stop
        now = time.monotonic()
        if now - self._last_stop_check >= PROGRESS_EVERY / 2:
            self._last_stop_check = now
            self._stop = bool(self._should_stop())
        return self._stop


@dataclass
class LaneTotals:
    """What one lane counted; merged into SweepStats."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    attempts: int = 0
    errors: int = 0
    self_connects: int = 0
    retried: int = 0
    stopped: bool = False
    backoffs: int = 0


def merge_totals(addresses: Sequence[str], parts: Sequence[LaneTotals]) -> LaneTotals:
    out = LaneTotals(counts={a: {} for a in addresses})
    for part in parts:
        out.attempts += part.attempts
        out.errors += part.errors
        out.self_connects += part.self_connects
        out.retried += part.retried
        out.stopped = out.stopped or part.stopped
        out.backoffs += part.backoffs
        for addr, states in part.counts.items():
            dst = out.counts.setdefault(addr, {})
            for state, n in states.items():
                dst[state] = dst.get(state, 0) + n
    return out
