"""Knocks on closed ports, the parts that need no network: the hand-assembled BPF programs
(run next to what libpcap compiles from the same tcpdump expression), the socket-table and
packet parsers, the syn/connect fingerprint, and the scan detector fed with knocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from mamori.model.watch import Event, EventType
from mamori.watch import bpf
from mamori.watch.detect import Detectors
from mamori.watch.incidents import IncidentGrouper
from mamori.watch.knock import Knock, KnockSensor, parse_knock4, parse_knock6, tcp_technique
from mamori.watch.listeners import (
    WILDCARD,
    Listeners,
    diag_request,
    parse_broadcasts,
    parse_diag,
    parse_sockets,
)

# -- a classic BPF interpreter (the subset libpcap and bpf.py emit) ----------------------------


def run_cbpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """What the kernel would return for ``packet``: 0 drops it, else bytes kept."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD / LDX
            size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            mode = code & 0xE0
            if cls == 0x01 and mode == 0xA0:  # ldxb 4*([k]&0xf)
                if k >= len(packet):
                    return 0
                x = (packet[k] & 0x0F) * 4
                continue
            if mode == 0x00:  # immediate
                value = k
            elif mode in (0x20, 0x40):  # absolute, indirect
                at = k + (x if mode == 0x40 else 0)
                if at + size > len(packet):
                    return 0
                value = int.from_bytes(packet[at:at + size], "big")
            elif mode == 0x60:
                value = mem[k]
            elif mode == 0x80:
                value = len(packet)
            else:
                raise AssertionError(f"opcode {code:#x}")
            if cls == 0x00:
                a = value
            else:
                x = value
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU
            operand = x if code & 0x08 else k
            op = code & 0xF0
            a = {0x00: lambda: a + operand, 0x10: lambda: a - operand,
                 0x20: lambda: a * operand, 0x40: lambda: a | operand,
                 0x50: lambda: a & operand, 0x60: lambda: a << operand,
                 0x70: lambda: a >> operand, 0x80: lambda: -a}[op]() & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            operand = x if code & 0x08 else k
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand,
                     0x40: bool(a & operand)}[op]
            pc += jt if taken else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:
            if code == 0x07:
                x = a
            else:
                a = x
        else:
            raise AssertionError(f"opcode {code:#x}")


def tcpdump_program(tmp: Path, expression: str) -> list[tuple[int, int, int, int]]:
    """libpcap's program for ``expression`` on raw IPv4 packets (``tcpdump -dd``)."""
    empty = tmp / "raw.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    out = subprocess.run(["tcpdump", "-dd", "-r", str(empty), expression],
                         capture_output=True, text=True, check=True).stdout
    return [tuple(int(v, 0) for v in m.groups())  # type: ignore[misc]
            for m in re.finditer(r"\{ (\w+), (\w+), (\w+), (\w+) \}", out)]


def tcp_header(dport: int, flags: int, *, window: int = 1024, options: bytes = b"",
               sport: int = 40000) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, window, 0,
                       0) + options


def udp_header(dport: int, sport: int = 40000) -> bytes:
    return struct.pack(">HHHH", sport, dport, 9, 0) + b"x"


def ipv4(payload: bytes, proto: int, dst: str = "10.0.0.2", *, frag: int = 0,
         options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(payload), 1,
                       frag, 64, proto, 0, socket.inet_aton("10.0.0.1"),
                       socket.inet_aton(dst))
    return head + options + payload


FLAG_SETS = [0x02, 0x12, 0x10, 0x04, 0x14, 0x00, 0x01, 0x29, 0x03, 0x11, 0x18, 0xC2]
PORTS = [22, 80, 443, 8080, 31337]
SKIPPED = [22, 8080]


def tcp_corpus() -> list[bytes]:
    packets = []
    for flags in FLAG_SETS:
        for port in PORTS:
            segment = tcp_header(port, flags, options=b"\x02\x04\x05\xb4")
            packets.append(ipv4(segment, 6))
            packets.append(ipv4(segment, 6, options=b"\x01\x01\x01\x00"))  # IP options
    segment = tcp_header(443, 0x02)
    packets += [ipv4(segment, 6, frag=0x2001), ipv4(segment, 6, frag=0x4000),  # DF: fine
                ipv4(segment, 6, dst="224.0.0.9"), ipv4(segment, 6, dst="255.255.255.255"),
                ipv4(segment, 6, dst="223.255.255.254")]
    return packets


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcp_filters_keep_exactly_what_the_tcpdump_expression_keeps(tmp_path: Path) -> None:
    theirs = tcpdump_program(
        tmp_path, "ip[6:2] & 0x1fff = 0 and ip[16] < 224 and tcp[13] & 0x14 = 0 and "
        + " and ".join(f"not tcp dst port {p}" for p in SKIPPED))
    assert len(theirs) > 10
    ours = bpf.knock_program(4, "tcp", SKIPPED)
    corpus = tcp_corpus()
    kept = [run_cbpf(theirs, p) != 0 for p in corpus]
    assert [run_cbpf(ours, p) != 0 for p in corpus] == kept
    assert 0 < sum(kept) < len(corpus)  # the corpus holds both kinds
    # The IPv6 program sees the TCP header only: the same verdicts on the same segments.
    ours6 = bpf.knock_program(6, "tcp", SKIPPED)
    for packet, keep in zip(corpus, kept, strict=True):
        ihl = (packet[0] & 0x0F) * 4
        if struct.unpack_from(">H", packet, 6)[0] & 0x1FFF or packet[16] >= 224:
            continue  # IPv4-only reasons
        assert (run_cbpf(ours6, packet[ihl:]) != 0) == keep
    # Without skipped ports, a SYN to 22 is kept; an ACK never is.
    plain = bpf.knock_program(4, "tcp")
    assert run_cbpf(plain, ipv4(tcp_header(22, 0x02), 6)) == bpf.SNAP
    assert run_cbpf(plain, ipv4(tcp_header(22, 0x10), 6)) == 0


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_udp_filter_matches_tcpdump(tmp_path: Path) -> None:
    theirs = tcpdump_program(tmp_path, "ip[6:2] & 0x1fff = 0 and ip[16] < 224 and "
                             "not udp dst port 53 and not udp dst port 161")
    ours = bpf.knock_program(4, "udp", [161, 53])
    corpus = [ipv4(udp_header(port), 17, dst=dst, frag=frag)
              for port in (53, 161, 1900, 40000) for dst in ("10.0.0.2", "239.255.255.250")
              for frag in (0, 0x0010)]
    kept = [run_cbpf(theirs, p) != 0 for p in corpus]
    assert [run_cbpf(ours, p) != 0 for p in corpus] == kept
    assert sum(kept) == 2  # 1900 and 40000 to the unicast address, first fragment only


def test_skip_ports_are_bounded_and_jumps_fit() -> None:
    program = bpf.knock_program(4, "tcp", range(1, 1000))
    assert sum(1 for code, *_ in program if code == 0x15) == bpf.MAX_SKIP_PORTS
    assert all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in program)
    assert len(bpf.pack(program)) == 8 * len(program)


# -- parsers -------------------------------------------------------------------------------------

PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: garbage
"""
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 0
   2: 0000000000000000FFFF00000100007F:0019 00000000000000000000000000000000:0000 0A 0
"""
PROC_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
  0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   0
  1: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000   0
"""
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 192.168.1.0
        /24 link UNICAST
     |-- 192.168.1.7
        /32 host LOCAL
     |-- 192.168.1.255
        /32 link BROADCAST
"""


def test_socket_tables_parse_to_listeners() -> None:
    tcp4 = parse_sockets(PROC_TCP, "tcp")
    assert tcp4 == {("127.0.0.1", 3306), (WILDCARD, 22)}  # the established one is not
    tcp6 = parse_sockets(PROC_TCP6, "tcp")
    assert tcp6 == {(WILDCARD, 8080), ("::1", 631), ("127.0.0.1", 25)}
    udp4 = parse_sockets(PROC_UDP, "udp")
    assert udp4 == {(WILDCARD, 53), ("127.0.0.1", 40960)}  # any bound UDP socket is open
    assert parse_broadcasts(FIB_TRIE) == {"192.168.1.255"}
    found = Listeners(tcp4=tcp4, tcp6=tcp6, udp4=udp4)
    assert found.is_open("tcp", 4, "10.0.0.2", 22)
    assert found.is_open("tcp", 4, "127.0.0.1", 3306)
    assert not found.is_open("tcp", 4, "10.0.0.2", 3306)  # bound to another address
    assert found.is_open("tcp", 4, "10.0.0.2", 8080)  # :: takes IPv4 unless v6-only
    assert not found.is_open("tcp", 6, "::1", 22)  # 0.0.0.0 does not take IPv6
    assert found.wildcard_ports("tcp", 4) == {22, 8080}
    assert found.wildcard_ports("tcp", 6) == {8080}


def test_live_socket_table_sees_a_listener_this_test_opens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        text = Path("/proc/net/tcp").read_text()
        assert ("127.0.0.1", port) not in parse_sockets(text, "tcp")
        server.listen()
        assert ("127.0.0.1", port) in parse_sockets(Path("/proc/net/tcp").read_text(), "tcp")


def test_sock_diag_dump_and_proc_tables_agree() -> None:
    """The netlink answer (the real kernel's) and /proc/net name the same sockets."""
    from mamori.watch.knock import _dump

    with socket.socket() as tcp, socket.socket(socket.AF_INET6) as tcp6, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.215.2", 0))
        tcp.listen()
        tcp6.bind(("::", 0))
        tcp6.listen()
        udp.bind(("127.0.215.2", 0))
        for family, proto, name in ((socket.AF_INET, "tcp", "tcp"),
                                    (socket.AF_INET6, "tcp", "tcp6"),
                                    (socket.AF_INET, "udp", "udp")):
            dumped = _dump(family, proto)
            assert dumped == parse_sockets(Path(f"/proc/net/{name}").read_text(), proto)
        assert ("127.0.215.2", tcp.getsockname()[1]) in _dump(socket.AF_INET, "tcp")
        assert (WILDCARD, tcp6.getsockname()[1]) in _dump(socket.AF_INET6, "tcp")
        assert ("127.0.215.2", udp.getsockname()[1]) in _dump(socket.AF_INET, "udp")
    # Cut short or garbage: what was read so far, and the dump is over.
    request = diag_request(socket.AF_INET, "tcp")
    assert len(request) == 72 and request[4:6] == b"\x14\x00"
    assert parse_diag(b"\xff" * 40) == (set(), True)
    assert parse_diag(b"") == (set(), False)


NMAP_SYN = tcp_header(443, 0x02, window=1024, options=b"\x02\x04\x05\xb4")
LINUX_CONNECT = tcp_header(443, 0x02, window=64240, options=bytes.fromhex(
    "020405b40402080a0001e2400000000001030307"))


def test_packets_parse_and_syn_is_told_from_connect_by_its_options() -> None:
    knock = parse_knock4(ipv4(NMAP_SYN, 6), "tcp")
    assert knock == Knock(4, "tcp", "10.0.0.1", "10.0.0.2", 40000, 443, 0x02, 1024, (2,))
    assert tcp_technique(knock) == ("syn", "likely", "window 1024, options MSS")
    kernel = parse_knock6(LINUX_CONNECT, "tcp", "fd00::1", "fd00::2")
    assert kernel is not None and kernel.options == (2, 4, 8, 3)
    assert tcp_technique(kernel) == (
        "connect", "likely", "window 64240, options MSS,SACK_PERM,TS,WS")
    bare = parse_knock4(ipv4(tcp_header(1, 0x02, window=65535), 6), "tcp")
    assert bare is not None and tcp_technique(bare)[0] == "syn"  # masscan/zmap style
    for flags, named in ((0x00, "null"), (0x01, "fin"), (0x29, "xmas"), (0x03, "tcp")):
        seg = parse_knock4(ipv4(tcp_header(1, flags), 6), "tcp")
        assert seg is not None and tcp_technique(seg) == (named, "seen", "")
    for flags in (0x12, 0x10, 0x04, 0x14):
        seg = parse_knock4(ipv4(tcp_header(1, flags), 6), "tcp")
        assert seg is not None and tcp_technique(seg) is None
    assert parse_knock4(ipv4(NMAP_SYN, 6, frag=0x0004), "tcp") is None  # later fragment
    assert parse_knock4(ipv4(NMAP_SYN, 6)[:30], "tcp") is None  # cut short
    assert parse_knock4(ipv4(udp_header(53), 17), "tcp") is None  # another protocol
    udp = parse_knock4(ipv4(udp_header(1900), 17), "udp")
    assert udp is not None and (udp.proto, udp.dport) == ("udp", 1900)
    # Malformed options never raise.
    odd = tcp_header(1, 0x02, options=b"\x02\x00\x08\x01")
    assert parse_knock6(odd, "tcp", "fd00::1", "fd00::2") is not None


def test_the_sensor_counts_knocks_repeats_and_the_excess(tmp_path: Path) -> None:
    """In process, no socket: what ``see`` makes of knocks, listeners and a flood."""
    (tmp_path / "tcp").write_text(PROC_TCP)
    events: list[Event] = []
    sensor = KnockSensor(events.append, proc=tmp_path)
    sensor._read_listeners()
    syn = parse_knock4(ipv4(NMAP_SYN, 6), "tcp")
    assert syn is not None
    sensor.see(syn)
    assert sensor.knocks == 1
    sensor.see(syn.__class__(**{**_fields(syn), "dport": 22}))  # a listener
    assert sensor.knocks == 1 and sensor.ignored == 1
    sensor.see(syn)
    assert sensor.knocks == 1 and sensor.repeated == 1  # the same knock again: counted only
    for port in range(1000, 1300):  # a flood from one source: rate-limited, counted
        sensor.see(syn.__class__(**{**_fields(syn), "dport": port}))
    assert sensor.knocks + sensor.suppressed == 301
    assert 0 < sensor.suppressed
    (first,) = [e for e in events if e.dst_port == 443]
    assert first.type is EventType.PORT_KNOCK
    assert dict(first.fields) == {"technique": "syn", "certainty": "likely",
                                  "port_state": "closed", "flags": "SYN",
                                  "tcp_flags": "0x02", "fingerprint": "window 1024, options MSS"}
    multicast = Knock(4, "udp", "10.0.0.1", "239.255.255.250", 5, 1900)
    sensor.see(multicast)
    assert sensor.ignored == 2
    # The excess is summed up in one event for the source (it joins its incident).
    before = len(events)
    sensor._flush_summaries()
    (summary,) = events[before:]
    assert summary.type is EventType.PORT_KNOCK and summary.src == "10.0.0.1"
    assert summary.dst_port is None  # not a port the scan detector would count again
    assert summary.fields["summarised"] == str(sensor.suppressed)
    assert summary.fields["techniques"] == f"syn:{sensor.suppressed}"
    assert summary.fields["ports"].endswith("-1299")
    sensor._flush_summaries()
    assert len(events) == before + 1  # flushed once


def _fields(knock: Knock) -> dict[str, object]:
    return {name: getattr(knock, name) for name in Knock.__slots__}


def knock_event(src: str, port: int, technique: str, when: datetime,
                certainty: str = "likely") -> Event:
    return Event(time=when, type=EventType.PORT_KNOCK, source="knock", src=src,
                 dst="10.0.0.2", dst_port=port, proto="udp" if technique == "udp" else "tcp",
                 fields=MappingProxyType({"technique": technique, "certainty": certainty}))


def test_knocks_on_closed_ports_make_one_scan_incident_with_its_technique() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    detectors = Detectors()
    grouper = IncidentGrouper(900.0)
    derived: list[Event] = []
    for i in range(3000):
        event = knock_event("198.51.100.9", 1 + i, "syn", start + timedelta(milliseconds=i))
        grouper.add(event)
        for d in detectors.feed(event):
            grouper.add(d)
            derived.append(d)
    assert [d.type for d in derived] == [EventType.SCAN_PORTS]
    assert derived[0].fields["technique"] == "syn"
    assert derived[0].fields["certainty"] == "likely"
    assert "(syn, likely)" in derived[0].excerpt
    grouper.close_all()
    (incident,) = [i for _, i in grouper.drain_closed()]
    assert incident.kind == "scan.ports" and incident.count == 3001
    # A single knock is its own kind, below a decoy contact.
    lone = IncidentGrouper(900.0)
    fold = lone.add(knock_event("198.51.100.10", 80, "connect", start))
    assert fold is not None
    lone.close_all()
    (only,) = [i for _, i in lone.drain_closed()]
    assert only.kind == "port.knock"
    # Flag techniques are seen, not guessed.
    fin = Detectors()
    out = [d for i in range(5) for d in fin.feed(
        knock_event("198.51.100.11", 1 + i, "fin", start, certainty="seen"))]
    assert out[0].fields["technique"] == "fin" and out[0].fields["certainty"] == "seen"


LATE = "127.0.215.1"  # this test's own loopback address


@pytest.mark.root
def test_a_listener_opened_after_the_last_read_is_not_knocked() -> None:
    """Real raw sockets (root): ports opened after the sensor read the socket tables are
    not knocks; the closed ports next to them are, TCP and UDP."""
    if os.geteuid() != 0:
        pytest.skip("raw sockets need root")

    def free_port(kind: int) -> int:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((LATE, 0))
            return int(probe.getsockname()[1])

    async def scenario() -> tuple[list[Event], KnockSensor, dict[str, int]]:
        events: list[Event] = []
        sensor = KnockSensor(events.append, refresh=60.0)  # only misses re-read the tables
        assert await sensor.start()
        ports = {"tcp_open": free_port(socket.SOCK_STREAM),
                 "tcp_closed": free_port(socket.SOCK_STREAM),
                 "udp_open": free_port(socket.SOCK_DGRAM),
                 "udp_closed": free_port(socket.SOCK_DGRAM)}
        with socket.socket() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            server.bind((LATE, ports["tcp_open"]))
            server.listen()
            udp.bind((LATE, ports["udp_open"]))
            for name in ("tcp_open", "tcp_closed"):
                with socket.socket() as client, contextlib.suppress(ConnectionRefusedError):
                    client.connect((LATE, ports[name]))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for name in ("udp_open", "udp_closed"):
                    client.sendto(b"knock", (LATE, ports[name]))
            await asyncio.sleep(0.6)  # read, re-read the tables, judge
        await sensor.close()
        return events, sensor, ports

    events, sensor, ports = asyncio.run(scenario())
    knocked = sorted((e.proto, e.dst_port) for e in events
                     if e.type is EventType.PORT_KNOCK and e.dst == LATE)
    assert knocked == sorted([("tcp", ports["tcp_closed"]), ("udp", ports["udp_closed"])])
    (tcp,) = [e for e in events if e.type is EventType.PORT_KNOCK and e.proto == "tcp"
              and e.dst == LATE]
    assert tcp.fields["technique"] == "connect"  # the kernel's own connect()
    assert sensor.use_bpf and not sensor.errors
