"""MySQL/MariaDB: the server's initial handshake packet (or the error it sends instead)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

_VERSION = re.compile(r"^(\d+\.\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class Greeting:
    protocol: int
    server_version: str  # raw, e.g. "5.5.5-10.11.6-MariaDB-0+deb12u1"
    connection_id: int
    product: str  # "MariaDB" or "MySQL"
    version: str  # "10.11.6"
    auth_plugin: str


@dataclass(frozen=True, slots=True)
class ErrorPacket:
    code: int
    message: str


def parse_greeting(data: bytes) -> Greeting | ErrorPacket | None:
    """Parse the first packet a MySQL-protocol server sends on connect.

    Returns a ``Greeting`` (protocol 10 handshake) or an ``ErrorPacket`` (e.g. "Host ... is
    not allowed to connect"); None for anything else. Never raises.
    """
    try:
        r = Reader(data)
        length = r.u24le()
        if r.u8() != 0 or length < 3 or length > 1024:
            return None
        body = Reader(r.take(length))
        marker = body.u8()
        if marker == 0xFF:
            code = body.u16le()
            rest = body.take(body.remaining)
            if rest.startswith(b"#"):
                rest = rest[6:]  # SQL state marker and five-character state
            return ErrorPacket(code, rest.decode("utf-8", "replace")[:256])
        if marker != 10:
            return None
        raw = body.cstring(128).decode("ascii")
        conn_id = body.u32le()
        body.skip(8 + 1)  # auth-plugin-data part 1, filler
        body.u16le()
        plugin = ""
        if body.remaining >= 13:
            body.skip(1 + 2 + 2 + 1 + 10)  # charset, status, caps hi, auth len, reserved
            if body.remaining:
                tail = body.take(body.remaining)
                parts = tail.split(b"\0")
                plugin = parts[1].decode("ascii", "replace") if len(parts) > 2 else ""
    except (Truncated, UnicodeDecodeError):
        return None
    text = raw.removeprefix("5.5.5-")  # MariaDB's replication-compatibility prefix
    m = _VERSION.match(text)
    if m is None:
        return None
    product = "MariaDB" if "mariadb" in text.lower() else "MySQL"
    return Greeting(10, raw, conn_id, product, m.group(1), plugin)
