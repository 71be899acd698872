"""DNS messages (RFC 1035): build queries, parse replies; also TCP framing and mDNS queries."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

TYPE_A, TYPE_PTR, TYPE_TXT = 1, 12, 16
CLASS_IN, CLASS_CH = 1, 3
_MAX_RECORDS = 64
_MAX_POINTERS = 16


def encode_name(name: str) -> bytes:
    """Wire form of a dotted name; raises ValueError for labels over 63 bytes."""
    out = b""
    for label in name.strip(".").split("."):
        if not label:
            continue
        raw = label.encode("ascii")
        if len(raw) > 63:
            raise ValueError(f"label too long: {label!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(name: str, qtype: int, qclass: int = CLASS_IN, *, txid: int = 0x4D4D,
                recursion: bool = True, unicast_response: bool = False) -> bytes:
    """A one-question query message. ``unicast_response`` sets mDNS's QU bit."""
    flags = 0x0100 if recursion else 0
    header = struct.pack(">HHHHHH", txid, flags, 1, 0, 0, 0)
    cls = qclass | (0x8000 if unicast_response else 0)
    return header + encode_name(name) + struct.pack(">HH", qtype, cls)


def frame_tcp(message: bytes) -> bytes:
    """Prefix the two-byte length DNS over TCP uses."""
    return struct.pack(">H", len(message)) + message


def tcp_reply_complete(buf: bytes) -> bool:
    """True once the framed message is whole (or its length says it is no DNS reply)."""
    if len(buf) < 2:
        return False
    length = int.from_bytes(buf[:2], "big")
    return length < 12 or len(buf) >= 2 + length


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    data: bytes
    text: tuple[str, ...] = ()  # TXT strings, or a PTR target as one item


@dataclass(frozen=True, slots=True)
class Message:
    txid: int
    is_response: bool
    opcode: int
    authoritative: bool
    rcode: int
    questions: tuple[tuple[str, int, int], ...]
    answers: tuple[Record, ...]


def _name(data: bytes, r: Reader) -> str:
    labels: list[str] = []
    pos = r.pos
    jumped = False
    for _ in range(_MAX_POINTERS + 128):
        if pos >= len(data):
            raise Truncated("name runs off the end")
        length = data[pos]
        if length == 0:
            if not jumped:
                r.pos = pos + 1
            return ".".join(labels)
        if (length & 0xC0) == 0xC0:
            if pos + 1 >= len(data):
                raise Truncated("cut pointer")
            if not jumped:
                r.pos = pos + 2
            jumped = True
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise Truncated("forward pointer")
            pos = target
            continue
        if length > 63 or pos + 1 + length > len(data):
            raise Truncated("bad label")
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    raise Truncated("name too long")


def _txt(rdata: bytes) -> tuple[str, ...]:
    out: list[str] = []
    r = Reader(rdata)
    while r.remaining:
        out.append(r.take(r.u8()).decode("utf-8", "replace"))
    return tuple(out)


def parse_message(data: bytes) -> Message | None:
    """Parse a DNS message (UDP form, no TCP length prefix).

    Returns None for anything that is not a well-formed message. Never raises.
    """
    try:
        return _parse(data)
    except Truncated:
        return None


def _parse(data: bytes) -> Message:
    r = Reader(data)
    txid, flags, qd, an, _ns, _ar = (r.u16be() for _ in range(6))
    if qd > _MAX_RECORDS or an > _MAX_RECORDS:
        raise Truncated("too many records")
    questions = []
    for _ in range(qd):
        qname = _name(data, r)
        questions.append((qname, r.u16be(), r.u16be()))
    answers = []
    for _ in range(an):
        name = _name(data, r)
        rtype, rclass, ttl, rdlen = r.u16be(), r.u16be(), r.u32be(), r.u16be()
        start = r.pos
        rdata = r.take(rdlen)
        text: tuple[str, ...] = ()
        if rtype == TYPE_TXT:
            text = _txt(rdata)
        elif rtype == TYPE_PTR:
            text = (_name(data, Reader(data, start)),)
        answers.append(Record(name, rtype, rclass & 0x7FFF, ttl, rdata, text))
    return Message(
        txid=txid,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        authoritative=bool(flags & 0x0400),
        rcode=flags & 0xF,
        questions=tuple(questions),
        answers=tuple(answers),
    )
