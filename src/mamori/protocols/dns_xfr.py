"""DNS zone transfers (AXFR, RFC 5936; IXFR, RFC 1995) and the lookups that find zone names.

A transfer over TCP is a run of framed messages whose answers start with the zone's SOA and
end with it again. This module builds the requests and reads each message as a list of
(owner, type) pairs plus the names records point to, without keeping record data: evidence
needs the count and a few names, never the zone. Pure and bounded (at most ``_MAX_RECORDS``
per message, names through ``dns``'s pointer-checked reader); never raises on bad input.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated
from mamori.protocols.dns import CLASS_CH, CLASS_IN, TYPE_TXT, _name, encode_name

TYPE_PTR, TYPE_SOA, TYPE_IXFR, TYPE_AXFR = 12, 6, 251, 252
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
              28: "AAAA", 33: "SRV"}
_MAX_RECORDS = 4096
_TARGET_TYPES = frozenset({2, 5, 12, 15})  # NS, CNAME, PTR, MX: rdata holds a name


def build_axfr(zone: str, txid: int) -> bytes:
    header = struct.pack(">HHHHHH", txid, 0, 1, 0, 0, 0)
    return header + encode_name(zone) + struct.pack(">HH", TYPE_AXFR, CLASS_IN)


def build_ixfr(zone: str, txid: int, serial: int = 0) -> bytes:
    """IXFR with our "current" SOA serial in the authority section (0: send everything)."""
    header = struct.pack(">HHHHHH", txid, 0, 1, 0, 1, 0)
    soa = (encode_name(".") * 2 + struct.pack(">IIIII", serial, 0, 0, 0, 0))
    return (header + encode_name(zone) + struct.pack(">HH", TYPE_IXFR, CLASS_IN)
            + encode_name(zone) + struct.pack(">HHIH", TYPE_SOA, CLASS_IN, 0, len(soa)) + soa)


def build_lookup(name: str, qtype: int, txid: int, *, chaos: bool = False) -> bytes:
    """A non-recursive query (PTR, SOA, or a CHAOS TXT such as hostname.bind)."""
    header = struct.pack(">HHHHHH", txid, 0, 1, 0, 0, 0)
    cls = CLASS_CH if chaos else CLASS_IN
    return header + encode_name(name) + struct.pack(">HH", qtype, cls)


def reverse_name(address: str) -> str:
    """in-addr.arpa name of an IPv4 address, ip6.arpa of an IPv6 one."""
    return ipaddress.ip_address(address).reverse_pointer


@dataclass(frozen=True, slots=True)
class Rec:
    owner: str
    rtype: int
    section: str  # answer / authority / additional
    target: str = ""  # NS/CNAME/PTR/MX target, SOA MNAME, first TXT string


@dataclass(frozen=True, slots=True)
class Reply:
    txid: int
    rcode: int
    authoritative: bool
    records: tuple[Rec, ...]


def parse_reply(data: bytes) -> Reply | None:
    """One DNS message (no TCP prefix) with every section read; None if malformed."""
    try:
        return _parse(data)
    except Truncated:
        return None


def _target(data: bytes, rtype: int, start: int, rdata: bytes) -> str:
    if rtype in _TARGET_TYPES or rtype == TYPE_SOA:
        return _name(data, Reader(data, start + (2 if rtype == 15 else 0)))
    if rtype == TYPE_TXT and rdata:
        return rdata[1:1 + rdata[0]].decode("utf-8", "replace")
    return ""


def _parse(data: bytes) -> Reply:
    r = Reader(data)
    txid, flags, qd, an, ns, ar = (r.u16be() for _ in range(6))
    if not flags & 0x8000 or qd > 4 or an + ns + ar > _MAX_RECORDS:
        raise Truncated("not a reply, or too many records")
    for _ in range(qd):
        _name(data, r)
        r.skip(4)
    records: list[Rec] = []
    for i in range(an + ns + ar):
        owner = _name(data, r)
        rtype, _cls, _ttl, rdlen = r.u16be(), r.u16be(), r.u32be(), r.u16be()
        start = r.pos
        rdata = r.take(rdlen)
        section = "answer" if i < an else "authority" if i < an + ns else "additional"
        records.append(Rec(owner, rtype, section, _target(data, rtype, start, rdata)))
    return Reply(txid, flags & 0xF, bool(flags & 0x0400), tuple(records))


def split_tcp(buf: bytes) -> tuple[list[bytes], int]:
    """Whole length-prefixed messages at the start of ``buf`` and the bytes they use."""
    out: list[bytes] = []
    pos = 0
    while pos + 2 <= len(buf):
        length = int.from_bytes(buf[pos:pos + 2], "big")
        if pos + 2 + length > len(buf):
            break
        out.append(buf[pos + 2:pos + 2 + length])
        pos += 2 + length
    return out, pos


@dataclass(frozen=True, slots=True)
class Transfer:
    rcode: int  # of the first message
    messages: int
    records: int  # answer records over all messages
    names: tuple[str, ...]  # distinct owner names, first few
    types: tuple[str, ...]  # distinct record types seen
    complete: bool  # the closing SOA arrived
    soa_serial_zone: str  # owner of the opening SOA


def read_transfer(buf: bytes, txid: int, keep_names: int = 8) -> Transfer | None:
    """Sum up the transfer messages in ``buf`` (TCP framing); None when the first message is
    not a reply to ``txid``."""
    messages, _ = split_tcp(buf)
    replies = [parse_reply(m) for m in messages]
    if not replies or replies[0] is None or replies[0].txid != txid:
        return None
    first = replies[0]
    names: list[str] = []
    types: list[str] = []
    records = soas = 0
    zone = ""
    for reply in replies:
        if reply is None or reply.txid != txid or reply.rcode:
            break
        for rec in reply.records:
            if rec.section != "answer":
                continue
            records += 1
            if rec.rtype == TYPE_SOA:
                soas += 1
                zone = zone or rec.owner
            if rec.owner not in names and len(names) < keep_names:
                names.append(rec.owner)
            label = TYPE_NAMES.get(rec.rtype, str(rec.rtype))
            if label not in types and len(types) < 16:
                types.append(label)
    return Transfer(first.rcode, len(messages), records, tuple(names), tuple(types),
                    soas >= 2, zone)


def transfer_done(txid: int) -> Callable[[bytes], bool]:
    """A predicate for a stream reader: true once the closing SOA or an error arrived, or
    the first whole message is no reply to ``txid``."""
    def done(buf: bytes) -> bool:
        t = read_transfer(buf, txid, keep_names=0)
        if t is None:
            return bool(split_tcp(buf)[0])
        return t.complete or t.rcode != 0
    return done

