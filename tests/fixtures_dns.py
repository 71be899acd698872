"""Servers for the open-resolver and UDP-amplifier tests (addresses 127.0.61.0/24).

Real daemons (unbound, ntpsec's ntpd, memcached, snmpd) run with configs written here, each
misconfigured or hardened; where Debian has no daemon for a case (NTP mode 7 monlist, which
ntpsec dropped; SSDP; an mDNS responder, since avahi needs multicast interfaces and binds
wildcards) a small faithful server speaks the real protocol bytes.

No test resolver may reach the Internet: unbound gets a stub zone for "." pointing at the
test's own authoritative server, so every query it makes goes to 127.0.61.x; the authoritative
server answers only from its table and never refers anywhere else.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import daemons as dm
from mamori.protocols import dns
from mamori.protocols import ntp_control as ntpc

AUTH_HOST = "127.0.61.10"
# The known answer of the name the open-resolver test asks (TEST-NET-1: only ever data here).
OUTSIDE_NAME = "www.outside.test"
OUTSIDE_ADDRESS = "192.0.2.77"
ROOT_NS = tuple(f"{c}.root-servers.test" for c in "abcdefghijklm")

# --- a small authoritative server for "." (and so for outside.test) ---------------------------

TYPE_SOA, TYPE_NS, TYPE_OPT = 6, 2, 41


def _a(address: str) -> bytes:
    return socket.inet_aton(address)


def _soa() -> bytes:
    return (dns.encode_name("a.root-servers.test") + dns.encode_name("hostmaster.root-servers.test")
            + struct.pack(">IIIII", 2024010101, 1800, 900, 604800, 86400))


def zone(auth_host: str) -> dict[tuple[str, int], list[bytes]]:
    """The records the fake root serves, by (lower-case name, type)."""
    records: dict[tuple[str, int], list[bytes]] = {
        ("", TYPE_NS): [dns.encode_name(n) for n in ROOT_NS],
        ("", TYPE_SOA): [_soa()],
        ("outside.test", dns.TYPE_A): [_a("192.0.2.1")],
        (OUTSIDE_NAME, dns.TYPE_A): [_a(OUTSIDE_ADDRESS)],
        (OUTSIDE_NAME, dns.TYPE_TXT): [bytes([40]) + b"outside.test answer for mamori's tests!!"],
    }
    for ns in ROOT_NS:
        records[(ns, dns.TYPE_A)] = [_a(auth_host)]
    return records


def _rr(name: str, rtype: int, rdata: bytes, ttl: int = 3600) -> bytes:
    return dns.encode_name(name) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def authoritative_reply(query: bytes, records: dict[tuple[str, int], list[bytes]]) -> bytes | None:
    """The answer an authoritative server for "." gives ``query`` (None: not a query)."""
    msg = dns.parse_message(query)
    if msg is None or msg.is_response or len(msg.questions) != 1:
        return None
    qname, qtype, qclass = msg.questions[0]
    name = qname.rstrip(".").lower()
    arcount = int.from_bytes(query[10:12], "big")
    answers: list[bytes] = []
    authority: list[bytes] = []
    additional: list[bytes] = []
    rcode = 0
    types = [qtype] if qtype != 255 else sorted({t for (n, t) in records if n == name})
    for t in types:
        answers += [_rr(qname or ".", t, rd) for rd in records.get((name, t), [])]
    if not answers:
        exists = any(n == name for (n, _) in records)
        rcode = 0 if exists else 3
        authority.append(_rr(".", TYPE_SOA, records[("", TYPE_SOA)][0]))
    elif qtype == TYPE_NS and name == "":
        additional += [_rr(ns, dns.TYPE_A, records[(ns, dns.TYPE_A)][0]) for ns in ROOT_NS]
    if arcount:  # EDNS in the query: answer with our own OPT (1232-byte buffer)
        additional.append(b"\x00" + struct.pack(">HHIH", TYPE_OPT, 1232, 0, 0))
    flags = 0x8400 | (0x0100 if query[2] & 0x01 else 0) | rcode  # QR AA (RD copied)
    head = struct.pack(">HHHHHH", msg.txid, flags, 1, len(answers), len(authority),
                       len(additional))
    question = dns.encode_name(qname) + struct.pack(">HH", qtype, qclass)
    body = head + question + b"".join(answers + authority + additional)
    limit = 1232 if arcount else 512
    if len(body) > limit:  # too big for the client's buffer: truncated, TC set
        head = struct.pack(">HHHHHH", msg.txid, flags | 0x0200, 1, 0, 0, 0)
        body = head + question
    return body


# --- threaded UDP servers (work under asyncio.run in the code under test) ---------------------

Responder = Callable[[bytes, tuple[str, int]], list[bytes]]


class UdpServer:
    """Answer each datagram with ``respond(data, peer)`` (a list: none, one or many replies)."""

    def __init__(self, host: str, port: int, respond: Responder) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.respond = respond
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.received: list[bytes] = []

    def _loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            for out in self.respond(data, peer):
                with contextlib.suppress(OSError):
                    self.sock.sendto(out, peer)

    def __enter__(self) -> UdpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@contextlib.contextmanager
def fake_root(host: str = AUTH_HOST, port: int = 5300) -> Iterator[UdpServer]:
    """The test's authoritative server for "." (and outside.test) on host:port."""
    records = zone(host)

    def respond(data: bytes, _peer: tuple[str, int]) -> list[bytes]:
        out = authoritative_reply(data, records)
        return [out] if out is not None else []

    with UdpServer(host, port, respond) as server:
        yield server


# --- unbound as an open or closed resolver ----------------------------------------------------


def start_unbound_resolver(workdir: Path, host: str, port: int, *, auth: tuple[str, int],
                           open_to_all: bool) -> dm.Daemon:
    """unbound on host@port whose only upstream is the test's authoritative server ``auth``.

    ``open_to_all``: access-control allows 127.0.0.0/8 (the misconfiguration: anyone who
    reaches it may recurse); otherwise it refuses everyone but 10.9.8.0/24, a network the
    tests never use (the hardened form: recursion only for one's own LAN).
    """
    unbound = dm._need("/usr/sbin/unbound")
    pid = workdir / "unbound.pid"
    acl = ("  access-control: 127.0.0.0/8 allow\n" if open_to_all else
           # unbound allows 127.0.0.0/8 by default: refuse it explicitly.
           "  access-control: 0.0.0.0/0 refuse\n  access-control: 127.0.0.0/8 refuse\n"
           "  access-control: 10.9.8.0/24 allow\n")
    cfg = workdir / "unbound.conf"
    cfg.write_text(
        "server:\n"
        f"  interface: {host}@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n"
        f"  username: \"\"\n  directory: \"{workdir}\"\n  pidfile: \"{pid}\"\n"
        "  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n"
        "  do-ip6: no\n  do-tcp: no\n"
        # Its own queries leave from its own loopback address, to the stub only.
        f"  outgoing-interface: {host}\n"
        "  do-not-query-localhost: no\n"
        # "test." is a blocked default local zone in unbound: serve it through the stub.
        "  local-zone: \"test.\" nodefault\n"
        '  module-config: "iterator"\n  qname-minimisation: no\n'
        "  minimal-responses: no\n  hide-version: yes\n  hide-identity: yes\n"
        "  num-threads: 1\n  outgoing-range: 16\n"
        + acl
        # The only path upstream: every name lives under "." and "." is the test's server.
        + f"stub-zone:\n  name: \".\"\n  stub-addr: {auth[0]}@{auth[1]}\n"
        "remote-control:\n  control-enable: no\n"
    )
    proc, log = dm._spawn([unbound, "-d", "-c", str(cfg)], workdir, "unbound.log")
    d = dm.Daemon("unbound", host, port, proc, workdir, pid, log)
    return dm._started(d, lambda: dm.wait_udp(host, port, proc=proc))


# --- ntpsec: mode 6 with and without noquery ---------------------------------------------------


def start_ntpsec(workdir: Path, host: str, *, noquery: bool) -> dm.Daemon:
    """ntpsec's ntpd on host:123 (adds host/32 on lo). ``noquery`` False is the
    misconfiguration: mode 6 queries answered for everyone."""
    ntpd = dm._need("/usr/sbin/ntpd")
    undo = dm.add_lo_alias(host)
    pid = workdir / "ntpd.pid"
    restrict = "kod nomodify nopeer limited" + (" noquery" if noquery else "")
    cfg = workdir / "ntp.conf"
    cfg.write_text(
        "interface ignore all\n"
        f"interface listen {host}\n"
        "interface ignore wildcard\ninterface ignore ipv6\n"
        f"driftfile {workdir}/ntp.drift\n"
        f"restrict default {restrict}\n"
        # The local refclock only: ntpd never looks for servers outside.
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n"
    )
    proc, log = dm._spawn([ntpd, "-n", "-c", str(cfg), "-p", str(pid), "-u", "root"],
                          workdir, "ntpd.log")
    d = dm.Daemon("ntpd", host, 123, proc, workdir, pid, log, cleanup=[undo])
    return dm._started(d, lambda: dm.wait_udp(host, 123, proc=proc))


# --- faithful NTP mode 6 / mode 7 server (ntpd 4.2.x behaviour) -------------------------------

# What ntpd 4.2.8 answers READVAR for the system variables (association 0), one fragment.
READVAR_TEXT = (
    b'version="ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)",\r\n'
    b'processor="x86_64", system="Linux/5.10.0-28-amd64", leap=00, stratum=2,\r\n'
    b"precision=-24, rootdelay=1.402, rootdisp=21.930, refid=192.0.2.123,\r\n"
    b"reftime=0xe9f0a2c1.5d2f1a9b, clock=0xe9f0a3b2.1c7e2f43, peer=51966, tc=10,\r\n"
    b"mintc=3, offset=-0.118, frequency=-12.734, sys_jitter=0.259,\r\n"
    b"clk_jitter=0.081, clk_wander=0.012, tai=37, leapsec=201701010000,\r\n"
    b"expire=202612280000"
)


def readvar_replies(request: bytes) -> list[bytes]:
    """ntpd's answer to a mode 6 READVAR request (system variables), padded to 4 bytes."""
    sequence = int.from_bytes(request[2:4], "big")
    version = (request[0] >> 3) & 7
    data = READVAR_TEXT + bytes(-len(READVAR_TEXT) % 4)
    head = struct.pack(">BBHHHHH", (version << 3) | 6, 0x80 | ntpc.OP_READVAR, sequence,
                       0x0618, 0, 0, len(READVAR_TEXT))
    return [head + data]


# --- faithful NTP mode 7 monlist server (ntpd 4.2.6 behaviour) --------------------------------


def monlist_items(count: int) -> list[bytes]:
    """``info_monitor_1`` items (72 bytes) for ``count`` made-up clients in 198.18.0.0/15."""
    items = []
    for i in range(count):
        addr = socket.inet_aton(f"198.18.{i // 250}.{1 + i % 250}")
        items.append(struct.pack(">IIII", 64, 3, 0, 10 + i) + addr + socket.inet_aton(AUTH_HOST)
                     + struct.pack(">IHBB", 0, 123, 3, 4) + bytes(8) + bytes(32))
    return items


def ntp_responder(*, monlist: bool, mode6: bool, noquery: bool = False,
                  clients: int = 60) -> Responder:
    """Replies as old ntpd. Mode 7 monlist: with ``monlist`` (monitor on) the client list, 6
    items per datagram, M set on all but the last; otherwise the one-datagram error ntpd
    sends when monitoring is disabled (INFO_ERR_NODATA, no items). Mode 6 READVAR answered
    when ``mode6``. ``noquery``: every mode 6/7 request is dropped silently, as ntpd does."""
    items = monlist_items(clients)

    def respond(data: bytes, _peer: tuple[str, int]) -> list[bytes]:
        if noquery or len(data) < 8:
            return []
        if data[0] & 7 == 6 and len(data) >= 12 and data[1] == ntpc.OP_READVAR:
            return readvar_replies(data) if mode6 else []
        if data[0] & 7 != 7 or data[3] != ntpc.REQ_MON_GETLIST_1:
            return []
        impl, req = data[2], data[3]
        if not monlist:
            return [bytes([0x80 | (2 << 3) | 7, 0, impl, req]) + struct.pack(">HH", 4 << 12, 0)]
        chunks = [items[i : i + 6] for i in range(0, len(items), 6)]
        out = []
        for seq, chunk in enumerate(chunks):
            more = 0x40 if seq < len(chunks) - 1 else 0
            head = bytes([0x80 | more | (2 << 3) | 7, seq, impl, req])
            out.append(head + struct.pack(">HH", len(chunk), 72) + b"".join(chunk))
        return out

    return respond


# --- faithful SSDP responder (miniupnpd-like) --------------------------------------------------

SSDP_TARGETS = (
    "upnp:rootdevice",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:WANDevice:1",
    "urn:schemas-upnp-org:device:WANConnectionDevice:1",
    "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:Layer3Forwarding:1",
)


def ssdp_responder(host: str, *, lan: str | None) -> Responder:
    """Answer ``M-SEARCH ssdp:all`` with one reply per device/service, as miniupnpd does.
    With ``lan`` set (e.g. "192.168.1."), queries from other sources are ignored: miniupnpd
    answers only on its LAN interfaces."""

    def respond(data: bytes, peer: tuple[str, int]) -> list[bytes]:
        if not data.startswith(b"M-SEARCH * HTTP/1.1\r\n") or b"ssdp:discover" not in data:
            return []
        if lan is not None and not peer[0].startswith(lan):
            return []
        uuid = "uuid:4d696e69-444c-164e-9d41-b827eb123456"
        return [
            ("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
             f"ST: {st}\r\nUSN: {uuid}::{st}\r\nEXT:\r\n"
             "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.3\r\n"
             f"LOCATION: http://{host}:5000/rootDesc.xml\r\n"
             "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n"
             "01-NLS: 1700000000\r\nBOOTID.UPNP.ORG: 1700000000\r\nCONFIGID.UPNP.ORG: 1337\r\n"
             "\r\n").encode()
            for st in SSDP_TARGETS
        ]

    return respond


# --- faithful mDNS responder (legacy unicast answers, RFC 6762 section 6.7) -------------------

MDNS_SERVICES = ("_smb._tcp.local", "_afpovertcp._tcp.local", "_ssh._tcp.local",
                 "_sftp-ssh._tcp.local", "_http._tcp.local", "_device-info._tcp.local",
                 "_rfb._tcp.local", "_adisk._tcp.local")


def mdns_responder(*, on_link: str | None) -> Responder:
    """Answer the DNS-SD service enumeration query with PTR records, echoing the query id
    and question as RFC 6762 legacy unicast replies do. With ``on_link`` (an address prefix),
    queries from other sources are dropped, as RFC 6762 section 11 asks responders to do."""

    def respond(data: bytes, peer: tuple[str, int]) -> list[bytes]:
        msg = dns.parse_message(data)
        if msg is None or msg.is_response or len(msg.questions) != 1:
            return []
        if on_link is not None and not peer[0].startswith(on_link):
            return []
        qname, qtype, _ = msg.questions[0]
        if qname.lower() != "_services._dns-sd._udp.local" or qtype not in (dns.TYPE_PTR, 255):
            return []
        answers = [_rr(qname, dns.TYPE_PTR, dns.encode_name(s), ttl=10) for s in MDNS_SERVICES]
        head = struct.pack(">HHHHHH", msg.txid, 0x8400, 1, len(answers), 0, 0)
        question = dns.encode_name(qname) + struct.pack(">HH", dns.TYPE_PTR, 1)
        return [head + question + b"".join(answers)]

    return respond
