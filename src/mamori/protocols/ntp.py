"""NTP (RFC 5905) client-mode request and server-mode reply."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_MODES = {1: "symmetric-active", 2: "symmetric-passive", 3: "client", 4: "server",
          5: "broadcast", 6: "control", 7: "private"}


DEFAULT_TRANSMIT = 0xC54F234B71B152F3


def build_client_request(transmit: int = DEFAULT_TRANSMIT) -> bytes:
    """A 48-byte version-4 client request (the transmit timestamp is echoed by servers)."""
    # LI=3 (unsynchronised) VN=4 mode=3, stratum 0, poll 4, precision -6; zeros up to transmit.
    return bytes([0xE3, 0, 4, 0xFA]) + bytes(36) + struct.pack(">Q", transmit)


@dataclass(frozen=True, slots=True)
class NtpReply:
    leap: int
    version: int
    mode: str
    stratum: int
    refid: str


def parse_reply(data: bytes, origin: int | None = None) -> NtpReply | None:
    """Parse a server (mode 4) or symmetric reply of at least 48 bytes; None otherwise.

    With ``origin``, the reply must echo it as its origin timestamp (servers copy the
    client's transmit timestamp there), which tells an NTP answer from look-alike bytes.
    """
    if len(data) < 48:
        return None
    if origin is not None and data[24:32] != struct.pack(">Q", origin):
        return None
    first, stratum = data[0], data[1]
    version, mode = (first >> 3) & 7, first & 7
    if version not in (1, 2, 3, 4) or mode not in (2, 4, 5):
        return None
    raw_ref = data[12:16]
    refid = (raw_ref.rstrip(b"\0").decode("ascii", "replace") if stratum <= 1
             else ".".join(str(b) for b in raw_ref))
    return NtpReply(first >> 6, version, _MODES[mode], stratum, refid)
