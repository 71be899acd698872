"""RFB (VNC, RFC 6143): version handshake, security types, and the ServerInit message.

Pure: bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text

_VERSION = re.compile(rb"^RFB (\d{3})\.(\d{3})\n")
SECURITY_NAMES = {
    0: "invalid", 1: "None", 2: "VNC Authentication", 5: "RA2", 6: "RA2ne", 16: "Tight",
    17: "Ultra", 18: "TLS", 19: "VeNCrypt", 20: "GTK-VNC SASL", 21: "MD5 hash",
    22: "Colin Dean xvp", 30: "Apple Remote Desktop", 113: "MSLogonII",
}
NONE, VNC_AUTH = 1, 2
VERSION_SIZE = 12  # "RFB xxx.yyy\n"
_MAX_NAME = 1024


def parse_version(data: bytes) -> tuple[int, int] | None:
    """The server's ProtocolVersion "RFB 003.008\\n" as (3, 8), or None."""
    m = _VERSION.match(data)
    return (int(m.group(1)), int(m.group(2))) if m else None


def client_version(server: tuple[int, int]) -> tuple[int, int]:
    """The version we answer with: the server's if it is 3.3/3.7/3.8, else the nearest
    standard one below it (RFC 6143 7.1.1; Apple's 3.889 speaks 3.8)."""
    if server >= (3, 8):
        return (3, 8)
    if server >= (3, 7):
        return (3, 7)
    return (3, 3)


def build_version(version: tuple[int, int]) -> bytes:
    return f"RFB {version[0]:03d}.{version[1]:03d}\n".encode()


@dataclass(frozen=True, slots=True)
class SecurityOffer:
    types: tuple[int, ...]  # empty when the server refused us (reason then set)
    reason: str | None
    size: int  # bytes the message took


def parse_security(data: bytes, version: tuple[int, int]) -> SecurityOffer | None:
    """The server's security message: a list of types (3.7+), or one u32 type (3.3); a
    count/type of 0 is followed by a reason string. None while incomplete. Never raises."""
    r = Reader(data)
    try:
        if version >= (3, 7):
            count = r.u8()
            if count:
                return SecurityOffer(tuple(r.take(count)), None, r.pos)
        else:
            chosen = r.u32be()
            if chosen:
                if chosen > 255:
                    return None
                return SecurityOffer((chosen,), None, r.pos)
        length = r.u32be()
        # A reason longer than we keep is cut: we read no more of it.
        reason = r.take(min(length, _MAX_NAME))
        return SecurityOffer((), text(reason, _MAX_NAME), r.pos)
    except Truncated:
        return None


def parse_security_result(data: bytes) -> int | None:
    """SecurityResult: 0 = OK, 1 = failed (a reason may follow in 3.8). None if incomplete."""
    if len(data) < 4:
        return None
    return int.from_bytes(data[:4], "big")


def build_client_init(shared: bool = True) -> bytes:
    return b"\x01" if shared else b"\x00"


@dataclass(frozen=True, slots=True)
class ServerInit:
    width: int
    height: int
    bits_per_pixel: int
    depth: int
    name: str


def parse_server_init(data: bytes) -> ServerInit | None:
    """ServerInit: framebuffer size, pixel format and desktop name (RFC 6143 7.3.2).

    Returns None while incomplete or when the pixel format breaks the RFC's rules (bits per
    pixel 8/16/32, depth no larger, true-colour flag 0 or 1): a peer that merely sends bytes
    is not a VNC desktop. Never raises.
    """
    r = Reader(data)
    try:
        width, height = r.u16be(), r.u16be()
        bpp, depth, _big_endian, true_colour = r.u8(), r.u8(), r.u8(), r.u8()
        r.skip(6 + 3 + 3)  # colour maxima and shifts, padding
        length = r.u32be()
        if length > _MAX_NAME:
            return None
        name = r.take(length)
    except Truncated:
        return None
    if bpp not in (8, 16, 32) or not 0 < depth <= bpp or true_colour > 1:
        return None
    if not (width > 0 and height > 0):
        return None
    return ServerInit(width, height, bpp, depth, text(name, _MAX_NAME))
