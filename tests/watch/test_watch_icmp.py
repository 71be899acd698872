"""ICMP sensor (mamori watch, issue #5): pure parsers, real pings, and the unprivileged case.

The raw socket sees every ICMP message of the host (other tests' pings too), so each real test
gives the sensor the one address it pings and counts only what was sent to it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.model.watch import Event, EventType
from mamori.watch.decoys import DecoyLimits
from mamori.watch.icmp import IcmpSensor, parse_icmp4, parse_icmp6

ROOT = Path(__file__).resolve().parents[2]


def _ipv4(src: str, dst: str, payload: bytes, proto: int = 1) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + payload


def test_parse_echo_request() -> None:
    icmp = struct.pack(">BBHHH", 8, 0, 0, 0x1234, 7) + b"abcdefgh" * 7
    packet = parse_icmp4(_ipv4("192.0.2.7", "127.0.120.5", icmp))
    assert packet is not None and packet.is_echo_request
    assert (packet.src, packet.dst, packet.type, packet.code) == ("192.0.2.7", "127.0.120.5",
                                                                  8, 0)
    assert (packet.ident, packet.seq, packet.size) == (0x1234, 7, 64)


def test_parse_port_unreachable_quotes_the_datagram() -> None:
    inner = _ipv4("127.0.120.5", "192.0.2.9", struct.pack(">HHHH", 5353, 161, 8, 0), proto=17)
    icmp = struct.pack(">BBHI", 3, 3, 0, 0) + inner
    packet = parse_icmp4(_ipv4("192.0.2.9", "127.0.120.5", icmp))
    assert packet is not None and not packet.is_echo_request
    assert (packet.type, packet.code) == (3, 3)
    assert packet.inner == ("udp", "192.0.2.9", 161)


def test_parse_rejects_non_icmp_and_short() -> None:
    assert parse_icmp4(b"") is None
    assert parse_icmp4(_ipv4("192.0.2.1", "192.0.2.2", b"\x00" * 20, proto=6)) is None
    assert parse_icmp4(_ipv4("192.0.2.1", "192.0.2.2", b"\x08\x00")) is None
    assert parse_icmp6(b"\x80", "::1", "::1") is None
    v6 = parse_icmp6(struct.pack(">BBHHH", 128, 0, 0, 9, 1), "2001:db8::1", "::1")
    assert v6 is not None and v6.is_echo_request and (v6.ident, v6.seq) == (9, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_never_raise(data: bytes) -> None:
    parse_icmp4(data)
    parse_icmp4(b"\x45" + data)
    parse_icmp6(data, "::1", "::1")


def _ping(*args: str) -> None:
    ping = shutil.which("ping")
    if ping is None:
        pytest.skip("ping not installed (scripts/install-test-deps: iputils-ping)")
    run = subprocess.run([ping, "-n", "-q", "-i", "0.2", "-W", "2", *args],
                         capture_output=True, text=True, timeout=20)
    assert run.returncode == 0, run.stdout + run.stderr


async def _sense(addresses: list[str], action: list[str] | None, *,
                 limits: DecoyLimits | None = None, udp_to: tuple[str, str, int] | None = None,
                 settle: float = 0.3) -> tuple[bool, list[Event], IcmpSensor]:
    events: list[Event] = []
    sensor = IcmpSensor(events.append, addresses=addresses, limits=limits)
    ok = await sensor.start()
    try:
        if ok and action is not None:
            await asyncio.to_thread(_ping, *action)
        if ok and udp_to is not None:
            src, dst, port = udp_to
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((src, 0))
                sock.sendto(b"probe", (dst, port))
        await asyncio.sleep(settle)
    finally:
        await sensor.close()
    return ok, events, sensor


@pytest.mark.root
def test_real_ping_recorded_as_echo() -> None:
    ok, events, _ = asyncio.run(_sense(["127.0.120.5"], ["-c", "3", "127.0.120.5"]))
    assert ok
    echoes = [e for e in events if e.type == EventType.ICMP_ECHO]
    assert len(echoes) == 3 and len(events) == 3  # the replies (to 127.0.0.1) are not ours
    assert {e.src for e in echoes} == {"127.0.0.1"} and {e.dst for e in echoes} == {
        "127.0.120.5"}
    assert [e.fields["seq"] for e in echoes] == ["1", "2", "3"]
    assert len({e.fields["id"] for e in echoes}) == 1
    assert all(e.proto == "icmp" and e.source == "icmp" for e in echoes)


@pytest.mark.root
def test_real_ping_from_chosen_source() -> None:
    ok, events, _ = asyncio.run(_sense(["127.0.120.6"], ["-c", "2", "-I", "127.0.121.66",
                                                          "127.0.120.6"]))
    assert ok and [e.src for e in events] == ["127.0.121.66", "127.0.121.66"]


@pytest.mark.root
def test_real_ping6_recorded() -> None:
    ok, events, _ = asyncio.run(_sense(["::1"], ["-6", "-c", "2", "::1"]))
    assert ok
    echoes = [e for e in events if e.type == EventType.ICMP_ECHO]
    ours = {e.fields["id"] for e in echoes}
    # ::1 is shared with the rest of the machine: count the echoes of one ping run
    assert any(sorted(e.fields["seq"] for e in echoes if e.fields["id"] == i) == ["1", "2"]
               for i in ours)
    assert all(e.src == "::1" and e.dst == "::1" and e.fields["version"] == "6" for e in echoes)
    assert not [e for e in events if e.fields["icmp_type"] == "129"]  # echo replies skipped


@pytest.mark.root
def test_port_unreachable_is_icmp_other() -> None:
    # a datagram from 127.0.121.70 to a closed port: the kernel answers port unreachable
    ok, events, _ = asyncio.run(_sense(["127.0.121.70"], None,
                                       udp_to=("127.0.121.70", "127.0.120.70", 9)))
    assert ok
    (event,) = events
    assert event.type == EventType.ICMP_OTHER and event.src == "127.0.120.70"
    assert (event.fields["icmp_type"], event.fields["icmp_code"]) == ("3", "3")
    assert (event.fields["orig_proto"], event.fields["orig_dst"],
            event.fields["orig_dst_port"]) == ("udp", "127.0.120.70", "9")


@pytest.mark.root
def test_ping_flood_is_rate_limited() -> None:
    limits = DecoyLimits(events_per_second=1, event_burst=5, limit_report_interval=60)
    ok, events, sensor = asyncio.run(_sense(
        ["127.0.120.71"], ["-c", "40", "-i", "0.01", "127.0.120.71"], limits=limits))
    assert ok
    echoes = [e for e in events if e.type == EventType.ICMP_ECHO]
    assert 5 <= len(echoes) <= 7 and sensor.suppressed == 40 - len(echoes)
    (report,) = [e for e in events if e.type == EventType.SENSOR_LIMIT]  # flushed at close
    assert report.src == "127.0.0.1" and report.fields["suppressed_events"] == str(
        sensor.suppressed)


_UNPRIVILEGED = """
import asyncio, json, os
from mamori.watch.icmp import IcmpSensor
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # drop root before opening anything
async def main():
    events = []
    sensor = IcmpSensor(events.append)
    ok = await sensor.start()
    await sensor.close()
    print(json.dumps({"ok": ok, "uid": os.getuid(),
                      "events": [[str(e.type), dict(e.fields)] for e in events]}))
asyncio.run(main())
"""


@pytest.mark.root
def test_unprivileged_reports_unavailable() -> None:
    run = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], capture_output=True, text=True,
                         timeout=30, cwd="/tmp")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] is False and result["uid"] == 65534
    assert [kind for kind, _ in result["events"]] == ["sensor.error", "sensor.error"]
    for _, fields in result["events"]:
        assert "not permitted" in fields["reason"] and "CAP_NET_RAW" in fields["reason"]
    assert {f["family"] for _, f in result["events"]} == {"ipv4", "ipv6"}


def test_addresses_choose_families() -> None:
    assert IcmpSensor(lambda e: None, addresses=["127.0.0.1"]).families == (4,)
    assert IcmpSensor(lambda e: None, addresses=["::1", "127.0.0.1"]).families == (4, 6)
    assert IcmpSensor(lambda e: None).families == (4, 6)
    wildcard = IcmpSensor(lambda e: None, addresses=["0.0.0.0", "127.0.0.1"])
    assert wildcard.families == (4,) and wildcard.addresses == frozenset()
    with pytest.raises(ValueError):
        IcmpSensor(lambda e: None, addresses=["not-an-address"])
