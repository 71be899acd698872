"""SMB decoy: records the dialects a client offers in its NEGOTIATE request (SMB1 or SMB2/3),
answers a NetBIOS session request on 139 with the 4-byte positive response, and otherwise
replies nothing."""

from __future__ import annotations

import struct

from mamori.protocols._wire import Reader, Truncated
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["SmbPersona", "parse_negotiate", "parse_session_request"]

_MAX_MESSAGE = 8192
_SMB2_NAMES = {0x0202: "2.0.2", 0x0210: "2.1", 0x0222: "2.2.2", 0x0224: "2.2.4",
               0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1", 0x02FF: "2.???"}


def parse_negotiate(message: bytes) -> tuple[str, tuple[str, ...]] | None:
    """``("smb1"|"smb2", dialects)`` of an SMB NEGOTIATE message (NetBIOS header removed).
    None when it is not one. Never raises; at most 64 dialects."""
    try:
        reader = Reader(message)
        magic = reader.take(4)
        if magic == b"\xffSMB":
            if reader.u8() != 0x72:
                return None
            reader.skip(27)  # rest of the 32-byte header
            reader.skip(1 + 2 * reader.u8())  # word count + words
            data = reader.take(min(reader.u16le(), reader.remaining))
            names = [clean(part[1:] if part[:1] == b"\x02" else part, 64)
                     for part in data.split(b"\x00") if part][:64]
            return "smb1", tuple(names)
        if magic == b"\xfeSMB":
            reader.skip(8)  # structure size, credit charge, status
            if reader.u16le() != 0:  # command: NEGOTIATE
                return None
            reader.skip(64 - 14)
            reader.skip(2)  # structure size (36)
            count = min(reader.u16le(), 64)
            reader.skip(2 + 2 + 4 + 16 + 8)
            dialects = [reader.u16le() for _ in range(count)]
            return "smb2", tuple(_SMB2_NAMES.get(d, f"0x{d:04x}") for d in dialects)
    except Truncated:
        return None
    return None


def _netbios_name(encoded: bytes) -> str:
    if len(encoded) != 32:
        return ""
    chars = bytes(((encoded[i] - 0x41) << 4) | (encoded[i + 1] - 0x41) & 0x0F
                  for i in range(0, 32, 2) if 0x41 <= encoded[i] <= 0x50)
    return clean(chars[:15].rstrip(b" "), 32)


def parse_session_request(payload: bytes) -> tuple[str, str]:
    """``(called, calling)`` NetBIOS names of a session request (RFC 1002 4.3.2)."""
    called = _netbios_name(payload[1:33]) if payload[:1] == b"\x20" else ""
    calling = _netbios_name(payload[35:67]) if payload[34:35] == b"\x20" else ""
    return called, calling


class SmbPersona(Persona):
    name = "smb"

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._session: tuple[str, str] | None = None

    def handle(self, data: bytes) -> Step:
        self._buf += data[: _MAX_MESSAGE + 4 - len(self._buf)]
        step = Step()
        while len(self._buf) >= 4 and not step.close:
            kind = self._buf[0]
            (length,) = struct.unpack(">I", b"\x00" + bytes(self._buf[1:4]))
            if length > _MAX_MESSAGE:
                step.records.append(self.first_request({"note": "message too large"}))
                step.close = True
                break
            if len(self._buf) < 4 + length:
                break
            payload = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            if kind == 0x81 and self._session is None:
                self._session = parse_session_request(payload)
                step.reply += b"\x82\x00\x00\x00"
                continue
            if kind == 0x85:  # keep-alive
                continue
            step.records.append(self.first_request(self._fields(payload)))
            step.close = True
        if not step.close and len(self._buf) >= _MAX_MESSAGE:
            step.records.append(self.first_request({"note": "message too large"}))
            step.close = True
        return step

    def _fields(self, payload: bytes) -> dict[str, str]:
        fields: dict[str, str] = {}
        if self._session is not None:
            fields["called_name"], fields["calling_name"] = self._session
        parsed = parse_negotiate(payload)
        if parsed is None:
            fields["note"] = "not an smb negotiate"
        else:
            fields["smb"], dialects = parsed[0], parsed[1]
            fields["dialects"] = clean(",".join(dialects), 512)
        return fields

    def finish(self) -> list[Record]:
        if self.data_recorded or not self._first:
            return []
        fields = {"complete": "no"}
        if self._session is not None:
            fields["called_name"], fields["calling_name"] = self._session
        return [self.first_request(fields)]
