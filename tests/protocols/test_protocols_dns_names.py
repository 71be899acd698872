"""DNS names in replies: compression pointers as real servers write them, and the hostile ones.

The two replies are captured from the real daemons of fixtures_dns_cname (query id 0x1234,
"A www.bind.test" asked of unbound, "A www.unbound.test" asked of bind9, both recursing): the
CNAME's target is "host" plus a pointer to the owner's zone, and the A record's owner is a
pointer to that target.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.protocols import dns
from mamori.protocols.dns_edns import TYPE_CNAME, answer_addresses

UNBOUND_REPLY = bytes.fromhex(
    "123481800001000200000000037777770462696e6404746573740000010001c00c000500010000012c0007"
    "04686f7374c010c02b000100010000012c00047f004a15"
)
BIND_REPLY = bytes.fromhex(
    "1234818000010002000000000377777707756e626f756e6404746573740000010001c00c00050001000001"
    "2c000704686f7374c010c02e000100010000012c00047f004a16"
)
CNAME_POINTER_AT = 48  # in UNBOUND_REPLY: "04 host" at 43, then the pointer c010 at 48


def test_captured_cname_chains_resolve_to_the_address() -> None:
    for raw, name, target, address in (
        (UNBOUND_REPLY, "www.bind.test", "host.bind.test", "127.0.74.21"),
        (BIND_REPLY, "www.unbound.test", "host.unbound.test", "127.0.74.22"),
    ):
        msg = dns.parse_message(raw)
        assert msg is not None
        cname, a = msg.answers
        assert cname.rtype == TYPE_CNAME and cname.text == (target,)
        assert a.name == target and a.rtype == dns.TYPE_A
        assert answer_addresses(msg, name) == (address,)


def _with_pointer(target: int) -> bytes:
    raw = bytearray(UNBOUND_REPLY)
    raw[CNAME_POINTER_AT : CNAME_POINTER_AT + 2] = struct.pack(">H", 0xC000 | target)
    return bytes(raw)


def test_pointer_loops_and_out_of_range_pointers_are_refused() -> None:
    assert UNBOUND_REPLY[CNAME_POINTER_AT] == 0xC0
    assert dns.parse_message(_with_pointer(CNAME_POINTER_AT)) is None  # to itself
    assert dns.parse_message(_with_pointer(0x3FFF)) is None  # past the end
    assert dns.parse_message(_with_pointer(len(UNBOUND_REPLY) - 1)) is None  # forward
    # backwards to its own "host" label: host.host.host… until the bound stops it
    assert dns.parse_message(_with_pointer(43)) is None


def _pointer_chain(links: int) -> bytes:
    """A reply whose second answer's owner is a chain of ``links`` backward pointers (kept
    in the first answer's opaque rdata) ending at the root name of the question."""
    head = struct.pack(">HHHHHH", 1, 0x8180, 1, 2, 0, 0)
    question = b"\x00" + struct.pack(">HH", 1, 1)  # the root name at offset 12
    rdata_at = 12 + len(question) + 1 + 10
    pointers = [12] + [rdata_at + 2 * (i - 1) for i in range(1, links)]
    rdata = b"".join(struct.pack(">H", 0xC000 | p) for p in pointers)
    first = b"\x00" + struct.pack(">HHIH", 99, 1, 0, len(rdata)) + rdata
    last = rdata_at + 2 * (links - 1)
    second = struct.pack(">H", 0xC000 | last) + struct.pack(">HHIH", 1, 1, 0, 4) + bytes(4)
    return head + question + first + second


def test_pointer_chains_are_bounded() -> None:
    assert dns.parse_message(_pointer_chain(10)) is not None
    assert dns.parse_message(_pointer_chain(40)) is None


def test_names_over_255_bytes_are_refused() -> None:
    long_target = b"".join(bytes([63]) + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 bytes
    raw = bytearray(UNBOUND_REPLY[:43])
    raw[41:43] = struct.pack(">H", len(long_target))
    raw[6:8] = struct.pack(">H", 1)  # one answer: the CNAME only
    assert dns.parse_message(bytes(raw) + long_target) is None
    fits = b"".join(bytes([63]) + b"a" * 63 for _ in range(3)) + b"\x3d" + b"a" * 61 + b"\x00"
    raw[41:43] = struct.pack(">H", len(fits))
    msg = dns.parse_message(bytes(raw) + fits)
    assert msg is not None and len(msg.answers[0].text[0]) == 253


@settings(max_examples=300, deadline=200)
@given(st.lists(st.tuples(st.integers(0, len(UNBOUND_REPLY) - 1), st.integers(0, 255)),
                max_size=6),
       st.integers(12, len(UNBOUND_REPLY)))
def test_mangled_replies_never_raise(edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(UNBOUND_REPLY)
    for pos, value in edits:
        raw[pos] = value
    msg = dns.parse_message(bytes(raw[:cut]))
    if msg is not None:
        answer_addresses(msg, "www.bind.test")
