"""Knocks on closed ports: TCP SYN/NULL/FIN/XMAS and UDP datagrams to ports nobody listens on.

Raw ``IPPROTO_TCP`` and ``IPPROTO_UDP`` sockets (IPv4 and IPv6) receive a copy of what the host
receives; a classic BPF filter (``mamori.watch.bpf``) attached to each makes the kernel drop
ordinary traffic (anything with ACK or RST, fragments, multicast, ports with a wildcard
listener) before it is queued, so a busy host wakes the sensor only for what may be a knock.
The listener set (``mamori.watch.listeners``: netlink sock_diag, else ``/proc/net``) is
re-read every ``refresh`` seconds, and a knock on a port missing from it is judged only after
the next read (at most ``REREAD`` seconds later, one read for all the misses in between), so
a listener opened a moment ago is not knocked; the filters are rebuilt when the wildcard
ports change.

What is a knock, and its technique:

* a TCP segment without ACK and RST to an address and port with no listener: SYN -> "syn" or
  "connect" (below), no flag -> "null", FIN -> "fin", FIN+PSH+URG -> "xmas", another mix ->
  "tcp";
* a UDP datagram to a unicast address and a port with no bound socket -> "udp".

SYN scan or connect scan: on a closed port both are one SYN answered by the kernel's RST.
What differs is who built the SYN. Every current OS stack's ``connect()`` offers SACK
(and most window scaling and timestamps); packet crafters (nmap -sS: window 1024 and a lone
MSS option; masscan, zmap: MSS or nothing) do not. A SYN whose options are only MSS/NOP/EOL
is "syn", any other "connect", each with ``certainty`` "likely" and the ``fingerprint``
(window, options) it was judged on; flag-based techniques and UDP are "seen".

Bounded: a repeat of the same knock (source, destination, port, technique) within
``window`` seconds is counted, not reported (scanners retransmit); events are rate-limited
per source by a ``SourceGuard`` (its ``sensor.limit`` events count the excess); the kernel's
count of packets dropped for a full socket buffer (``SO_RXQ_OVFL``) is reported as a
``sensor.limit`` event when it grows; the rate-limited excess of each source is also
summarised every ``refresh`` seconds as one ``port.knock`` event with ``summarised`` (how
many), the port range and the techniques, which joins that source's incident (at most
``MAX_SUMMARIES`` sources at a time; beyond, only counted); at close one ``sensor.limit``
event (reason "knock totals") says how many segments were seen, reported, repeated,
suppressed and lost in the kernel, so nothing is lost silently. ``MAMORI_KNOCK_BPF=off`` in
the environment runs without the kernel filters (the same results, more work: for
``bench/watch_knocks.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from mamori.model.watch import Event, EventType
from mamori.watch import bpf, rawsock
from mamori.watch.decoys.guard import SourceGuard
from mamori.watch.decoys.spec import DecoyLimits
from mamori.watch.listeners import (
    Listeners,
    diag_request,
    parse_broadcasts,
    parse_diag,
    parse_sockets,
)
from mamori.watch.repeats import RecentKeys

__all__ = ["Knock", "KnockSensor", "parse_knock4", "parse_knock6", "tcp_technique"]

SOURCE = "knock"
SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h (not exported by Python's socket module)
SO_RXQ_OVFL = 40
SO_RCVBUFFORCE = 33
_NETLINK_SOCK_DIAG = 4
RCVBUF = 16 << 20  # bytes of queue per raw socket (four sockets)
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_BASE = FIN | SYN | RST | PSH | ACK | URG
_BATCH = 256  # datagrams read per wake-up before yielding to the loop
_CRAFTED_OPTIONS = frozenset({2})  # MSS only (NOP and EOL are padding)
_OPTION_NAMES = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS", 34: "TFO"}
_ANC = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)

Proto = Literal["tcp", "udp"]
MAX_SUMMARIES = 4096  # sources whose rate-limited knocks are summarised one by one
REREAD = 0.25  # seconds: the listener set is re-read at most this often for misses
MAX_HELD = 50_000  # misses waiting for that re-read; beyond, judged on the last read


@dataclass(slots=True)
class _Summary:
    """Knocks from one source beyond its event rate, since the last summary."""

    dst: str
    proto: str
    low: int
    high: int
    techniques: Counter[str]


@dataclass(frozen=True, slots=True)
class Knock:
    version: int
    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    flags: int = 0  # TCP only
    window: int = 0
    options: tuple[int, ...] = ()  # TCP option kinds in order, padding left out


def _tcp_options(raw: bytes) -> tuple[int, ...]:
    kinds: list[int] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        kinds.append(kind)
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break  # malformed: keep what was read
        i += raw[i + 1]
    return tuple(kinds)


def _transport(version: int, proto: str, src: str, dst: str, data: bytes) -> Knock | None:
    if proto == "udp":
        if len(data) < 8:
            return None
        sport, dport = struct.unpack_from(">HH", data)
        return Knock(version, "udp", src, dst, sport, dport)
    if len(data) < 20:
        return None
    sport, dport = struct.unpack_from(">HH", data)
    offset = (data[12] >> 4) * 4
    window = struct.unpack_from(">H", data, 14)[0]
    options = _tcp_options(data[20:offset]) if offset > 20 else ()
    return Knock(version, "tcp", src, dst, sport, dport, data[13], window, options)


def parse_knock4(packet: bytes, proto: str) -> Knock | None:
    """An IPv4 packet (header included) carrying ``proto`` ("tcp" or "udp"). None for other
    protocols, later fragments, or anything cut short. Never raises."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != {"tcp": 6, "udp": 17}[proto]:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl or struct.unpack_from(">H", packet, 6)[0] & 0x1FFF:
        return None
    return _transport(4, proto, socket.inet_ntop(socket.AF_INET, packet[12:16]),
                      socket.inet_ntop(socket.AF_INET, packet[16:20]), packet[ihl:])


def parse_knock6(data: bytes, proto: str, src: str, dst: str) -> Knock | None:
    """A TCP segment or UDP datagram as a raw IPv6 socket delivers it (``src`` from the
    sender's address, ``dst`` from IPV6_PKTINFO). Never raises."""
    return _transport(6, proto, src, dst, data)


def tcp_technique(knock: Knock) -> tuple[str, str, str] | None:
    """(technique, certainty, fingerprint) of a TCP knock; None for ordinary traffic or a
    teardown (ACK or RST set). See the module doc."""
    base = knock.flags & _BASE
    if base & (ACK | RST):
        return None
    if base == SYN:
        shown = ",".join(_OPTION_NAMES.get(k, str(k)) for k in knock.options) or "none"
        fingerprint = f"window {knock.window}, options {shown}"
        crafted = set(knock.options) <= _CRAFTED_OPTIONS
        return ("syn" if crafted else "connect"), "likely", fingerprint
    named = {0: "null", FIN: "fin", FIN | PSH | URG: "xmas"}.get(base, "tcp")
    return named, "seen", ""


def _flag_label(flags: int) -> str:
    names = [n for b, n in ((FIN, "FIN"), (SYN, "SYN"), (PSH, "PSH"), (URG, "URG"))
             if flags & b]
    return " ".join(names) or "NULL"


def _dump(family: int, proto: str) -> set[tuple[str, int]]:
    """The listening TCP (or bound UDP) sockets of one family, by netlink sock_diag."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1.0)
        sock.send(diag_request(family, proto))  # no address: to the kernel (port id 0)
        found: set[tuple[str, int]] = set()
        for _ in range(10_000):  # bounded: a dump of 10,000 reads is no dump
            part, done = parse_diag(sock.recv(65536))
            found |= part
            if done:
                return found
    raise OSError("sock_diag dump did not end")


def _not_watched(failures: list[Event]) -> Event:
    """The one ``sensor.error`` event for raw sockets none of which opened: knocks on closed
    ports are not watched, and why (the reasons of the sockets, told once)."""
    reasons = [f.fields.get("reason", "") for f in failures]
    if all("not permitted" in r for r in reasons):
        why = ("raw TCP and UDP sockets not permitted (needs root or CAP_NET_RAW): "
               + reasons[0].rsplit(": ", 1)[-1])
    else:
        why = "; ".join(dict.fromkeys(reasons))
    reason = f"knocks on closed ports not watched: {why}"
    return Event(time=failures[0].time, type=EventType.SENSOR_ERROR, source=SOURCE,
                 fields=MappingProxyType({"reason": reason[:300], "watched": "no"}))


def _unicast(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    # 255.255.255.255 is in 240.0.0.0/4, reserved: never a host's own address
    return not (parsed.is_multicast or parsed.is_unspecified
                or (parsed.version == 4 and parsed.is_reserved))


class KnockSensor:
    """See the module doc. ``proc``: where the socket tables are read (``/proc/net``)."""

    def __init__(self, emit: Callable[[Event], None], *, use_bpf: bool | None = None,
                 limits: DecoyLimits | None = None, window: float = 10.0,
                 refresh: float = 5.0, max_recent: int = 20_000,
                 proc: Path = Path("/proc/net")) -> None:
        self._emit = emit
        if use_bpf is None:
            use_bpf = os.environ.get("MAMORI_KNOCK_BPF", "on").lower() not in ("off", "0")
        self.use_bpf = use_bpf
        self.guard = SourceGuard(limits or DecoyLimits(), emit, SOURCE)
        self.window, self.refresh, self.max_recent = window, refresh, max_recent
        self.proc = proc
        self.use_netlink = proc == Path("/proc/net")  # tests hand in their own tables
        self.listeners = Listeners()
        self._recent = RecentKeys(window, max_recent)
        self._socks: list[tuple[socket.socket, int, Proto]] = []
        self._filtered_ports: dict[tuple[str, int], frozenset[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_at = 0.0
        self._kernel_drops: dict[int, int] = {}  # fd -> the kernel's running count
        self._reported_drops = 0
        self.received = 0  # packets read from the sockets
        self.ignored = 0  # read but not knocks (a listener, ACK/RST, multicast...)
        self.knocks = 0  # port.knock events emitted
        self.repeated = 0  # the same knock again within the window
        self.suppressed = 0  # over the per-source event rate (counted in sensor.limit)
        self._summaries: dict[str, _Summary] = {}
        self._held: list[tuple[Knock, str, str, str, float]] = []  # float: time.time()
        self._judge_timer: asyncio.TimerHandle | None = None
        self.unsummarised = 0  # suppressed beyond MAX_SUMMARIES sources (only counted)
        self.errors: list[str] = []

    @property
    def kernel_drops(self) -> int:
        return sum(self._kernel_drops.values())

    async def start(self) -> bool:
        """Open the raw sockets (one ``sensor.error`` event per family and protocol that
        cannot open). False when none could open: then one ``sensor.error`` event instead,
        saying that knocks on closed ports are not watched and why (no root or
        CAP_NET_RAW, mostly)."""
        self._loop = asyncio.get_running_loop()
        failures: list[Event] = []
        self._read_listeners()
        protos: tuple[tuple[Proto, int], ...] = (
            ("tcp", socket.IPPROTO_TCP), ("udp", socket.IPPROTO_UDP))
        for proto, number in protos:
            def opener(version: int, number: int = number) -> socket.socket:
                sock = rawsock.open_raw(version, number, number)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
                try:  # room for a full-speed scan while the loop is busy (root: beyond rmem_max)
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                except OSError:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                return sock

            def reader(sock: socket.socket, version: int, proto: Proto = proto) -> None:
                self._read(sock, version, proto)

            opened = rawsock.open_all(
                self._loop, (4, 6), name=proto.upper(), proto=proto, source=SOURCE,
                opener=opener, reader=reader, emit=failures.append, errors=self.errors)
            self._socks += [(s, v, proto) for s, v in opened]
        if not self._socks and failures:
            self._emit(_not_watched(failures))
            return False
        for failure in failures:  # some run (IPv6 off, say): each missing one is told
            self._emit(failure)
        self._attach_filters()
        if self._socks:
            self._timer = self._loop.call_later(self.refresh, self._tick)
        return bool(self._socks)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rawsock.close_all(self._loop, [(s, v) for s, v, _ in self._socks])
        self._socks = []
        if self._judge_timer is not None:
            self._judge_timer.cancel()
        self._judge()
        self.guard.close()
        self._flush_summaries()
        self._report_kernel_drops()
        if self.received:
            self._emit(self._limit_event("knock totals", {
                "seen": str(self.received), "knocks": str(self.knocks),
                "repeated": str(self.repeated), "suppressed_events": str(self.suppressed),
                "ignored": str(self.ignored), "kernel_drops": str(self.kernel_drops),
                "unsummarised": str(self.unsummarised),
                "bpf": "on" if self.use_bpf else "off"}))

    def summary(self) -> str:
        """One line for the owner: what was read and where each knock went."""
        return (f"knocks: {self.received} segment(s) read, {self.knocks} event(s), "
                f"{self.suppressed} over the per-source rate (counted), {self.repeated} "
                f"repeat(s), {self.kernel_drops} dropped by the kernel (queue full)"
                + ("" if self.use_bpf else ", kernel filter off"))

    # -- listeners and filters ---------------------------------------------------------------

    def _read_listeners(self) -> None:
        def table(name: str, proto: str) -> set[tuple[str, int]]:
            family = socket.AF_INET6 if name.endswith("6") else socket.AF_INET
            if self.use_netlink:
                try:
                    return _dump(family, proto)
                except OSError:  # no sock_diag (an old or stripped kernel): /proc/net
                    self.use_netlink = False
            try:
                return parse_sockets((self.proc / name).read_text(errors="replace"), proto)
            except OSError:
                return set()

        found = Listeners(tcp4=table("tcp", "tcp"), tcp6=table("tcp6", "tcp"),
                          udp4=table("udp", "udp"), udp6=table("udp6", "udp"))
        with contextlib.suppress(OSError):
            found.broadcasts = parse_broadcasts((self.proc / "fib_trie").read_text())
        self.listeners = found
        self._read_at = time.monotonic()

    def _attach_filters(self) -> None:
        if not self.use_bpf:
            return
        for sock, version, proto in self._socks:
            ports = frozenset(self.listeners.wildcard_ports(proto, version))
            if self._filtered_ports.get((proto, version)) == ports:
                continue
            program = bpf.knock_program(4 if version == 4 else 6, proto, ports)
            code = ctypes.create_string_buffer(bpf.pack(program))
            fprog = struct.pack("HL", len(program), ctypes.addressof(code))
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            except OSError as exc:  # the reader's own checks still apply
                self.errors.append(f"BPF filter not attached: {exc}")
                continue
            self._filtered_ports[(proto, version)] = ports

    def _tick(self) -> None:
        self._timer = None
        self._read_listeners()
        self._attach_filters()
        self._report_kernel_drops()
        self._flush_summaries()
        if self._loop is not None and self._socks:
            self._timer = self._loop.call_later(self.refresh, self._tick)

    def _report_kernel_drops(self) -> None:
        total = self.kernel_drops
        if total > self._reported_drops:
            lost, self._reported_drops = total - self._reported_drops, total
            self._emit(self._limit_event(
                "kernel socket buffer full", {"kernel_drops": str(lost)}))

    def _summarise(self, knock: Knock, technique: str) -> None:
        held = self._summaries.get(knock.src)
        if held is None:
            if len(self._summaries) >= MAX_SUMMARIES:
                self.unsummarised += 1
                return
            held = _Summary(knock.dst, knock.proto, knock.dport, knock.dport, Counter())
            self._summaries[knock.src] = held
        held.low, held.high = min(held.low, knock.dport), max(held.high, knock.dport)
        held.techniques[technique] += 1

    def _flush_summaries(self) -> None:
        """One ``port.knock`` event per source for its knocks beyond the event rate (it joins
        the source's incident: "65,352 more knocks (syn) on ports 1-65535")."""
        pending, self._summaries = self._summaries, {}
        for src, held in pending.items():
            count = sum(held.techniques.values())
            top = held.techniques.most_common(1)[0][0]
            mix = ",".join(f"{t}:{n}" for t, n in held.techniques.most_common())
            self._emit(Event(
                time=datetime.now(UTC), type=EventType.PORT_KNOCK, source=SOURCE, src=src,
                dst=held.dst, proto=held.proto,
                fields=MappingProxyType({"technique": top, "techniques": mix,
                                         "summarised": str(count),
                                         "ports": f"{held.low}-{held.high}"}),
                excerpt=(f"{count} more knock(s) ({mix}) on ports {held.low}-{held.high} of "
                         f"{held.dst} and others, over the per-source event rate: counted, "
                         "not recorded one by one")))

    def _limit_event(self, reason: str, fields: dict[str, str]) -> Event:
        return Event(time=datetime.now(UTC), type=EventType.SENSOR_LIMIT, source=SOURCE,
                     fields=MappingProxyType({"reason": reason, **fields}))

    # -- reading -----------------------------------------------------------------------------

    def _read(self, sock: socket.socket, version: int, proto: Proto) -> None:
        for _ in range(_BATCH):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(bpf.SNAP, _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if len(self.errors) < 100:
                    self.errors.append(str(exc))
                return
            self.received += 1
            dst = ""
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                    self._kernel_drops[sock.fileno()] = struct.unpack("=I", value[:4])[0]
                elif (level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
                      and len(value) >= 16):
                    dst = str(ipaddress.IPv6Address(value[:16]))
            if version == 4:
                knock = parse_knock4(data, proto)
            else:
                knock = parse_knock6(data, proto, str(addr[0]).split("%", 1)[0], dst)
            if knock is None:
                self.ignored += 1
            else:
                self.see(knock)

    def see(self, knock: Knock) -> None:
        """One segment or datagram (the loop thread; public for tests). A port missing from
        the last listener set is judged after the set is read again (within ``REREAD``
        seconds): a listener opened since is then in it."""
        if knock.proto == "tcp":
            judged = tcp_technique(knock)
            if judged is None:
                self.ignored += 1
                return
            technique, certainty, fingerprint = judged
        else:
            technique, certainty, fingerprint = "udp", "seen", ""
        if (not _unicast(knock.dst) or knock.dst in self.listeners.broadcasts
                or self.listeners.is_open(knock.proto, knock.version, knock.dst, knock.dport)):
            self.ignored += 1
            return
        when = time.time()
        if self._loop is None or len(self._held) >= MAX_HELD:
            self._report(knock, technique, certainty, fingerprint, when)
            return
        self._held.append((knock, technique, certainty, fingerprint, when))
        if self._judge_timer is None:
            wait = max(0.0, self._read_at + REREAD - time.monotonic())
            self._judge_timer = self._loop.call_later(wait, self._judge)

    def _judge(self) -> None:
        """Read the listener set again and judge the misses held since the last read."""
        self._judge_timer = None
        if not self._held:
            return
        held, self._held = self._held, []
        self._read_listeners()
        for knock, technique, certainty, fingerprint, when in held:
            if self.listeners.is_open(knock.proto, knock.version, knock.dst, knock.dport):
                self.ignored += 1
            else:
                self._report(knock, technique, certainty, fingerprint, when)

    def _report(self, knock: Knock, technique: str, certainty: str, fingerprint: str,
                when: float) -> None:
        now = time.monotonic()
        if self._recent.repeat((knock.src, knock.dst, knock.dport, knock.proto, technique), now):
            self.repeated += 1
            return
        if not self.guard.allow_event(knock.src):
            self.suppressed += 1
            self._summarise(knock, technique)
            return
        self.knocks += 1
        fields = {"technique": technique, "certainty": certainty, "port_state": "closed"}
        if knock.proto == "tcp":
            fields["flags"] = _flag_label(knock.flags)
            fields["tcp_flags"] = f"0x{knock.flags:02x}"
        if fingerprint:
            fields["fingerprint"] = fingerprint
        how = f"{technique}, {certainty}" + (f": {fingerprint}" if fingerprint else "")
        what = "datagram" if knock.proto == "udp" else f"{fields['flags']} segment"
        self._emit(Event(
            time=datetime.fromtimestamp(when, UTC), type=EventType.PORT_KNOCK, source=SOURCE,
            src=knock.src,
            src_port=knock.sport, dst=knock.dst, dst_port=knock.dport, proto=knock.proto,
            fields=MappingProxyType(fields),
            excerpt=f"{what} to closed port {knock.dst}:{knock.dport}/{knock.proto} ({how})"))
