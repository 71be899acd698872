"""PostgreSQL frontend/backend protocol v3: a StartupMessage and the server's first reply."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

PROTOCOL_3 = 196608


def build_startup(user: str = "mamori", database: str = "mamori",
                  application_name: str = "mamori") -> bytes:
    """A v3 StartupMessage; the server answers with an auth request or an error."""
    params = b""
    for key, value in (("user", user), ("database", database),
                       ("application_name", application_name)):
        params += key.encode() + b"\0" + value.encode() + b"\0"
    body = struct.pack(">I", PROTOCOL_3) + params + b"\0"
    return struct.pack(">I", len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class BackendReply:
    kind: str  # "error", "notice" or "auth"
    fields: dict[str, str]  # error fields by code letter (S, C, M, R, ...), or {"auth": "10"}


def reply_complete(buf: bytes) -> bool:
    """True when the first backend message is whole, or the bytes cannot start one."""
    if not buf:
        return False
    if buf[:1] not in (b"E", b"R", b"N"):
        return True
    if len(buf) < 5:
        return False
    length = int.from_bytes(buf[1:5], "big")
    return length < 4 or length > 65536 or len(buf) >= 1 + length


def parse_reply(data: bytes) -> BackendReply | None:
    """Parse the first message a server sends after a StartupMessage.

    Returns an ErrorResponse/NoticeResponse with its fields, or an Authentication request;
    None for anything else. Never raises.
    """
    try:
        r = Reader(data)
        kind = r.take(1)
        length = r.u32be()
        if length < 4 or length > 65536:
            return None
        body = Reader(r.take(length - 4))
        if kind == b"R":
            auth = body.u32be()
            return BackendReply("auth", {"auth": str(auth)}) if auth <= 12 else None
        if kind not in (b"E", b"N"):
            return None
        fields: dict[str, str] = {}
        while True:
            code_byte = body.take(1)
            if code_byte == b"\0":
                break
            fields[code_byte.decode("latin-1")] = body.cstring(1024).decode("utf-8", "replace")
    except Truncated:
        return None
    code = fields.get("C", "")
    if "S" not in fields or "M" not in fields or len(code) != 5 or not code.isalnum():
        return None
    return BackendReply("error" if kind == b"E" else "notice", fields)
