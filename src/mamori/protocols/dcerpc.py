"""DCE/RPC over a named pipe: BIND to srvsvc and NetrShareEnum level 1 (MS-SRVS 3.1.4.8).

Connection-oriented PDUs (C706 chapter 12) in little-endian NDR. The share-list parser walks
the NDR by hand and caps every count a server announces, so a hostile reply cannot make it
allocate or loop without bound.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

SRVSVC = uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188")
NDR = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")
_BIND, _BIND_ACK, _REQUEST, _RESPONSE, _FAULT = 11, 12, 0, 2, 3
_FIRST_LAST = 0x03
_LAST = 0x02
_DREP = b"\x10\x00\x00\x00"  # little-endian integers, ASCII, IEEE floats
MAX_FRAG = 4280
MAX_SHARES = 256
_MAX_NAME = 1024  # UTF-16 code units of one share name or remark

STYPE_NAMES = {0: "disk", 1: "printer", 2: "device", 3: "ipc"}


def _pdu(ptype: int, call_id: int, body: bytes, flags: int = _FIRST_LAST) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, _DREP, 16 + len(body), 0, call_id) + body


def build_bind(call_id: int = 1) -> bytes:
    """BIND to srvsvc v3.0 with the NDR transfer syntax."""
    ctx = (struct.pack("<HBB", 0, 1, 0) + SRVSVC.bytes_le + struct.pack("<HH", 3, 0)
           + NDR.bytes_le + struct.pack("<I", 2))
    body = struct.pack("<HHIB3x", MAX_FRAG, MAX_FRAG, 0, 1) + ctx
    return _pdu(_BIND, call_id, body)


@dataclass(frozen=True, slots=True)
class Pdu:
    ptype: int
    flags: int
    call_id: int
    body: bytes  # after the 16-byte common header, auth trailer excluded


def pdu_length(buf: bytes) -> int | None:
    """The frag_length a PDU header announces, or None while the header is incomplete."""
    if len(buf) < 10:
        return None
    return int(struct.unpack_from("<H", buf, 8)[0])


def parse_pdu(data: bytes) -> Pdu | None:
    """Parse one connection-oriented PDU (little-endian only). None if it is not one."""
    try:
        r = Reader(data)
        if r.u8() != 5 or r.u8() != 0:
            return None
        ptype, flags = r.u8(), r.u8()
        if r.take(4)[0] & 0xF0 != 0x10:
            return None
        frag_len, auth_len, call_id = r.u16le(), r.u16le(), r.u32le()
        if frag_len < 16 or frag_len > len(data) or auth_len > frag_len - 16:
            return None
        body = data[16 : frag_len - auth_len - (8 if auth_len else 0)]
    except Truncated:
        return None
    return Pdu(ptype, flags, call_id, body)


def bind_accepted(pdu: Pdu) -> bool:
    """True when ``pdu`` is a BIND_ACK whose first result accepts our context."""
    if pdu.ptype != _BIND_ACK:
        return False
    try:
        r = Reader(pdu.body)
        r.skip(8)
        r.skip(r.u16le())  # secondary address
        while (16 + r.pos) % 4:
            r.skip(1)
        if r.u8() < 1:
            return False
        r.skip(3)
        return r.u16le() == 0
    except Truncated:
        return False


def _wstring(value: str) -> bytes:
    """An NDR conformant varying string of UTF-16 units, NUL included, padded to 4."""
    raw = (value + "\0").encode("utf-16-le")
    n = len(raw) // 2
    out = struct.pack("<III", n, 0, n) + raw
    return out + b"\0" * (-len(out) % 4)


def build_share_enum(server: str, call_id: int = 2) -> bytes:
    """REQUEST NetrShareEnum (opnum 15) for level 1: names, types and remarks of all shares."""
    stub = struct.pack("<I", 0x00020000) + _wstring(server)
    stub += struct.pack("<III", 1, 1, 0x00020004) + struct.pack("<II", 0, 0)  # empty container
    stub += struct.pack("<I", 0xFFFFFFFF)  # PreferedMaximumLength: all of it
    stub += struct.pack("<II", 0x00020008, 0)  # ResumeHandle
    body = struct.pack("<IHH", len(stub), 0, 15) + stub
    return _pdu(_REQUEST, call_id, body)


def response_stub(pdu: Pdu) -> bytes | None:
    """The stub data of a RESPONSE PDU; None for a FAULT or anything else."""
    if pdu.ptype != _RESPONSE or len(pdu.body) < 8:
        return None
    return pdu.body[8:]


def is_last_fragment(pdu: Pdu) -> bool:
    return bool(pdu.flags & _LAST)


@dataclass(frozen=True, slots=True)
class Share:
    name: str
    stype: int

    @property
    def kind(self) -> str:
        return STYPE_NAMES.get(self.stype & 0xFF, f"type{self.stype & 0xFF}")

    @property
    def special(self) -> bool:
        """Administrative or hidden (STYPE_SPECIAL, or a name ending in "$")."""
        return bool(self.stype & 0x80000000) or self.name.endswith("$")


def _read_wstring(r: Reader) -> str:
    max_count, offset, actual = r.u32le(), r.u32le(), r.u32le()
    if actual > _MAX_NAME or offset > max_count or actual > max_count:
        raise Truncated("share string too long or inconsistent")
    raw = r.take(actual * 2)
    while r.pos % 4:
        r.skip(1)
    return raw.decode("utf-16-le", "replace").rstrip("\0")


def parse_share_enum(stub: bytes) -> tuple[list[Share], int] | None:
    """Parse the NetrShareEnum level-1 response stub: (shares, WERROR status).

    Returns None when the stub is not a well-formed level-1 answer. Never raises.
    """
    try:
        r = Reader(stub)
        level, tag, container = r.u32le(), r.u32le(), r.u32le()
        if level != 1 or tag != 1:
            return None
        shares: list[Share] = []
        if container:
            count, array = r.u32le(), r.u32le()
            if count > MAX_SHARES:
                return None
            if array:
                if r.u32le() != count:
                    return None
                entries = []
                for _ in range(count):
                    name_ptr, stype, remark_ptr = r.u32le(), r.u32le(), r.u32le()
                    entries.append((name_ptr, stype, remark_ptr))
                for name_ptr, stype, remark_ptr in entries:
                    name = _read_wstring(r) if name_ptr else ""
                    if remark_ptr:
                        _read_wstring(r)
                    shares.append(Share(name, stype))
        r.skip(4)  # TotalEntries
        if r.u32le():
            r.skip(4)  # ResumeHandle
        return shares, r.u32le()
    except Truncated:
        return None
