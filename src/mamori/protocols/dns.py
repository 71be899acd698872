"""DNS messages (RFC 1035): build queries, parse replies; also TCP framing and mDNS queries."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

TYPE_A, TYPE_PTR, TYPE_TXT = 1, 12, 16
TYPE_NS, TYPE_CNAME = 2, 5
CLASS_IN, CLASS_CH = 1, 3
_MAX_RECORDS = 64
_MAX_POINTERS = 16
_MAX_NAME = 255  # RFC 1035 3.1: a name is at most 255 bytes in wire form
# Record types whose rdata is one domain name, which servers compress (RFC 1035 4.1.4).
_NAME_TYPES = frozenset({TYPE_NS, TYPE_CNAME, TYPE_PTR})


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
    text: tuple[str, ...] = ()  # TXT strings, or a PTR/CNAME/NS target as one item


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
    """The (possibly compressed) name at ``r.pos``; ``r`` moves past it.

    Bounded: every pointer must point strictly backwards (so no loop and nothing out of
    range), at most ``_MAX_POINTERS`` of them, and at most 255 bytes of name. Raises
    Truncated for anything else."""
    labels: list[str] = []
    pos = r.pos
    jumps = 0
    size = 1
    while True:
        if pos >= len(data):
            raise Truncated("name runs off the end")
        length = data[pos]
        if length == 0:
            if not jumps:
                r.pos = pos + 1
            return ".".join(labels)
        if (length & 0xC0) == 0xC0:
            if pos + 1 >= len(data):
                raise Truncated("cut pointer")
            if not jumps:
                r.pos = pos + 2
            jumps += 1
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos or jumps > _MAX_POINTERS:
                raise Truncated("pointer forward, to itself or too many")
            pos = target
            continue
        if length > 63 or pos + 1 + length > len(data):
            raise Truncated("bad label")
        size += 1 + length
        if size > _MAX_NAME:
            raise Truncated("name too long")
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length


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
        elif rtype in _NAME_TYPES:
            # The name may point anywhere before it in the message: decode against it all.
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
