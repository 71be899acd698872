"""ICMP sensor: echo requests and other ICMP seen by a raw socket (IPv4 and IPv6).

Raw ICMP sockets need root or CAP_NET_RAW; without them ``start`` returns False and emits one
``sensor.error`` event saying why. A raw socket sees every ICMP message the host receives
(loopback pings from other programs too), so when the sensor is given ``addresses`` it keeps
only messages sent TO one of them. IPv6 neighbour discovery and multicast listener messages
are link housekeeping, not visitors, and echo replies answer pings this host sent: both are
skipped. Events are rate-limited per source like
the decoys' (``sensor.limit`` reports the excess). The parsers are pure functions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from mamori.model.watch import Event, EventType, excerpt
from mamori.watch import rawsock
from mamori.watch.decoys.guard import SourceGuard
from mamori.watch.decoys.spec import DecoyLimits

__all__ = ["IcmpPacket", "IcmpSensor", "parse_icmp4", "parse_icmp6"]

SOURCE = "icmp"
_ECHO_REQUEST = {4: 8, 6: 128}
_SKIPPED_V6 = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})  # MLD, NDP
_ECHO_REPLIES = frozenset({(4, 0), (6, 129)})  # answers to pings this host sent
_BATCH = 64  # packets read per wake-up before yielding to the loop
_MAX_PACKET = 4096


@dataclass(frozen=True, slots=True)
class IcmpPacket:
    version: int  # 4 or 6
    src: str
    dst: str
    type: int
    code: int
    size: int  # bytes of the ICMP message
    ident: int | None = None  # echo identifier and sequence
    seq: int | None = None
    inner: tuple[str, str, int | None] | None = None  # (proto, dst, dst port) of the datagram
    payload: bytes = b""  # an error was about; echo payload start

    @property
    def is_echo_request(self) -> bool:
        return self.type == _ECHO_REQUEST[self.version]


def _inner4(data: bytes) -> tuple[str, str, int | None] | None:
    """The original datagram quoted by an ICMPv4 error: (proto, dst, dst port)."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    proto = {6: "tcp", 17: "udp", 1: "icmp"}.get(data[9], str(data[9]))
    dst = str(ipaddress.IPv4Address(data[16:20]))
    port = struct.unpack(">H", data[ihl + 2 : ihl + 4])[0] if (
        proto in ("tcp", "udp") and len(data) >= ihl + 4) else None
    return proto, dst, port


def parse_icmp4(packet: bytes) -> IcmpPacket | None:
    """An IPv4 packet (header included, as a raw socket delivers it) carrying ICMP.
    None for anything else or anything cut short. Never raises."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 4:
        return None
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return _icmp(4, src, dst, packet[ihl:])


def parse_icmp6(message: bytes, src: str, dst: str) -> IcmpPacket | None:
    """An ICMPv6 message (a raw IPv6 socket delivers it without the IPv6 header; ``src`` and
    ``dst`` come from recvmsg). None when cut short. Never raises."""
    if len(message) < 4:
        return None
    return _icmp(6, src, dst, message)


def _icmp(version: int, src: str, dst: str, message: bytes) -> IcmpPacket | None:
    if len(message) < 4:
        return None
    kind, code = message[0], message[1]
    ident = seq = None
    inner = None
    if kind in (0, 8, 128, 129) and len(message) >= 8:
        ident, seq = struct.unpack(">HH", message[4:8])
    elif version == 4 and kind in (3, 4, 5, 11, 12):
        inner = _inner4(message[8:])
    return IcmpPacket(version, src, dst, kind, code, len(message), ident, seq, inner,
                      message[8:72])


class IcmpSensor:
    """Reads ICMP from raw sockets on the event loop and emits ``icmp.echo``/``icmp.other``.

    ``addresses``: keep only messages to these addresses (empty, or a wildcard among them: keep
    all). ``families``: which of 4 and 6 to open (default both; only those the addresses need
    when given).
    """

    def __init__(self, emit: Callable[[Event], None], *, addresses: Iterable[str] = (),
                 families: Iterable[int] = (4, 6), limits: DecoyLimits | None = None,
                 guard: SourceGuard | None = None) -> None:
        self._emit = emit
        parsed = [ipaddress.ip_address(a) for a in addresses]
        wanted = set(families)
        if parsed:
            wanted &= {a.version for a in parsed}
        self.families = tuple(sorted(wanted))
        # a wildcard address (0.0.0.0, ::) means every destination
        self.addresses = frozenset() if any(a.is_unspecified for a in parsed) else frozenset(
            str(a) for a in parsed)
        self._own_guard = guard is None
        self.guard = guard or SourceGuard(limits or DecoyLimits(), emit, SOURCE)
        self._socks: list[tuple[socket.socket, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.skipped = 0  # other destinations, neighbour discovery, unparsable
        self.suppressed = 0
        self.errors: list[str] = []

    async def start(self) -> bool:
        """Open the raw sockets. False (after one ``sensor.error`` event per family that could
        not open, with the reason) when none could be opened."""
        self._loop = asyncio.get_running_loop()
        self._socks = rawsock.open_all(
            self._loop, self.families, name="ICMP", proto="icmp", source=SOURCE,
            opener=self._open, reader=self._read, emit=self._emit, errors=self.errors)
        return bool(self._socks)

    @staticmethod
    def _open(version: int) -> socket.socket:
        return rawsock.open_raw(version, socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6)

    async def close(self) -> None:
        rawsock.close_all(self._loop, self._socks)
        self._socks = []
        if self._own_guard:
            self.guard.close()

    def _read(self, sock: socket.socket, version: int) -> None:
        for _ in range(_BATCH):
            try:
                if version == 4:
                    data, _addr = sock.recvfrom(_MAX_PACKET)
                    packet = parse_icmp4(data)
                else:
                    data, ancdata, _flags, addr = sock.recvmsg(
                        _MAX_PACKET, socket.CMSG_SPACE(20))
                    packet = parse_icmp6(data, str(addr[0]).split("%", 1)[0],
                                         _pktinfo_dst(ancdata))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.errors.append(str(exc))
                return
            self.received += 1
            if packet is None or not self._wanted(packet):
                self.skipped += 1
                continue
            self._record(packet)

    def _wanted(self, packet: IcmpPacket) -> bool:
        if (packet.version == 6 and packet.type in _SKIPPED_V6) or (
                packet.version, packet.type) in _ECHO_REPLIES:
            return False
        return not self.addresses or packet.dst in self.addresses

    def _record(self, packet: IcmpPacket) -> None:
        if not self.guard.allow_event(packet.src):
            self.suppressed += 1
            return
        fields = {"icmp_type": str(packet.type), "icmp_code": str(packet.code),
                  "version": str(packet.version), "size": str(packet.size)}
        if packet.ident is not None and packet.seq is not None:
            fields["id"], fields["seq"] = str(packet.ident), str(packet.seq)
        if packet.inner is not None:
            fields["orig_proto"], fields["orig_dst"] = packet.inner[0], packet.inner[1]
            if packet.inner[2] is not None:
                fields["orig_dst_port"] = str(packet.inner[2])
        kind = EventType.ICMP_ECHO if packet.is_echo_request else EventType.ICMP_OTHER
        self._emit(Event(time=datetime.now(UTC), type=kind, source=SOURCE, src=packet.src,
                         dst=packet.dst, proto="icmp", fields=MappingProxyType(fields),
                         excerpt=excerpt(packet.payload, 64)))


def _pktinfo_dst(ancdata: list[tuple[int, int, bytes]]) -> str:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            return str(ipaddress.IPv6Address(data[:16]))
    return ""
