"""SMB2/3 NEGOTIATE up to 3.1.1 with negotiate contexts, and what its reply says about signing
and encryption (MS-SMB2 2.2.3, 2.2.4, 2.2.3.1). Pure: builders return frames, the parser
returns None for anything that is not a well-formed NEGOTIATE reply.

The request offers 2.0.2, 2.1, 3.0, 3.0.2 and 3.1.1 with the preauth integrity context
(SHA-512) and the encryption context (AES-128/256 in CCM and GCM), and sets the ENCRYPTION
capability, so a server that can encrypt has every chance to say so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated
from mamori.protocols.smb2 import NEGOTIATE, Reply, frame

SIGNING_ENABLED, SIGNING_REQUIRED = 0x0001, 0x0002
CAP_ENCRYPTION = 0x00000040
DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}
CIPHERS = {1: "AES-128-CCM", 2: "AES-128-GCM", 3: "AES-256-CCM", 4: "AES-256-GCM"}
_PREAUTH, _ENCRYPTION = 0x0001, 0x0002
_MAX_CONTEXTS = 16


def _header(message_id: int) -> bytes:
    return (b"\xfeSMB" + struct.pack("<HHIHHIIQ", 64, 1, 0, NEGOTIATE, 64, 0, 0, message_id)
            + struct.pack("<IIQ", 0xFEFF, 0, 0) + b"\0" * 16)


def _context(kind: int, data: bytes) -> bytes:
    raw = struct.pack("<HHI", kind, len(data), 0) + data
    return raw + b"\0" * (-len(raw) % 8)


def build_negotiate(message_id: int, client_guid: bytes, salt: bytes) -> bytes:
    """A NEGOTIATE frame offering every SMB2/3 dialect and SMB 3.1.1's contexts."""
    dialects = b"".join(struct.pack("<H", d) for d in DIALECTS)
    fixed = 64 + 36 + len(dialects)
    pad = -fixed % 8
    contexts = (_context(_PREAUTH, struct.pack("<HHH", 1, len(salt), 0x0001) + salt)
                + _context(_ENCRYPTION, struct.pack("<5H", 4, 2, 1, 4, 3)))
    body = struct.pack("<HHHHI", 36, len(DIALECTS), SIGNING_ENABLED, 0, CAP_ENCRYPTION)
    body += client_guid[:16].ljust(16, b"\0") + struct.pack("<IHH", fixed + pad, 2, 0)
    return frame(_header(message_id) + body + dialects + b"\0" * pad + contexts)


@dataclass(frozen=True, slots=True)
class NegotiateFacts:
    dialect: str  # "3.1.1"
    signing_enabled: bool
    signing_required: bool
    encryption_capability: bool  # SMB2_GLOBAL_CAP_ENCRYPTION (3.0 / 3.0.2)
    cipher: str | None  # chosen in the 3.1.1 encryption context; None when none was chosen
    preauth: str | None  # "SHA-512" when the 3.1.1 preauth context came back

    @property
    def encryption(self) -> bool:
        """Can this session be encrypted at all?"""
        if self.dialect == "3.1.1":
            return self.cipher is not None
        return self.dialect.startswith("3.") and self.encryption_capability


def _contexts(reply: Reply, offset: int, count: int) -> tuple[str | None, str | None]:
    cipher = preauth = None
    r = Reader(reply.message, offset)
    for _ in range(min(count, _MAX_CONTEXTS)):
        r.pos += -r.pos % 8
        kind, length = r.u16le(), r.u16le()
        r.skip(4)
        data = Reader(r.take(length))
        if kind == _ENCRYPTION:
            if data.u16le() >= 1:
                chosen = data.u16le()
                cipher = CIPHERS.get(chosen) if chosen else None
        elif kind == _PREAUTH and data.u16le() >= 1:
            data.skip(2)
            preauth = "SHA-512" if data.u16le() == 1 else "unknown"
    return cipher, preauth


def parse_negotiate(reply: Reply) -> NegotiateFacts | None:
    """The security facts of a successful NEGOTIATE reply, or None if it is not one."""
    try:
        r = Reader(reply.body)
        if reply.command != NEGOTIATE or reply.status != 0 or r.u16le() != 65:
            return None
        mode, dialect_code, count = r.u16le(), r.u16le(), r.u16le()
        dialect = DIALECTS.get(dialect_code)
        if dialect is None:
            return None
        r.skip(16)
        caps = r.u32le()
        r.skip(4 * 3 + 8 * 2 + 4)
        context_offset = r.u32le()
        cipher = preauth = None
        if dialect == "3.1.1":
            if context_offset < 64 or context_offset >= len(reply.message):
                return None
            cipher, preauth = _contexts(reply, context_offset, count)
    except Truncated:
        return None
    return NegotiateFacts(dialect, bool(mode & SIGNING_ENABLED), bool(mode & SIGNING_REQUIRED),
                          bool(caps & CAP_ENCRYPTION), cipher, preauth)
