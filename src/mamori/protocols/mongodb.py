"""MongoDB wire protocol: an OP_MSG command and a minimal, bounded BSON reader for its reply."""

from __future__ import annotations

import struct

from mamori.protocols._wire import Reader, Truncated

OP_REPLY, OP_MSG = 1, 2013
_MAX_MESSAGE = 1 << 20
_MAX_DEPTH = 6
_MAX_KEYS = 256

BsonValue = str | int | float | bool | None | bytes | dict[str, "BsonValue"] | list["BsonValue"]


def _cstr(value: str) -> bytes:
    return value.encode() + b"\0"


def encode_document(doc: dict[str, str | int]) -> bytes:
    """BSON for a flat document of strings and int32s (all a command needs)."""
    body = b""
    for key, value in doc.items():
        if isinstance(value, int):
            body += b"\x10" + _cstr(key) + struct.pack("<i", value)
        else:
            raw = _cstr(value)
            body += b"\x02" + _cstr(key) + struct.pack("<i", len(raw)) + raw
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def build_op_msg(command: dict[str, str | int], request_id: int = 0x4D4D) -> bytes:
    """An OP_MSG carrying one body section: ``{"buildInfo": 1, "$db": "admin"}`` and the like."""
    payload = struct.pack("<I", 0) + b"\x00" + encode_document(command)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def reply_complete(buf: bytes) -> bool:
    """True once the whole message (by its length header) is in, or the length is absurd."""
    if len(buf) < 4:
        return False
    length = int.from_bytes(buf[:4], "little")
    return length < 16 or length > _MAX_MESSAGE or len(buf) >= length


def _document(r: Reader, depth: int) -> dict[str, BsonValue]:
    if depth > _MAX_DEPTH:
        raise Truncated("nesting too deep")
    size = r.i32le()
    if size < 5:
        raise Truncated("bad document size")
    body = Reader(r.take(size - 4))
    out: dict[str, BsonValue] = {}
    while True:
        kind = body.u8()
        if kind == 0:
            if body.remaining:
                raise Truncated("bytes after document end")
            return out
        if len(out) >= _MAX_KEYS:
            raise Truncated("too many keys")
        key = body.cstring(256).decode("utf-8", "replace")
        out[key] = _element(kind, body, depth)


def _element(kind: int, r: Reader, depth: int) -> BsonValue:
    if kind == 0x01:
        return float(struct.unpack("<d", r.take(8))[0])
    if kind in (0x02, 0x0D, 0x0E):
        size = r.i32le()
        if size < 1:
            raise Truncated("bad string size")
        return r.take(size)[:-1].decode("utf-8", "replace")
    if kind == 0x03:
        return _document(r, depth + 1)
    if kind == 0x04:
        return list(_document(r, depth + 1).values())
    if kind == 0x05:
        size = r.i32le()
        r.u8()
        if size < 0:
            raise Truncated("bad binary size")
        return r.take(size)
    if kind == 0x07:
        return r.take(12).hex()
    if kind == 0x08:
        return r.u8() != 0
    if kind in (0x09, 0x11, 0x12):
        return int(struct.unpack("<q", r.take(8))[0])
    if kind in (0x0A, 0x06, 0x7F, 0xFF):
        return None
    if kind == 0x10:
        return r.i32le()
    if kind == 0x13:
        return r.take(16).hex()
    raise Truncated(f"unsupported BSON type {kind:#x}")


def parse_reply(data: bytes) -> dict[str, BsonValue] | None:
    """The body document of an OP_MSG or OP_REPLY message.

    Returns None when ``data`` is not one whole, well-formed message. Never raises.
    """
    try:
        r = Reader(data)
        length, _req, _to, opcode = (r.i32le() for _ in range(4))
        if length < 21 or length > _MAX_MESSAGE or length > len(data):
            return None
        msg = Reader(data[16:length])
        if opcode == OP_MSG:
            msg.u32le()
            if msg.u8() != 0:
                return None
            return _document(msg, 0)
        if opcode == OP_REPLY:
            msg.skip(4 + 8 + 4 + 4)  # flags, cursor id, starting from, number returned
            return _document(msg, 0)
    except Truncated:
        return None
    return None
