"""NetBIOS Name Service (RFC 1002): the node-status (NBSTAT) query and its name table."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

# "*" padded with NULs, first-level encoded: what nbtstat -A asks for.
_WILDCARD = b"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00"


def build_node_status(txid: int = 0x80F0) -> bytes:
    """A node-status request for the wildcard name."""
    return struct.pack(">HHHHHH", txid, 0, 1, 0, 0, 0) + _WILDCARD + b"\x00\x21\x00\x01"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    names: tuple[tuple[str, int, bool], ...]  # (name, suffix, is_group)
    mac: str

    @property
    def computer_name(self) -> str | None:
        for name, suffix, group in self.names:
            if suffix == 0 and not group:
                return name
        return None

    @property
    def workgroup(self) -> str | None:
        for name, suffix, group in self.names:
            if suffix == 0 and group:
                return name
        return None


def parse_node_status(data: bytes) -> NodeStatus | None:
    """Parse a node-status response. Returns None for anything else. Never raises."""
    try:
        r = Reader(data)
        _txid, flags, _qd, an, _ns, _ar = (r.u16be() for _ in range(6))
        if not flags & 0x8000 or an < 1:
            return None
        name_len = r.u8()
        if name_len != 32:
            return None
        r.skip(32)
        r.u8()
        rtype, _rclass, _ttl, _rdlen = r.u16be(), r.u16be(), r.u32be(), r.u16be()
        if rtype != 0x21:
            return None
        count = r.u8()
        names = []
        for _ in range(count):
            raw = r.take(15)
            suffix = r.u8()
            nflags = r.u16be()
            names.append((raw.decode("latin-1").rstrip(), suffix, bool(nflags & 0x8000)))
        mac = r.take(6).hex(":") if r.remaining >= 6 else ""
    except Truncated:
        return None
    return NodeStatus(tuple(names), mac)
