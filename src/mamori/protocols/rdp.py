"""RDP: the X.224 Connection Request with RDP negotiation, and the Connection Confirm."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

PROTOCOL_SSL, PROTOCOL_HYBRID, PROTOCOL_RDSTLS = 0x1, 0x2, 0x4
_PROTOCOLS = {0: "rdp", 1: "ssl", 2: "hybrid", 4: "rdstls", 8: "hybrid-ex"}


def build_connection_request(
    requested: int = PROTOCOL_SSL | PROTOCOL_HYBRID, cookie: str | None = None
) -> bytes:
    """TPKT + X.224 CR carrying an RDP_NEG_REQ (what mstsc sends first)."""
    variable = b""
    if cookie:
        variable += f"Cookie: mstshash={cookie}\r\n".encode()
    variable += struct.pack("<BBHI", 0x01, 0, 8, requested)
    x224 = bytes([6 + len(variable), 0xE0, 0, 0, 0, 0, 0]) + variable
    return b"\x03\x00" + struct.pack(">H", 4 + len(x224)) + x224


def reply_complete(buf: bytes) -> bool:
    """True once the TPKT packet is whole, or the bytes cannot be TPKT."""
    if not buf:
        return False
    if buf[0] != 3:
        return True
    return len(buf) >= 4 and len(buf) >= int.from_bytes(buf[2:4], "big")


@dataclass(frozen=True, slots=True)
class ConnectionConfirm:
    selected: str | None  # "ssl", "hybrid", ... or None for a legacy server without negotiation
    failure_code: int | None


def parse_connection_confirm(data: bytes) -> ConnectionConfirm | None:
    """Parse an X.224 Connection Confirm. Returns None for anything else. Never raises."""
    try:
        r = Reader(data)
        if r.u8() != 3:
            return None
        r.u8()
        length = r.u16be()
        if length < 11:
            return None
        tpdu = Reader(r.take(length - 4))
        li = tpdu.u8()
        if (tpdu.u8() & 0xF0) != 0xD0 or li < 6:
            return None
        tpdu.skip(5)
        if tpdu.remaining < 8:
            return ConnectionConfirm(None, None)
        kind, _flags, neg_len, value = struct.unpack("<BBHI", tpdu.take(8))
    except Truncated:
        return None
    if neg_len != 8:
        return None
    if kind == 0x02:
        return ConnectionConfirm(_PROTOCOLS.get(value, f"0x{value:x}"), None)
    if kind == 0x03:
        return ConnectionConfirm(None, value)
    return None
