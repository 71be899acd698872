"""memcached text protocol: the ``version`` command, over TCP and over the UDP frame."""

from __future__ import annotations

import re
import struct

_VERSION = re.compile(rb"^VERSION ([\x21-\x7e]{1,64})\r\n")


def build_udp(command: bytes = b"version\r\n", request_id: int = 0x4D4D) -> bytes:
    """The 8-byte UDP frame header (id, seq 0, 1 datagram, reserved) and the command."""
    return struct.pack(">HHHH", request_id, 0, 1, 0) + command


def parse_version(data: bytes) -> str | None:
    """The version from a ``VERSION x.y.z`` reply, or None. Never raises."""
    m = _VERSION.match(data)
    return m.group(1).decode("ascii") if m else None


def parse_udp_version(data: bytes, request_id: int | None = None) -> str | None:
    """Strip the UDP frame header and parse the version; None if the frame is wrong."""
    if len(data) < 8:
        return None
    rid, seq, total, _ = struct.unpack(">HHHH", data[:8])
    if seq >= max(total, 1) or (request_id is not None and rid != request_id):
        return None
    return parse_version(data[8:])
