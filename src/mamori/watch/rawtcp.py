"""Half-open knocks on the decoys: SYN, NULL, FIN and XMAS probes seen by a raw TCP socket.

A decoy only hears of completed connections, so ``nmap -sS`` (SYN, SYN-ACK, RST: accept()
never returns) and NULL/FIN/XMAS scans (no handshake at all) would leave no trace. On Linux a
raw ``IPPROTO_TCP`` socket receives a copy of every incoming TCP segment; this sensor keeps
those sent to a watched (address, port) — the TCP decoys — and classifies them:

* a bare SYN (no ACK) is held for ``settle`` seconds: if the visitor completes the handshake
  (its ACK arrives) the decoy records the connection and the SYN is forgotten (no double
  count); if the visitor resets it (a SYN scan) or says nothing more, it becomes a
  ``tcp.probe`` event with ``technique`` syn;
* no flags: null; FIN alone: fin; FIN+PSH+URG: xmas; another mix without ACK or RST: other.

Segments carrying ACK (ordinary traffic) or a bare RST (a SYN scan's teardown) are never
events. One event per (source, destination, port, technique) per ``window`` seconds (scanners
retransmit), rate-limited per source by the shared ``SourceGuard``. Raw sockets need root or
CAP_NET_RAW; without them ``start`` returns False after one ``sensor.error`` event per family.
The parsers are pure functions and never raise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from mamori.model.watch import Event, EventType
from mamori.watch import rawsock
from mamori.watch.decoys.guard import SourceGuard
from mamori.watch.decoys.spec import DecoyLimits
from mamori.watch.repeats import RecentKeys

__all__ = ["TcpKnockSensor", "TcpSegment", "classify", "flag_names", "parse_tcp4",
           "parse_tcp6"]

SOURCE = "tcp-knock"
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_NAMES = ((FIN, "FIN"), (SYN, "SYN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"),
          (ECE, "ECE"), (CWR, "CWR"))
_BASE = FIN | SYN | RST | PSH | ACK | URG  # ECE/CWR only negotiate ECN
_BATCH = 64  # segments read per wake-up before yielding to the loop
_MAX_PACKET = 256  # headers are all we need (IPv4 60 + TCP 60 at most)


@dataclass(frozen=True, slots=True)
class TcpSegment:
    version: int  # 4 or 6
    src: str
    dst: str
    sport: int
    dport: int
    flags: int  # the TCP flag byte


def flag_names(flags: int) -> str:
    """``"SYN"``, ``"FIN PSH URG"``; ``"NULL"`` when no flag is set."""
    names = [name for bit, name in _NAMES if flags & bit]
    return " ".join(names) if names else "NULL"


def classify(flags: int) -> str | None:
    """The scan technique a segment's flags betray (syn, null, fin, xmas, other), or None for
    segments that are ordinary traffic or a teardown (anything with ACK or RST)."""
    base = flags & _BASE
    if base & (ACK | RST):
        return None
    if base == SYN:
        return "syn"
    if base == 0:
        return "null"
    if base == FIN:
        return "fin"
    if base == FIN | PSH | URG:
        return "xmas"
    return "other"


def _label(technique: str, flags: int) -> str:
    return {"syn": "SYN", "null": "NULL", "fin": "FIN", "xmas": "XMAS"}.get(
        technique, flag_names(flags))


def _tcp(version: int, src: str, dst: str, segment: bytes) -> TcpSegment | None:
    if len(segment) < 14:
        return None
    sport, dport = struct.unpack_from(">HH", segment)
    return TcpSegment(version, src, dst, sport, dport, segment[13])


def parse_tcp4(packet: bytes) -> TcpSegment | None:
    """An IPv4 packet (header included, as a raw socket delivers it) carrying TCP. None for
    anything else, a later fragment, or anything cut short. Never raises."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 14:
        return None
    if struct.unpack_from(">H", packet, 6)[0] & 0x1FFF:
        return None  # not the first fragment: no TCP header here
    return _tcp(4, socket.inet_ntop(socket.AF_INET, packet[12:16]),
                socket.inet_ntop(socket.AF_INET, packet[16:20]), packet[ihl:])


def parse_tcp6(segment: bytes, src: str, dst: str) -> TcpSegment | None:
    """A TCP segment as a raw IPv6 socket delivers it (no IPv6 header; ``src`` and ``dst``
    come from recvmsg). None when cut short. Never raises."""
    return _tcp(6, src, dst, segment)


Key = tuple[str, int, str, int]  # src, sport, dst, dport


class TcpKnockSensor:
    """Reads TCP segments from raw sockets on the event loop; emits ``tcp.probe``.

    ``targets``: the watched (address, port) pairs (a wildcard address watches the port on
    every address). ``settle``: how long a SYN waits for its handshake to complete;
    ``window``: seconds during which a repeat of the same probe is not reported again.
    """

    def __init__(self, emit: Callable[[Event], None], targets: Iterable[tuple[str, int]], *,
                 limits: DecoyLimits | None = None, guard: SourceGuard | None = None,
                 settle: float = 1.0, window: float = 10.0, max_pending: int = 4096,
                 max_recent: int = 10_000) -> None:
        self._emit = emit
        self.targets: frozenset[tuple[str, int]] = frozenset()
        self.any_address: frozenset[int] = frozenset()  # ports watched on every address
        wanted: set[int] = set()
        exact: set[tuple[str, int]] = set()
        anywhere: set[int] = set()
        for host, port in targets:
            address = ipaddress.ip_address(host.strip("[]"))
            wanted.add(address.version)
            if address.is_unspecified:
                anywhere.add(port)
            else:
                exact.add((address.compressed, port))
        self.targets, self.any_address = frozenset(exact), frozenset(anywhere)
        self.ports = frozenset(p for _, p in exact) | self.any_address
        self.families = tuple(sorted(wanted))
        self._own_guard = guard is None
        self.guard = guard or SourceGuard(limits or DecoyLimits(), emit, SOURCE)
        self.settle, self.window = settle, window
        self.max_pending, self.max_recent = max_pending, max_recent
        self._pending: OrderedDict[Key, tuple[TcpSegment, float, datetime]] = OrderedDict()
        self._recent = RecentKeys(window, max_recent)
        self._socks: list[tuple[socket.socket, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.received = 0  # segments read
        self.probes = 0  # tcp.probe events emitted
        self.completed = 0  # SYNs whose handshake completed (left to the decoy)
        self.repeated = 0  # probes within the window of the same one
        self.suppressed = 0  # over the per-source event rate
        self.errors: list[str] = []

    async def start(self) -> bool:
        """Open the raw sockets. False (after one ``sensor.error`` event per family that could
        not open, with the reason) when none could be opened."""
        self._loop = asyncio.get_running_loop()
        self._socks = rawsock.open_all(
            self._loop, self.families, name="TCP", proto="tcp", source=SOURCE,
            opener=self._open, reader=self._read, emit=self._emit, errors=self.errors)
        return bool(self._socks)

    @staticmethod
    def _open(version: int) -> socket.socket:
        return rawsock.open_raw(version, socket.IPPROTO_TCP, socket.IPPROTO_TCP)

    async def close(self) -> None:
        rawsock.close_all(self._loop, self._socks)
        self._socks = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # SYNs still waiting: nothing completed them while we watched.
        while self._pending:
            _, (segment, _, when) = self._pending.popitem(last=False)
            self._report(segment, "syn", when)
        if self._own_guard:
            self.guard.close()

    # -- reading -----------------------------------------------------------------------------

    def _read(self, sock: socket.socket, version: int) -> None:
        for _ in range(_BATCH):
            try:
                if version == 4:
                    data = sock.recv(_MAX_PACKET)
                    segment = parse_tcp4(data)
                else:
                    data, ancdata, _flags, addr = sock.recvmsg(
                        _MAX_PACKET, socket.CMSG_SPACE(20))
                    segment = parse_tcp6(data, str(addr[0]).split("%", 1)[0],
                                         _pktinfo_dst(ancdata))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if len(self.errors) < 100:
                    self.errors.append(str(exc))
                return
            self.received += 1
            if segment is not None and self._watched(segment):
                self.see(segment)

    def _watched(self, segment: TcpSegment) -> bool:
        if segment.dport not in self.ports:
            return False
        return segment.dport in self.any_address or (
            segment.dst, segment.dport) in self.targets

    def see(self, segment: TcpSegment) -> None:
        """One segment sent to a watched port (the loop thread; public for tests)."""
        key = (segment.src, segment.sport, segment.dst, segment.dport)
        base = segment.flags & _BASE
        if base & (ACK | RST):
            held = self._pending.pop(key, None)
            if held is None:
                return
            if base & RST:  # the visitor reset the half-open connection: a SYN scan
                self._report(held[0], "syn", held[2])
            else:  # the handshake completed: the decoy records this connection
                self.completed += 1
            return
        technique = classify(segment.flags)
        if technique is None:
            return
        if technique == "syn":
            if key not in self._pending:
                while len(self._pending) >= self.max_pending:
                    _, (old, _, when) = self._pending.popitem(last=False)
                    self._report(old, "syn", when)
                self._pending[key] = (segment, time.monotonic(), datetime.now(UTC))
                self._arm()
            return
        self._report(segment, technique, datetime.now(UTC))

    def _arm(self) -> None:
        if self._timer is None and self._loop is not None and self._pending:
            self._timer = self._loop.call_later(self.settle / 2, self._expire)

    def _expire(self) -> None:
        self._timer = None
        limit = time.monotonic() - self.settle
        while self._pending:
            key, (segment, since, when) = next(iter(self._pending.items()))
            if since > limit:
                break
            del self._pending[key]
            self._report(segment, "syn", when)
        self._arm()

    def _report(self, segment: TcpSegment, technique: str, when: datetime) -> None:
        now = time.monotonic()
        if self._recent.repeat((segment.src, segment.dst, segment.dport, technique), now):
            self.repeated += 1
            return
        if not self.guard.allow_event(segment.src):
            self.suppressed += 1
            return
        self.probes += 1
        label = _label(technique, segment.flags)
        self._emit(Event(
            time=when, type=EventType.TCP_PROBE, source=SOURCE, src=segment.src,
            src_port=segment.sport, dst=segment.dst, dst_port=segment.dport, proto="tcp",
            fields=MappingProxyType({"flags": label, "technique": technique,
                                     "tcp_flags": f"0x{segment.flags:02x}"}),
            excerpt=f"{label} probe to {segment.dst}:{segment.dport}/tcp"))


def _pktinfo_dst(ancdata: list[tuple[int, int, bytes]]) -> str:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            return str(ipaddress.IPv6Address(data[:16]))
    return ""
