"""Parsers added for the resolver and amplifier checks: real bytes, then random and
truncated bytes (they return None or a value, never raise)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import fixtures_dns as fd
from mamori.protocols import dns, snmp
from mamori.protocols import ntp_control as ntpc
from mamori.protocols.dns_edns import (
    answer_addresses,
    build_edns_query,
    header_flags,
    question_matches,
)
from mamori.protocols.snmp_bulk import build_getbulk


def test_readvar_round_trip() -> None:
    request = ntpc.build_readvar(sequence=77)
    assert len(request) == 12
    (reply,) = fd.readvar_replies(request)
    frag = ntpc.parse_control(reply)
    assert frag is not None and frag.sequence == 77 and frag.opcode == ntpc.OP_READVAR
    variables = ntpc.parse_variables(frag.data)
    assert variables["version"].startswith("ntpd 4.2.8p15")
    assert variables["stratum"] == "2" and variables["system"] == "Linux/5.10.0-28-amd64"


def test_monlist_round_trip() -> None:
    request = ntpc.build_monlist()
    assert len(request) == 48
    replies = fd.ntp_responder(monlist=True, mode6=False, clients=8)(request, ("127.0.0.1", 1))
    parsed = [ntpc.parse_private(r) for r in replies]
    assert all(p is not None for p in parsed)
    items = [i for p in parsed if p is not None for i in p.items]
    assert len(items) == 8 and ntpc.monitor_item_address(items[0]) == "198.18.0.1"
    assert parsed[0] is not None and parsed[0].more and parsed[-1] is not None \
        and not parsed[-1].more
    assert ntpc.parse_private(request) is None  # a request is no response


def test_edns_query_and_flags() -> None:
    query = build_edns_query(".", 2, txid=9, dnssec_ok=True)
    assert len(query) == 28 and query[-11:-8] == b"\x00\x00\x29"
    flags = header_flags(query)
    assert flags is not None and flags.recursion_desired and not flags.recursion_available
    reply = fd.authoritative_reply(dns.build_query(fd.OUTSIDE_NAME, 1, txid=3),
                                   fd.zone(fd.AUTH_HOST))
    assert reply is not None
    msg = dns.parse_message(reply)
    assert msg is not None and question_matches(msg, fd.OUTSIDE_NAME, 1)
    assert answer_addresses(msg, fd.OUTSIDE_NAME) == (fd.OUTSIDE_ADDRESS,)
    assert answer_addresses(msg, "other.test") == ()


def test_getbulk_is_well_formed_ber() -> None:
    request = build_getbulk(community="public", max_repetitions=50, request_id=1234)
    assert request[0] == 0x30 and b"\xa5" in request and b"public" in request
    # Turned into a Response PDU, our own parser reads it back.
    as_response = request.replace(b"\xa5", b"\xa2", 1)
    parsed = snmp.parse_response(as_response)
    assert parsed is not None and parsed.request_id == 1234 and parsed.varbinds


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    ntpc.parse_control(data)
    ntpc.parse_private(data)
    ntpc.parse_variables(data)
    header_flags(data)
    msg = dns.parse_message(data)
    if msg is not None:
        answer_addresses(msg, "x.test")
        question_matches(msg, "x.test", 1)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_parsers_never_raise_on_truncated_replies(data: st.DataObject) -> None:
    samples = [
        *fd.readvar_replies(ntpc.build_readvar()),
        *fd.ntp_responder(monlist=True, mode6=False, clients=12)(ntpc.build_monlist(),
                                                                 ("127.0.0.1", 1)),
        fd.authoritative_reply(build_edns_query(".", 2, txid=1), fd.zone(fd.AUTH_HOST)) or b"",
    ]
    sample = data.draw(st.sampled_from(samples))
    cut = data.draw(st.integers(min_value=0, max_value=len(sample)))
    flip = data.draw(st.integers(min_value=0, max_value=255))
    for blob in (sample[:cut], sample[:cut] + bytes([flip]) + sample[cut + 1 :]):
        ntpc.parse_control(blob)
        ntpc.parse_private(blob)
        msg = dns.parse_message(blob)
        if msg is not None:
            answer_addresses(msg, ".")
