"""Which local ports have a listener, from the kernel's socket tables (pure parsers).

The kernel answers a netlink ``sock_diag`` dump (``diag_request`` builds it, ``parse_diag``
reads the answer) in microseconds, filtered by state; reading ``/proc/net/tcp`` walks every
hash bucket (about 5 ms even on an idle host) and is the fallback.
``/proc/net/tcp``, ``tcp6``, ``udp`` and ``udp6`` list the sockets of the reader's network
namespace. A TCP socket in state LISTEN (0A) and any bound UDP socket open a port: a segment or
datagram sent there goes to a program, so it is not a knock. ``/proc/net/fib_trie`` names the
host's broadcast addresses (a datagram to 192.168.1.255 is not addressed to this host alone).
Malformed lines are skipped; nothing here raises on bad input.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

__all__ = ["Listeners", "diag_request", "parse_broadcasts", "parse_diag", "parse_sockets"]

_LISTEN = "0A"
WILDCARD = ""  # the address key of a socket bound to 0.0.0.0 or ::


def _address(hexed: str) -> str | None:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits (four host-order words) -> IPv6."""
    try:
        raw = bytes.fromhex(hexed)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    packed = struct.pack(f">{len(words)}I", *words)
    address = ipaddress.ip_address(packed)
    if address.is_unspecified:
        return WILDCARD
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def parse_sockets(text: str, proto: str) -> set[tuple[str, int]]:
    """(address, port) of each listening TCP socket (``proto`` "tcp") or bound UDP socket
    ("udp") in a ``/proc/net/{tcp,udp}{,6}`` table; address ``WILDCARD`` for 0.0.0.0/::."""
    found: set[tuple[str, int]] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or ":" not in parts[1]:
            continue
        if proto == "tcp" and parts[3] != _LISTEN:
            continue
        host, _, port_hex = parts[1].rpartition(":")
        address = _address(host)
        try:
            port = int(port_hex, 16)
        except ValueError:
            continue
        if address is None or port == 0:
            continue
        found.add((address, port))
    return found


_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x01 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN_STATES = 1 << 10  # TCP_LISTEN
_ALL_STATES = 0xFFFFFFFF
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # struct inet_diag_msg (72 bytes)


def diag_request(family: int, proto: str, seq: int = 1) -> bytes:
    """A netlink dump request (``inet_diag_req_v2``) for the listening TCP sockets or every
    UDP socket of ``family`` (AF_INET or AF_INET6)."""
    number = 6 if proto == "tcp" else 17
    states = _TCP_LISTEN_STATES if proto == "tcp" else _ALL_STATES
    body = struct.pack("=BBBxI48x", family, number, 0, states)
    return struct.pack("=IHHII", 16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP,
                       seq, 0) + body


def parse_diag(data: bytes) -> tuple[set[tuple[str, int]], bool]:
    """(address, port) of each socket in one netlink read, and whether the dump is over (done
    or an error). Bounded by the data; malformed messages end the parse."""
    found: set[tuple[str, int]] = set()
    at = 0
    while at + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, at)
        if length < 16 or at + length > len(data):
            return found, True
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            return found, True
        if kind == _SOCK_DIAG_BY_FAMILY and length >= 16 + _DIAG_MSG.size:
            family, _, _, _, sport, _, src, *_ = _DIAG_MSG.unpack_from(data, at + 16)
            port = int.from_bytes(sport, "big")
            raw = src[:4] if family == 2 else src  # AF_INET: the first four bytes
            address = ipaddress.ip_address(raw)
            if port:
                key = WILDCARD if address.is_unspecified else (
                    str(address.ipv4_mapped) if isinstance(address, ipaddress.IPv6Address)
                    and address.ipv4_mapped is not None else address.compressed)
                found.add((key, port))
        at += (length + 3) & ~3
    return found, False


def parse_broadcasts(text: str) -> set[str]:
    """The broadcast addresses in ``/proc/net/fib_trie`` (``|-- ADDR`` followed by a
    ``/32 link BROADCAST`` line)."""
    found: set[str] = set()
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32") and "BROADCAST" in stripped and last:
            found.add(last)
    return found


@dataclass(slots=True)
class Listeners:
    """The open ports at one moment. ``tcp``/``udp``: (address, port), address WILDCARD for
    a socket on every address of its family."""

    tcp4: set[tuple[str, int]] = field(default_factory=set)
    tcp6: set[tuple[str, int]] = field(default_factory=set)
    udp4: set[tuple[str, int]] = field(default_factory=set)
    udp6: set[tuple[str, int]] = field(default_factory=set)
    broadcasts: set[str] = field(default_factory=set)

    def table(self, proto: str, version: int) -> set[tuple[str, int]]:
        return {("tcp", 4): self.tcp4, ("tcp", 6): self.tcp6, ("udp", 4): self.udp4,
                ("udp", 6): self.udp6}[(proto, version)]

    def is_open(self, proto: str, version: int, dst: str, port: int) -> bool:
        """Whether a program would receive what was sent to ``dst``:``port``. A socket on ::
        also takes IPv4 unless it is v6-only, which the table does not say: counted as open
        (a missed knock rather than a false one)."""
        own = self.table(proto, version)
        if (WILDCARD, port) in own or (dst, port) in own:
            return True
        other = self.table(proto, 6)
        return version == 4 and ((WILDCARD, port) in other or (dst, port) in other)

    def wildcard_ports(self, proto: str, version: int) -> set[int]:
        """Ports open on every address of the family (a kernel filter may drop them)."""
        ports = {p for a, p in self.table(proto, version) if a == WILDCARD}
        if version == 4:
            ports |= {p for a, p in self.table(proto, 6) if a == WILDCARD}
        return ports
