"""Which local ports have a listener, from the kernel's socket tables (pure parsers).

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

__all__ = ["Listeners", "parse_broadcasts", "parse_sockets"]

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
