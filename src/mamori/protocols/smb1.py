"""SMB1 (CIFS) NEGOTIATE offering only "NT LM 0.12" (MS-CIFS 2.2.4.52), NetBIOS-framed.

A server that answers it with an SMB1 NEGOTIATE response choosing that dialect still speaks
SMB1; a server that has SMB1 off closes the connection or answers with SMB2 or an error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

DIALECT = "NT LM 0.12"
_NEGOTIATE = 0x72


def build_negotiate() -> bytes:
    """An SMB1 NEGOTIATE whose only dialect is NT LM 0.12 (no extended security asked)."""
    dialects = b"\x02" + DIALECT.encode("ascii") + b"\0"
    header = (b"\xffSMB" + struct.pack("<BIBH", _NEGOTIATE, 0, 0x18, 0xC001)  # unicode, NT status
              + b"\0" * 12 + struct.pack("<HHHH", 0, 0xFEFF, 0, 1))
    message = header + b"\x00" + struct.pack("<H", len(dialects)) + dialects
    return b"\x00" + len(message).to_bytes(3, "big") + message


@dataclass(frozen=True, slots=True)
class Smb1Negotiate:
    status: int
    dialect_index: int
    security_mode: int
    capabilities: int
    domain: str  # primary domain / workgroup, when the server sends it


def parse_negotiate_reply(data: bytes) -> Smb1Negotiate | None:
    """Parse an SMB1 NEGOTIATE response. Returns None for anything else (SMB2 included).

    Never raises.
    """
    try:
        r = Reader(data)
        if r.u8() != 0:
            return None
        msg = Reader(r.take(r.u24be()))
        if msg.take(4) != b"\xffSMB" or msg.u8() != _NEGOTIATE:
            return None
        status = msg.u32le()
        flags = msg.u8()
        if not flags & 0x80:  # SMB_FLAGS_REPLY
            return None
        flags2 = msg.u16le()
        msg.skip(12 + 8)
        words = msg.u8()
        if words == 1:  # no dialect acceptable: index 0xFFFF
            return Smb1Negotiate(status, msg.u16le(), 0, 0, "")
        if words != 17:
            return None
        index, security_mode = msg.u16le(), msg.u8()
        msg.skip(2 + 2 + 4 + 4 + 4)
        capabilities = msg.u32le()
        msg.skip(8 + 2)
        key_len = msg.u8()
        byte_count = msg.u16le()
        domain = ""
        if not capabilities & 0x80000000:  # no extended security: challenge + domain name
            rest = msg.take(min(byte_count, msg.remaining))
            name = rest[key_len:]
            if flags2 & 0x8000:
                end = next((i for i in range(0, len(name) - 1, 2) if name[i:i + 2] == b"\0\0"),
                           len(name))
                domain = name[:end].decode("utf-16-le", "replace")[:64]
            else:
                domain = name.split(b"\0", 1)[0].decode("latin-1")[:64]
    except Truncated:
        return None
    return Smb1Negotiate(status, index, security_mode, capabilities, domain)
