"""SMB2 NEGOTIATE over the NetBIOS session framing of TCP 445/139."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302)
_NAMES = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1",
          0x02FF: "2.???"}


def build_negotiate(client_guid: bytes = b"mamori-identify!") -> bytes:
    """A NetBIOS-framed SMB2 NEGOTIATE offering dialects 2.0.2 to 3.0.2."""
    header = (b"\xfeSMB" + struct.pack("<HHIHHIIQ", 64, 0, 0, 0, 1, 0, 0, 0)
              + struct.pack("<IIQ", 0xFEFF, 0, 0) + b"\0" * 16)
    body = struct.pack("<HHHHI", 36, len(_DIALECTS), 1, 0, 0) + client_guid[:16].ljust(16, b"\0")
    body += b"\0" * 8 + b"".join(struct.pack("<H", d) for d in _DIALECTS)
    message = header + body
    return b"\x00" + len(message).to_bytes(3, "big") + message


def reply_complete(buf: bytes) -> bool:
    """True once the NetBIOS-framed message is whole, or the frame cannot be SMB."""
    if not buf:
        return False
    if buf[0] not in (0x00, 0x82, 0x83, 0x85):
        return True
    if len(buf) < 4:
        return False
    return len(buf) >= 4 + int.from_bytes(buf[1:4], "big")


@dataclass(frozen=True, slots=True)
class NegotiateReply:
    smb_version: int  # 1 or 2
    status: int
    dialect: str
    signing_required: bool
    server_guid: str
    security_blob: bytes


def parse_negotiate_reply(data: bytes) -> NegotiateReply | None:
    """Parse the server's reply to ``build_negotiate``.

    Returns a ``NegotiateReply`` for an SMB2 NEGOTIATE response (or an SMB1 reply, with
    dialect "1"); None otherwise. Never raises.
    """
    try:
        r = Reader(data)
        if r.u8() != 0:
            return None
        length = r.u24be()
        msg = Reader(r.take(length))
        magic = msg.take(4)
        if magic == b"\xffSMB":
            command, status = msg.u8(), msg.u32le()
            if command != 0x72:
                return None
            return NegotiateReply(1, status, "1", False, "", b"")
        if magic != b"\xfeSMB" or msg.u16le() != 64:
            return None
        msg.skip(2)
        status = msg.u32le()
        command = msg.u16le()
        msg.skip(64 - 14)
        if command != 0:
            return None
        if status != 0:
            return NegotiateReply(2, status, "", False, "", b"")
        if msg.u16le() != 65:
            return None
        security_mode = msg.u16le()
        dialect = msg.u16le()
        msg.skip(2)
        guid = msg.take(16)
        msg.skip(4 + 4 + 4 + 4 + 8 + 8)
        blob_offset, blob_len = msg.u16le(), msg.u16le()
        start = blob_offset  # counted from the SMB2 header, which msg.data starts with
        blob = msg.data[start : start + blob_len] if 0 <= start <= len(msg.data) else b""
    except Truncated:
        return None
    return NegotiateReply(2, 0, _NAMES.get(dialect, f"0x{dialect:04x}"),
                          bool(security_mode & 2), guid.hex(), blob)
