"""AFP over DSI (TCP 548): DSIGetStatus and the FPGetSrvrInfo block it returns."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

DSI_GET_STATUS = 3
_MAX_LIST = 32


def build_get_status(request_id: int = 1) -> bytes:
    """A 16-byte DSI header asking for the server's status (no login needed)."""
    return struct.pack(">BBHIII", 0, DSI_GET_STATUS, request_id, 0, 0, 0)


def reply_complete(buf: bytes) -> bool:
    """True once the DSI reply is whole, or the header cannot be a DSI reply."""
    if len(buf) < 16:
        return bool(buf) and buf[0] != 1
    return buf[1] != DSI_GET_STATUS or len(buf) >= 16 + int.from_bytes(buf[8:12], "big")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_name: str
    machine_type: str
    afp_versions: tuple[str, ...]
    uams: tuple[str, ...]


def _pstring(block: bytes, offset: int) -> str:
    r = Reader(block, offset)
    return r.take(r.u8()).decode("utf-8", "replace")


def _plist(block: bytes, offset: int) -> tuple[str, ...]:
    r = Reader(block, offset)
    count = min(r.u8(), _MAX_LIST)
    out = []
    for _ in range(count):
        out.append(r.take(r.u8()).decode("utf-8", "replace"))
    return tuple(out)


def parse_status(data: bytes) -> ServerInfo | None:
    """Parse a DSIGetStatus reply. Returns None for anything else. Never raises."""
    try:
        r = Reader(data)
        flags, command, _req, error, length, _res = struct.unpack(">BBHiII", r.take(16))
        if flags != 1 or command != DSI_GET_STATUS or error != 0 or length < 11:
            return None
        block = r.take(length)
        machine_off, versions_off, uams_off = struct.unpack(">HHH", block[:6])
        return ServerInfo(
            server_name=_pstring(block, 10),
            machine_type=_pstring(block, machine_off),
            afp_versions=_plist(block, versions_off),
            uams=_plist(block, uams_off),
        )
    except (Truncated, struct.error):
        return None
