"""DNS additions the exposure checks need on top of ``dns``: an EDNS(0) OPT record (RFC 6891,
so a server may send answers larger than 512 bytes), the header flags ``dns.Message`` does not
keep (RA, TC), and the addresses of A/AAAA answers. Pure; never raises on untrusted bytes."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mamori.protocols.dns import Message, build_query

TYPE_AAAA, TYPE_NS, TYPE_CNAME, TYPE_ANY = 28, 2, 5, 255
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "TXT": 16, "AAAA": 28, "ANY": 255}


def build_edns_query(name: str, qtype: int, *, txid: int, bufsize: int = 4096,
                     dnssec_ok: bool = False, recursion: bool = True) -> bytes:
    """A one-question query with an OPT pseudo-record advertising ``bufsize`` bytes (and
    the DO bit when ``dnssec_ok``). Raises ValueError for a name DNS cannot encode."""
    base = build_query(name, qtype, txid=txid, recursion=recursion)
    # ARCOUNT is the last header field (bytes 10-11): one additional record, the OPT.
    header = base[:10] + struct.pack(">H", 1)
    ttl = 0x8000 if dnssec_ok else 0  # extended rcode 0, version 0, DO flag
    opt = b"\x00" + struct.pack(">HHIH", 41, bufsize, ttl, 0)
    return header + base[12:] + opt


@dataclass(frozen=True, slots=True)
class Flags:
    recursion_desired: bool
    recursion_available: bool
    truncated: bool


def header_flags(data: bytes) -> Flags | None:
    """RD, RA and TC from a DNS header; None when there is no header."""
    if len(data) < 12:
        return None
    hi, lo = data[2], data[3]
    return Flags(bool(hi & 0x01), bool(lo & 0x80), bool(hi & 0x02))


def _same_name(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def answer_addresses(msg: Message, name: str) -> tuple[str, ...]:
    """Addresses of the A/AAAA answers for ``name``, following CNAMEs inside the answer
    section (at most 8 links). Records for other names are ignored: a server stuffing its
    answer with unrelated records proves nothing about ``name``."""
    wanted = {name.rstrip(".").lower()}
    for _ in range(8):
        before = len(wanted)
        for rec in msg.answers:
            if rec.rtype == TYPE_CNAME and rec.name.rstrip(".").lower() in wanted and rec.text:
                wanted.add(rec.text[0].rstrip(".").lower())
        if len(wanted) == before:
            break
    out: list[str] = []
    for rec in msg.answers:
        if rec.name.rstrip(".").lower() not in wanted:
            continue
        if rec.rtype == 1 and len(rec.data) == 4:
            out.append(str(ipaddress.IPv4Address(rec.data)))
        elif rec.rtype == TYPE_AAAA and len(rec.data) == 16:
            out.append(str(ipaddress.IPv6Address(rec.data)))
    return tuple(out)


def question_matches(msg: Message, name: str, qtype: int) -> bool:
    """Does the reply echo exactly our one question (as real servers do)?"""
    if len(msg.questions) != 1:
        return False
    qname, got_type, _ = msg.questions[0]
    return _same_name(qname, name) and got_type == qtype
