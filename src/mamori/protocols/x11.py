"""X11 connection setup (X Window System Protocol, chapter 8): the request and its answer.

A client opens with a 12-byte setup request; the server answers Failed (0), Success (1) or
Authenticate (2) before anything else can happen. We send the request with no authorization
protocol at all, so "Success" means the server lets anyone in (``xhost +`` / ``-ac``). Pure:
bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text

STATUS_NAMES = {0: "failed", 1: "success", 2: "authenticate"}
_HEADER = 8
_SUCCESS_FIXED = 32  # bytes of the Success block before the vendor string


def build_setup() -> bytes:
    """Little-endian setup request for protocol 11.0 with empty authorization name/data."""
    return b"l\x00" + struct.pack("<HHHH", 11, 0, 0, 0) + b"\x00\x00"


@dataclass(frozen=True, slots=True)
class SetupReply:
    status: str  # failed / success / authenticate
    major: int
    minor: int
    reason: str = ""  # Failed / Authenticate text
    vendor: str = ""  # Success only
    release: int = 0
    screens: int = 0


def parse_setup_reply(data: bytes) -> SetupReply | None:
    """The server's answer to ``build_setup()``, or None while incomplete or not X11.

    Only the fixed part and the vendor (Success) or the reason (Failed/Authenticate) are
    read; the screen and format lists that follow a Success are never needed.
    """
    try:
        return _parse(data)
    except Truncated:
        return None


def _parse(data: bytes) -> SetupReply | None:
    r = Reader(data)
    status, reason_len, major, minor, extra = r.u8(), r.u8(), r.u16le(), r.u16le(), r.u16le()
    if status not in STATUS_NAMES or major != 11:
        return None
    name = STATUS_NAMES[status]
    if status == 1:
        body = r.take(_SUCCESS_FIXED)
        release = int.from_bytes(body[0:4], "little")
        vendor_len = int.from_bytes(body[16:18], "little")
        screens = body[20]
        if _HEADER + _SUCCESS_FIXED + vendor_len > _HEADER + 4 * extra:
            return None
        return SetupReply(name, major, minor, vendor=text(r.take(vendor_len), 128),
                          release=release, screens=screens)
    length = reason_len if status == 0 else 4 * extra
    if length > 4 * extra:
        return None
    return SetupReply(name, major, minor, reason=text(r.take(length), 200).rstrip("\0 "))


def looks_like_x11(data: bytes) -> bool:
    """True once ``data`` starts like a setup answer of protocol major version 11."""
    return len(data) >= 4 and data[0] in STATUS_NAMES and data[2:4] == b"\x0b\x00"
