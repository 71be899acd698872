"""TLS: a ClientHello to ask "do you speak TLS?" and a parser for the first reply record.

A ServerHello (or a TLS alert) in reply proves a TLS speaker; the handshake itself is left to
the ``ssl`` module. Nothing here opens a socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
             0x0304: "TLSv1.3"}

# TLS 1.3, ECDHE-GCM/ChaCha, then plain RSA suites so that old servers answer too.
_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
            0xC014, 0x009C, 0x009D, 0x002F, 0x0035, 0x000A)
_GROUPS = (0x001D, 0x0017, 0x0018)
_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201)
_HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(body)) + body


def _u16_list(values: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


def build_client_hello(server_name: str | None = None, random: bytes = b"\x42" * 32) -> bytes:
    """A TLS record holding a ClientHello that TLS 1.0-1.3 servers answer with a ServerHello.

    ``server_name`` goes in the SNI extension when it is a DNS name. Returns the record bytes.
    """
    exts = b""
    if server_name and not server_name.replace(".", "").isdigit() and ":" not in server_name:
        name = server_name.encode("idna")
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        exts += _ext(0x0000, struct.pack(">H", len(entry)) + entry)
    groups = _u16_list(_GROUPS)
    exts += _ext(0x000A, struct.pack(">H", len(groups)) + groups)
    exts += _ext(0x000B, b"\x01\x00")
    sigs = _u16_list(_SIGALGS)
    exts += _ext(0x000D, struct.pack(">H", len(sigs)) + sigs)
    versions = _u16_list((0x0304, 0x0303, 0x0302, 0x0301))
    exts += _ext(0x002B, bytes([len(versions)]) + versions)
    ciphers = _u16_list(_CIPHERS)
    body = (
        b"\x03\x03" + random[:32].ljust(32, b"\0")
        + b"\x20" + b"\x11" * 32  # a session id: TLS 1.3 middlebox-compatibility mode
        + struct.pack(">H", len(ciphers)) + ciphers
        + b"\x01\x00"
        + struct.pack(">H", len(exts)) + exts
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake


@dataclass(frozen=True, slots=True)
class TlsReply:
    """The first record a TLS server sent: a ServerHello or an alert."""

    kind: str  # "server-hello", "hello-retry" or "alert"
    version: str  # negotiated (supported_versions wins over the legacy field)
    cipher: int | None = None
    alert_level: int | None = None
    alert_description: int | None = None


def reply_complete(buf: bytes) -> bool:
    """True when the first record is complete, or when the bytes cannot be a TLS record."""
    if len(buf) < 5:
        return bool(buf) and buf[0] not in (0x15, 0x16)
    if buf[0] not in (0x15, 0x16) or buf[1] != 0x03:
        return True
    return len(buf) >= 5 + int.from_bytes(buf[3:5], "big")


def parse_server_reply(data: bytes) -> TlsReply | None:
    """Parse the first TLS record of a server's reply to a ClientHello.

    Returns a ``TlsReply`` for a ServerHello (possibly a HelloRetryRequest) or an alert;
    None for anything else, including truncated records. Never raises.
    """
    try:
        return _parse(Reader(data))
    except Truncated:
        return None


def _parse(r: Reader) -> TlsReply | None:
    content_type = r.u8()
    major, minor = r.u8(), r.u8()
    length = r.u16be()
    if major != 3 or minor > 4 or length == 0 or length > 16384 + 2048:
        return None
    record = Reader(r.take(length))
    legacy = _VERSIONS.get(0x0300 | minor, "unknown")
    if content_type == 0x15:
        level, desc = record.u8(), record.u8()
        if level not in (1, 2):
            return None
        return TlsReply("alert", legacy, alert_level=level, alert_description=desc)
    if content_type != 0x16 or record.u8() != 0x02:
        return None
    hs = Reader(record.take(record.u24be()))
    version = hs.u16be()
    if version >> 8 != 3:
        return None
    random = hs.take(32)
    hs.skip(hs.u8())
    cipher = hs.u16be()
    hs.u8()  # compression method
    negotiated = version
    if hs.remaining >= 2:
        exts = Reader(hs.take(hs.u16be()))
        while exts.remaining:
            ext_type, ext_len = exts.u16be(), exts.u16be()
            body = exts.take(ext_len)
            if ext_type == 0x002B and len(body) == 2:
                negotiated = int.from_bytes(body, "big")
    kind = "hello-retry" if random == _HELLO_RETRY_RANDOM else "server-hello"
    return TlsReply(kind, _VERSIONS.get(negotiated, f"0x{negotiated:04x}"), cipher=cipher)
