"""Half-open knocks (mamori watch, issue #5): pure TCP header parsers, the SYN/NULL/FIN/XMAS
classifier, real nmap scans against real decoys, and the real `mamori watch` process.

Everything listens on 127.0.125.x; each nmap run gets its own source address (-S ... -e lo),
and the raw socket sees every TCP segment of the host, so tests count only what was sent
from their own sources to their own decoys.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.watch.decoys import DecoyLimits, DecoyServer, DecoySpec
from mamori.watch.detect import DetectConfig, Detectors
from mamori.watch.rawtcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpKnockSensor,
    TcpSegment,
    classify,
    flag_names,
    parse_tcp4,
    parse_tcp6,
)
from mamori.watch.sensor import Sensor
from mamori.watch.settings import WatchSettings

HOST = "127.0.125.1"
OTHER = "127.0.125.9"  # an address with no decoy
PORTS = [23201, 23202, 23203, 23204, 23205]
EXCLUDE = ["--exclude-ports", "2024"]
FAST = ["--max-retries", "0", "--initial-rtt-timeout", "100ms", "--max-rtt-timeout", "200ms"]
ROOT = Path(__file__).resolve().parents[2]


def _packet(flags: int, *, src: str = "10.0.0.1", dst: str = HOST, sport: int = 40000,
            dport: int = 2323, options: bytes = b"", proto: int = 6, frag: int = 0) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1024, 0, 0)
    ihl = 5 + len(options) // 4
    header = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(tcp), 7,
                         frag, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + options + tcp


# -- pure parsing and classification -------------------------------------------------------


@pytest.mark.parametrize(("flags", "technique", "label"), [
    (SYN, "syn", "SYN"),
    (SYN | 0x40 | 0x80, "syn", "SYN ECE CWR"),  # ECN setup is still a SYN
    (0, "null", "NULL"),
    (FIN, "fin", "FIN"),
    (FIN | PSH | URG, "xmas", "FIN PSH URG"),
    (SYN | FIN, "other", "FIN SYN"),
    (PSH, "other", "PSH"),
    (SYN | ACK, None, "SYN ACK"),
    (ACK, None, "ACK"),
    (RST, None, "RST"),
    (FIN | ACK, None, "FIN ACK"),  # an ordinary close (and the Maimon scan): not counted
])
def test_classify_flags(flags: int, technique: str | None, label: str) -> None:
    segment = parse_tcp4(_packet(flags))
    assert segment == TcpSegment(4, "10.0.0.1", HOST, 40000, 2323, flags)
    assert classify(segment.flags) == technique
    assert flag_names(flags) == label


def test_parse_ipv4_with_options() -> None:
    # 12 bytes of options (a record-route): the TCP header starts at 32, not 20
    options = bytes([7, 11, 4]) + bytes(8) + b"\x00"
    segment = parse_tcp4(_packet(FIN | PSH | URG, src="192.0.2.7", dport=445, sport=61000,
                                 options=options))
    assert segment is not None
    assert (segment.src, segment.sport, segment.dport, classify(segment.flags)) == (
        "192.0.2.7", 61000, 445, "xmas")


def test_parse_rejects_what_is_not_a_first_tcp_fragment() -> None:
    good = _packet(SYN)
    assert parse_tcp4(_packet(SYN, proto=17)) is None  # UDP
    assert parse_tcp4(_packet(SYN, frag=185)) is None  # a later fragment: no TCP header
    assert parse_tcp4(_packet(SYN, frag=0x2000)) is not None  # more fragments follow: first
    assert parse_tcp4(good[:33]) is None  # cut before the flags byte
    assert parse_tcp4(good[:34]) is not None
    assert parse_tcp4(b"\x60" + good[1:]) is None  # says IPv6
    assert parse_tcp4(b"\x44" + good[1:]) is None  # IHL below 20 bytes
    assert parse_tcp4(b"\x4f" + good[1:]) is None  # IHL 60 bytes: longer than the packet
    assert parse_tcp4(b"") is None
    tcp6 = struct.pack(">HHIIBBHHH", 5555, 8081, 1, 0, 0x50, 0, 0, 0, 0)
    assert parse_tcp6(tcp6, "::1", "::1") == TcpSegment(6, "::1", "::1", 5555, 8081, 0)
    assert parse_tcp6(tcp6[:13], "::1", "::1") is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 0x0F))
def test_parsers_never_raise(data: bytes, ihl: int) -> None:
    for packet in (data, bytes([0x40 | ihl]) + data[1:9] + b"\x06" + data[10:]):
        segment = parse_tcp4(packet)
        if segment is not None:
            assert 0 <= segment.flags <= 0xFF and isinstance(classify(segment.flags), str | None)
    parse_tcp6(data, "::1", "::1")


# -- the sensor's bookkeeping (segments handed in, sockets real) ------------------------------


def _seg(flags: int, *, src: str = "127.0.125.40", sport: int = 40001, dport: int = 23211,
         dst: str = HOST) -> TcpSegment:
    return TcpSegment(4, src, dst, sport, dport, flags)


async def _with_sensor(body: Callable[[TcpKnockSensor, list[Event]], Any], **kwargs: Any) -> \
        tuple[TcpKnockSensor, list[Event]]:
    events: list[Event] = []
    sensor = TcpKnockSensor(events.append, [(HOST, 23211)], **kwargs)
    try:
        await body(sensor, events)
    finally:
        await sensor.close()
    return sensor, events


@pytest.mark.root
def test_syn_bookkeeping_completed_reset_and_silent() -> None:
    async def body(sensor: TcpKnockSensor, events: list[Event]) -> None:
        assert await sensor.start()
        sensor.see(_seg(SYN, sport=1))  # completes: the decoy's business
        sensor.see(_seg(ACK, sport=1))
        sensor.see(_seg(SYN, sport=2))  # reset by the visitor: a SYN scan
        sensor.see(_seg(RST, sport=2))
        assert [e.src_port for e in events] == [2]
        sensor.see(_seg(SYN, sport=3, dport=23212))  # not held here: see() trusts its caller
        sensor.see(_seg(SYN, src="127.0.125.41", sport=4))  # nothing follows: reported later
        assert len(events) == 1
        await asyncio.sleep(sensor.settle * 2)
        assert [e.src_port for e in events] == [2, 3, 4]

    sensor, events = asyncio.run(_with_sensor(body, settle=0.2))
    assert sensor.completed == 1 and sensor.probes == 3
    assert all(e.type is EventType.TCP_PROBE and e.fields["technique"] == "syn"
               and e.fields["flags"] == "SYN" and e.proto == "tcp" for e in events)


@pytest.mark.root
def test_repeats_within_the_window_are_one_event_and_rates_are_limited() -> None:
    async def body(sensor: TcpKnockSensor, events: list[Event]) -> None:
        assert await sensor.start()
        for sport in range(3):  # a scanner retransmitting its FIN probe
            sensor.see(_seg(FIN, sport=50000 + sport))
        sensor.see(_seg(0))  # another technique on the same port is its own event
        sensor.see(_seg(FIN | PSH | URG, dport=23211))
        for n in range(30):  # many ports from one source: the shared rate limit bites
            sensor.see(_seg(0, src="127.0.125.42", dport=30000 + n))

    limits = DecoyLimits(events_per_second=1, event_burst=5, limit_report_interval=60)
    sensor, events = asyncio.run(_with_sensor(body, limits=limits))
    probes = [e for e in events if e.type is EventType.TCP_PROBE]
    assert [e.fields["flags"] for e in probes[:3]] == ["FIN", "NULL", "XMAS"]
    assert sensor.repeated == 2
    flood = [e for e in probes if e.src == "127.0.125.42"]
    assert 5 <= len(flood) <= 6 and sensor.suppressed == 30 - len(flood)
    (report,) = [e for e in events if e.type is EventType.SENSOR_LIMIT]
    assert report.src == "127.0.125.42"


def test_targets_choose_families_and_wildcards() -> None:
    sensor = TcpKnockSensor(lambda e: None, [(HOST, 2323), ("0.0.0.0", 8081)])
    assert sensor.families == (4,) and sensor.any_address == frozenset({8081})
    assert sensor.targets == frozenset({(HOST, 2323)})
    assert TcpKnockSensor(lambda e: None, [("::1", 22), (HOST, 23)]).families == (4, 6)
    with pytest.raises(ValueError):
        TcpKnockSensor(lambda e: None, [("not-an-address", 1)])


# -- the detector: probes and connections counted together ---------------------------------


def _ev(kind: EventType, port: int, seconds: float, technique: str = "syn") -> Event:
    fields = {"technique": technique, "flags": technique.upper()} \
        if kind is EventType.TCP_PROBE else {}
    return Event(time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds), type=kind,
                 source="t", src="198.51.100.4", dst=HOST, dst_port=port, proto="tcp",
                 fields=MappingProxyType(fields))


def test_detector_counts_probes_and_connects_once_per_port() -> None:
    # SYN scan: probes only
    out = Detectors(DetectConfig(scan_ports=5)).feed_all(
        _ev(EventType.TCP_PROBE, p, i) for i, p in enumerate(PORTS))
    assert [(e.fields["technique"], e.fields["count"], e.danger) for e in out] == [
        ("syn", "5", Danger.LOW)]
    # the same port probed and connected is ONE port, and it was a connect
    both = [_ev(EventType.TCP_PROBE, 1, 0), _ev(EventType.DECOY_CONNECT, 1, 0.1),
            _ev(EventType.TCP_PROBE, 2, 1), _ev(EventType.DECOY_CONNECT, 2, 1.1),
            _ev(EventType.TCP_PROBE, 3, 2), _ev(EventType.DECOY_CONNECT, 3, 2.1),
            _ev(EventType.TCP_PROBE, 4, 3)]
    detectors = Detectors(DetectConfig(scan_ports=5))
    assert detectors.feed_all(both) == []  # 4 ports so far, not 7 events
    (scan,) = detectors.feed(_ev(EventType.DECOY_CONNECT, 4, 3.1)) + detectors.feed(
        _ev(EventType.TCP_PROBE, 5, 4))
    assert scan.fields["count"] == "5" and scan.fields["technique"] == "connect"
    # stealth probes weigh more
    (xmas,) = Detectors(DetectConfig(scan_ports=5)).feed_all(
        _ev(EventType.TCP_PROBE, p, i, "xmas") for i, p in enumerate(PORTS))
    assert xmas.fields["technique"] == "xmas" and xmas.danger is Danger.MEDIUM


# -- real nmap against real decoys ---------------------------------------------------------


def _nmap() -> str:
    nmap = shutil.which("nmap")
    if nmap is None:
        pytest.skip("nmap not installed")
    return nmap


async def _scans(scans: dict[str, str], *, settle: float = 0.3) -> tuple[list[Event], str]:
    """Decoys on HOST:PORTS, a knock sensor on them, and one nmap per (source: technique),
    all at once."""
    nmap = _nmap()
    events: list[Event] = []
    decoys = [DecoyServer(DecoySpec.parse(f"{HOST}:{p}"), events.append) for p in PORTS]
    for decoy in decoys:
        await decoy.start()
    sensor = TcpKnockSensor(events.append, [(HOST, p) for p in PORTS], settle=settle)
    assert await sensor.start()
    try:
        runs = [asyncio.create_subprocess_exec(
            nmap, flag, "-n", "-Pn", "-S", src, "-e", "lo", *FAST, *EXCLUDE,
            "-p", ",".join(map(str, PORTS)), HOST,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            for src, flag in scans.items()]
        procs = [await r for r in runs]
        outputs = [(await p.communicate())[0].decode() for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs
        await asyncio.sleep(settle * 2)
    finally:
        await sensor.close()
        for decoy in decoys:
            await decoy.close()
    return events, "\n".join(outputs)


@pytest.mark.root
def test_real_nmap_syn_null_fin_xmas_and_connect_scans() -> None:
    scans = {"127.0.125.50": "-sS", "127.0.125.51": "-sN", "127.0.125.52": "-sF",
             "127.0.125.53": "-sX", "127.0.125.54": "-sT"}
    events, out = asyncio.run(_scans(scans))
    assert len(re.findall(r"/tcp +open ", out)) == 2 * len(PORTS), out  # -sS and -sT
    expected = {"127.0.125.50": ("SYN", "syn"), "127.0.125.51": ("NULL", "null"),
                "127.0.125.52": ("FIN", "fin"), "127.0.125.53": ("XMAS", "xmas")}
    for src, (flags, technique) in expected.items():
        probes = [e for e in events if e.src == src and e.type is EventType.TCP_PROBE]
        # exactly one event per decoy port, even if nmap sent a probe twice
        assert sorted(e.dst_port or 0 for e in probes) == PORTS, (src, probes)
        assert {(e.fields["flags"], e.fields["technique"], e.dst) for e in probes} == {
            (flags, technique, HOST)}
        assert not [e for e in events if e.src == src and e.type is EventType.DECOY_CONNECT]
    # a connect scan is the decoys' to record: no probe on top of each connection
    connect = [e for e in events if e.src == "127.0.125.54"]
    assert sorted(e.dst_port or 0 for e in connect
                  if e.type is EventType.DECOY_CONNECT) == PORTS
    assert not [e for e in connect if e.type is EventType.TCP_PROBE]
    # and the detector turns each scan into one scan.ports with the right technique
    found = {e.src: e.fields["technique"]
             for e in Detectors().feed_all(events) if e.type is EventType.SCAN_PORTS}
    assert found == {**{s: t for s, (_, t) in expected.items()}, "127.0.125.54": "connect"}


# -- inside the sensor ----------------------------------------------------------------------


async def _run_sensor(sensor: Sensor, visit: Callable[[], Any]) -> None:
    task = asyncio.create_task(sensor.run())
    for _ in range(200):
        if sensor.running:
            break
        await asyncio.sleep(0.02)
    await visit()
    sensor.stop()
    await asyncio.wait_for(task, 30)


class _Heard:
    """The router's part: every event the sensor publishes."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    async def start(self) -> None:
        return None

    def publish(self, item: Event | Incident, *, opened: bool = False) -> None:
        if isinstance(item, Event):
            self.events.append(item)

    async def aclose(self, deadline: float = 1.0) -> None:
        return None


@pytest.mark.root
def test_sensor_wires_knocks_and_limits_icmp_to_the_decoys() -> None:
    events: list[Event] = []
    nmap = _nmap()

    async def visit() -> None:
        await asyncio.to_thread(subprocess.run, [
            nmap, "-sF", "-n", "-Pn", "-S", "127.0.125.55", "-e", "lo", *FAST, *EXCLUDE,
            "-p", str(PORTS[0]), HOST], capture_output=True, timeout=30, check=True)
        for target in (HOST, OTHER):
            await asyncio.to_thread(subprocess.run, ["ping", "-n", "-c", "1", "-W", "1",
                                                     target], capture_output=True, timeout=10)
        await asyncio.sleep(0.3)

    sensor = Sensor(WatchSettings(decoys=(f"{HOST}:{PORTS[0]}",), icmp=True, alerts=()), None,
                    _Heard(events), say=lambda _line: None)
    asyncio.run(_run_sensor(sensor, visit))
    assert "tcp-knock" in sensor.running and "icmp" in sensor.running
    (probe,) = [e for e in events if e.type is EventType.TCP_PROBE and e.src == "127.0.125.55"]
    assert (probe.fields["flags"], probe.dst_port) == ("FIN", PORTS[0])
    echoes = [e for e in events if e.type is EventType.ICMP_ECHO]
    assert {e.dst for e in echoes} == {HOST}  # the ping to OTHER is not a decoy's business

    off = Sensor(WatchSettings(decoys=(f"{HOST}:{PORTS[1]}",), tcp_knock=False, knocks=False,
                               alerts=()), None, None, say=lambda _line: None)

    async def nothing() -> None:
        await asyncio.sleep(0)

    asyncio.run(_run_sensor(off, nothing))
    assert off.running == [f"decoy:tcp/{HOST}:{PORTS[1]}=banner"]


_UNPRIVILEGED = """
import asyncio, json, os, socket
from mamori.watch.rawtcp import TcpKnockSensor
from mamori.watch.sensor import Sensor
from mamori.watch.settings import WatchSettings
import mamori.watch.knock  # (imported as root: /root may hold this Python's modules)
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # drop root before opening anything
async def main():
    events = []
    alone = TcpKnockSensor(events.append, [("127.0.125.1", 23221), ("::1", 23221)])
    ok = await alone.start()
    await alone.close()
    said = []
    sensor = Sensor(WatchSettings(decoys=("127.0.125.1:23222",), alerts=()), None, None,
                    say=said.append)
    task = asyncio.create_task(sensor.run())
    while not sensor.running:
        await asyncio.sleep(0.02)
    _, writer = await asyncio.open_connection("127.0.125.1", 23222)
    await asyncio.sleep(0.2)
    writer.close()
    sensor.stop()
    ran = await task
    print(json.dumps({"ok": ok, "uid": os.getuid(), "ran": ran, "running": sensor.running,
                      "received": sensor.stats.received, "said": said,
                      "events": [[str(e.type), dict(e.fields)] for e in events]}))
asyncio.run(main())
"""


@pytest.mark.root
def test_unprivileged_reports_unavailable_and_the_decoys_run_on() -> None:
    run = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], capture_output=True, text=True,
                         timeout=30, cwd="/tmp")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] is False and result["uid"] == 65534
    assert [kind for kind, _ in result["events"]] == ["sensor.error", "sensor.error"]
    assert {f["family"] for _, f in result["events"]} == {"ipv4", "ipv6"}
    assert all("not permitted" in f["reason"] and "CAP_NET_RAW" in f["reason"]
               for _, f in result["events"])
    # inside the sensor: the decoy ran and recorded its visitor; the knock sensor said why not
    assert result["ran"] == 1 and result["running"] == ["decoy:tcp/127.0.125.1:23222=banner"]
    assert any("tcp-knock" in line and "CAP_NET_RAW" in line for line in result["said"])
    # ... and so did the knocks on closed ports (on by default), once
    (knocks,) = [line for line in result["said"] if "knocks on closed ports" in line]
    assert "not watched" in knocks and "CAP_NET_RAW" in knocks
    assert result["received"] >= 2  # the sensor.error and the decoy.connect


# -- the real `mamori watch` process ----------------------------------------------------------


@pytest.mark.root
def test_watch_process_turns_a_syn_scan_into_one_incident(tmp_path: Path) -> None:
    from test_watch_e2e import Watch, as_json, summary_counts

    nmap = _nmap()
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    args = [a for p in PORTS for a in ("--decoy", f"{HOST}:{p}")]
    watch = Watch([*args, "--settings", str(settings), "--db", db], tmp_path)
    syn_src, connect_src = "127.0.125.60", "127.0.125.61"
    try:
        watch.wait_ready()
        assert "tcp-knock" in watch.stderr()
        for src, flag in ((syn_src, "-sS"), (connect_src, "-sT")):
            scan = subprocess.run(
                [nmap, flag, "-n", "-Pn", "-S", src, "-e", "lo", *EXCLUDE,
                 "-p", ",".join(map(str, PORTS)), HOST],
                capture_output=True, text=True, timeout=60, check=True)
            assert len(re.findall(r"/tcp +open ", scan.stdout)) == len(PORTS), scan.stdout
        time.sleep(0.3)  # (SYNs still held for their handshake are reported at SIGTERM)
    finally:
        rc = watch.stop() if watch.proc.poll() is None else watch.proc.returncode
        watch.kill()
    err = watch.stderr()
    assert rc == 0, err
    counts = summary_counts(err)
    assert counts["stored"] == counts["received"] + counts["derived"], err
    incidents = as_json("incidents", "--format", "json", "--db", db)["incidents"]
    (syn,) = [i for i in incidents if i["src"] == syn_src]
    assert syn["kind"] == "scan.ports" and set(syn["types"]) == {"tcp.probe", "scan.ports"}
    (connect,) = [i for i in incidents if i["src"] == connect_src]
    assert connect["kind"] == "scan.ports"
    assert set(connect["types"]) == {"decoy.connect", "scan.ports"}  # not double counted
    events = as_json("events", "--format", "json", "--limit", "0", "--db", db)["events"]
    (scan,) = [e for e in events if e["type"] == "scan.ports" and e["src"] == syn_src]
    assert scan["fields"]["technique"] == "syn" and scan["fields"]["count"] == str(len(PORTS))
    probes = [e for e in events if e["type"] == "tcp.probe" and e["src"] == syn_src]
    assert sorted(e["dst_port"] for e in probes) == PORTS
    (other,) = [e for e in events if e["type"] == "scan.ports" and e["src"] == connect_src]
    assert other["fields"]["technique"] == "connect"


@pytest.mark.root
def test_real_nmap_syn_scan_over_ipv6() -> None:
    nmap = _nmap()

    async def main() -> list[Event]:
        events: list[Event] = []
        decoy = DecoyServer(DecoySpec.parse("[::1]:23231"), events.append)
        await decoy.start()
        sensor = TcpKnockSensor(events.append, [("::1", 23231)], settle=0.3)
        try:
            assert await sensor.start() and sensor.families == (6,)
            await asyncio.to_thread(subprocess.run, [
                nmap, "-6", "-sS", "-n", "-Pn", *FAST, *EXCLUDE, "-p", "23231", "::1"],
                capture_output=True, timeout=30, check=True)
            await asyncio.sleep(0.3)
        finally:
            await sensor.close()
            await decoy.close()
        return events

    events = asyncio.run(main())
    (probe,) = [e for e in events if e.type is EventType.TCP_PROBE]
    assert (probe.src, probe.dst, probe.dst_port, probe.fields["flags"]) == (
        "::1", "::1", 23231, "SYN")
    assert not [e for e in events if e.type is EventType.DECOY_CONNECT]
