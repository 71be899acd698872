"""memcached text protocol: the ``version`` command, over TCP and over the UDP frame, and the
``stats`` command."""

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


# --- the ``stats`` command over TCP, for checks ------------------------------------------------
_STAT = re.compile(rb"^STAT ([\x21-\x7e]{1,64}) ([^\r\n]{0,256})$")
_MAX_STATS = 256  # memcached 1.6 sends about ninety


def stats_complete(buf: bytes) -> bool:
    """True once the reply to ``stats`` has ended (END), or a whole line shows it is not a
    stats reply at all (an error, or anything that is not a STAT line)."""
    lines = buf.split(b"\r\n")
    for line in lines[:-1][: _MAX_STATS + 1]:  # whole lines only
        if not line.startswith(b"STAT "):
            return True
    return len(lines) > _MAX_STATS + 1


def parse_stats(data: bytes) -> dict[str, str] | None:
    """The ``STAT name value`` pairs of a complete ``stats`` reply ending in END.

    Returns None unless every line is a STAT line and END closes the reply. Never raises.
    """
    stats: dict[str, str] = {}
    lines = data.split(b"\r\n")
    for i, line in enumerate(lines[: _MAX_STATS + 1]):
        if line == b"END":
            rest = b"\r\n".join(lines[i + 1 :])
            return stats if stats and not rest.strip() else None
        m = _STAT.match(line)
        if m is None:
            return None
        stats[m.group(1).decode("ascii")] = m.group(2).decode("utf-8", "replace")
    return None


def error_line(data: bytes) -> str | None:
    """The first line when it is a memcached error (ERROR, CLIENT_ERROR ..., SERVER_ERROR
    ...), e.g. "CLIENT_ERROR unauthenticated" from a server with an auth file; else None."""
    first = data.split(b"\r\n", 1)[0]
    if first == b"ERROR" or first.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")):
        return first[:256].decode("utf-8", "replace")
    return None
