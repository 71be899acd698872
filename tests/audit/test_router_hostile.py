"""A lying, stalling, flooding IGD: every answer bounded, every failure a recorded error.

The fake gateway lives on 127.0.170.1 (SSDP on UDP 19000, HTTP on TCP 15000, NAT-PMP on UDP
15351); 127.0.170.2 is "another host" that a LOCATION may point at and that must never be
contacted. ``read_router`` must return (never raise, never hang) with ``error`` saying why.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from tests.protocols.test_protocols_upnp_igd import FAULT_713, description, soap_answer

from mamori.audit.router import RouterProbe, nat_kind, read_router
from mamori.audit.router_findings import router_results
from mamori.model import CheckStatus
from mamori.model.path import NatKind, RouterView

GW = "127.0.170.1"
OTHER = "127.0.170.2"
SSDP_PORT, HTTP_PORT, NATPMP_PORT = 19000, 15000, 15351
PROBE = RouterProbe(gateway=GW, ssdp_port=SSDP_PORT, natpmp_port=NATPMP_PORT, multicast=False,
                    ssdp_timeout=0.4, http_timeout=1.0, http_deadline=2.0, table_deadline=20.0)

Handler = Callable[[socket.socket, str, str, bytes], None]


def ssdp_answer(location: str) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
            b"SERVER: fake/1 UPnP/1.1 liar/0\r\nLOCATION: " + location.encode() + b"\r\n\r\n")


def http(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def entry(i: int, client: str = "127.0.170.10") -> bytes:
    return soap_answer("GetGenericPortMappingEntry", (
        f"<NewRemoteHost></NewRemoteHost><NewExternalPort>{1024 + i % 60000}</NewExternalPort>"
        f"<NewProtocol>TCP</NewProtocol><NewInternalPort>{1024 + i % 60000}</NewInternalPort>"
        f"<NewInternalClient>{client}</NewInternalClient><NewEnabled>1</NewEnabled>"
        f"<NewPortMappingDescription>app {i}</NewPortMappingDescription>"
        "<NewLeaseDuration>0</NewLeaseDuration>"))


def external(address: str) -> bytes:
    return soap_answer("GetExternalIPAddress",
                       f"<NewExternalIPAddress>{address}</NewExternalIPAddress>")


def fault(code: int, text: str) -> bytes:
    return FAULT_713.replace(b"713", str(code).encode()).replace(
        b"SpecifiedArrayIndexInvalid", text.encode())


@dataclass
class FakeIgd:
    """What the fake answers: SSDP datagrams, and per HTTP request a handler."""

    ssdp: list[bytes] = field(default_factory=lambda: [ssdp_answer(
        f"http://{GW}:{HTTP_PORT}/rootDesc.xml")])
    description: bytes = description(control="/ctl/IPConn")
    external: bytes = external("11.0.0.2")
    entries: Callable[[int], bytes] = lambda i: entry(i) if i < 2 else FAULT_713
    raw: Handler | None = None  # replaces the HTTP side entirely
    natpmp: bytes | None = None
    status: bytes | None = None  # the GetStatusInfo answer (None: 404, as before)
    requests: list[str] = field(default_factory=list)

    def answer(self, conn: socket.socket, path: str, action: str, body: bytes) -> None:
        self.requests.append(f"{path} {action}")
        if self.raw is not None:
            self.raw(conn, path, action, body)
            return
        if path == "/rootDesc.xml":
            conn.sendall(http(self.description))
        elif action.endswith("#GetExternalIPAddress\""):
            conn.sendall(http(self.external))
        elif action.endswith("#GetStatusInfo\"") and self.status is not None:
            conn.sendall(http(self.status))
        elif action.endswith("#GetGenericPortMappingEntry\""):
            index = int(body.split(b"<NewPortMappingIndex>")[1].split(b"<")[0])
            data = self.entries(index)
            conn.sendall(http(data, "500 Internal Server Error" if b"Fault" in data else "200 OK"))
        else:
            conn.sendall(http(b"", "404 Not Found"))


def _read_request(conn: socket.socket) -> tuple[str, str, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return "", "", b""
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return lines[0].split()[1], headers.get("soapaction", ""), body


@contextlib.contextmanager
def running_fake(fake: FakeIgd) -> Iterator[list[str]]:
    """The fake on GW; yields the list of connections seen by OTHER (must stay empty)."""
    stop = threading.Event()
    other_seen: list[str] = []
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((GW, SSDP_PORT))
    nat = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nat.bind((GW, NATPMP_PORT))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((GW, HTTP_PORT))
    tcp.listen(64)
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind((OTHER, HTTP_PORT))
    other.listen(8)
    for s in (udp, nat, tcp, other):
        s.settimeout(0.1)

    def ssdp_loop() -> None:
        while not stop.is_set():
            try:
                _, peer = udp.recvfrom(2048)
            except TimeoutError:
                continue
            for d in fake.ssdp:
                udp.sendto(d, peer)

    def natpmp_loop() -> None:
        while not stop.is_set():
            try:
                _, peer = nat.recvfrom(2048)
            except TimeoutError:
                continue
            if fake.natpmp is not None:
                nat.sendto(fake.natpmp, peer)

    def serve_one(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                path, action, body = _read_request(conn)
                if path:
                    fake.answer(conn, path, action, body)

    def http_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    def other_loop() -> None:
        while not stop.is_set():
            try:
                conn, peer = other.accept()
            except TimeoutError:
                continue
            other_seen.append(str(peer))
            conn.close()

    threads = [threading.Thread(target=f, daemon=True)
               for f in (ssdp_loop, natpmp_loop, http_loop, other_loop)]
    for t in threads:
        t.start()
    try:
        yield other_seen
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)
        for s in (udp, nat, tcp, other):
            s.close()


def read(fake: FakeIgd, probe: RouterProbe = PROBE, bound: float = 15.0
         ) -> tuple[RouterView, list[str]]:
    with running_fake(fake) as other_seen:
        start = time.monotonic()
        view = read_router(probe)
        took = time.monotonic() - start
    assert took < bound, f"read_router took {took:.1f} s"
    return view, other_seen


def test_the_fake_itself_reads_as_an_open_public_igd() -> None:
    view, _ = read(FakeIgd())
    assert view.found and view.error is None, view
    assert view.external_address == "11.0.0.2" and view.nat is NatKind.PUBLIC
    assert [m.external_port for m in view.mappings] == [1024, 1025]
    assert view.control_open is True


def test_65536_mappings_stop_at_the_cap_and_say_so() -> None:
    fake = FakeIgd(entries=lambda i: entry(i) if i < 65536 else FAULT_713)
    view, _ = read(fake, bound=60.0)
    assert len(view.mappings) == 1024
    assert view.mappings_truncated is True
    assert len(fake.requests) < 1030  # it never asked for entry 1024
    assert any("stopped after 1024 entries" in e for e in view.evidence)
    assert len(view.evidence) <= 64


def test_a_huge_description_is_cut_off_not_read() -> None:
    sent: list[int] = []

    def huge(conn: socket.socket, path: str, action: str, body: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<root>")
        with contextlib.suppress(OSError):
            for _ in range(10_000):  # 640 MB if nobody stops it
                conn.sendall(b"<x>" + b"A" * 65530 + b"</x>")
                sent.append(1)

    view, _ = read(FakeIgd(raw=huge))
    assert view.found is False
    assert "larger than 65536 bytes" in view.error
    assert len(sent) < 200  # the reader hung up long before


@pytest.mark.parametrize(("desc", "words"), [
    (b"<root><device><deviceType>x</deviceType>", "malformed XML"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 '
     b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;'
     b'&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><root>&lol2;</root>', "DTD"),
    (b'<?xml version="1.0"?><!DOCTYPE root SYSTEM "http://127.0.170.2:15000/x.dtd">'
     b"<root/>", "DTD"),
    (description(control="http://127.0.170.2:15000/ctl"), "not at the gateway"),
])
def test_bad_descriptions_are_recorded_errors(desc: bytes, words: str) -> None:
    view, other_seen = read(FakeIgd(description=desc))
    assert view.found is False
    assert words in view.error
    assert other_seen == []


def test_a_location_on_another_host_is_never_fetched() -> None:
    fake = FakeIgd(ssdp=[ssdp_answer(f"http://{OTHER}:{HTTP_PORT}/rootDesc.xml")])
    view, other_seen = read(fake)
    assert other_seen == []
    assert fake.requests == []
    assert view.found is False
    assert f"points at {OTHER}, not at the gateway {GW}" in view.error


def test_malformed_soap_is_recorded_not_a_mapping() -> None:
    fake = FakeIgd(external=b"<s:Envelope><s:Body>", entries=lambda i: b"<html>yes</html>")
    view, _ = read(fake)
    assert view.found is True
    assert view.external_address is None
    assert view.mappings == ()
    assert "GetExternalIPAddress: SOAP answer: malformed XML" in view.error
    assert view.control_open is None  # it never gave a real answer


def test_a_not_authorized_fault_is_control_refused() -> None:
    fake = FakeIgd(external=fault(606, "Action not authorized"),
                   entries=lambda i: fault(606, "Action not authorized"))
    view, _ = read(fake)
    assert view.control_open is False
    assert "Action not authorized" in view.error
    results = {r.check_id: r for r in router_results(view)}
    assert results["router-upnp-open"].status is CheckStatus.PASSED


def test_a_stalling_server_is_a_timeout() -> None:
    def stall(conn: socket.socket, path: str, action: str, body: bytes) -> None:
        time.sleep(4)

    view, _ = read(FakeIgd(raw=stall))
    assert view.found is False
    assert "stalled" in view.error or "did not finish" in view.error


def test_a_trickling_server_hits_the_whole_request_deadline() -> None:
    def trickle(conn: socket.socket, path: str, action: str, body: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):
                conn.sendall(b"X-A: b\r\n")
                time.sleep(0.3)  # always inside the read timeout, never done

    view, _ = read(FakeIgd(raw=trickle), bound=8.0)
    assert view.found is False
    assert "did not finish within 2 s" in view.error


def test_an_ssdp_flood_is_bounded() -> None:
    flood = [ssdp_answer(f"http://{GW}:{HTTP_PORT}/d{i}.xml") for i in range(500)]
    fake = FakeIgd(ssdp=flood, raw=lambda c, p, a, b: c.sendall(http(b"", "404 Not Found")))
    view, _ = read(fake)
    assert view.found is False
    assert len(fake.requests) <= 3  # distinct LOCATIONs tried, whatever the flood


@pytest.mark.parametrize(("address", "kind"), [
    ("100.64.1.2", NatKind.CGNAT), ("100.127.255.254", NatKind.CGNAT),
    ("192.168.1.2", NatKind.PRIVATE), ("10.0.0.2", NatKind.PRIVATE),
    ("11.0.0.2", NatKind.PUBLIC), ("0.0.0.0", NatKind.UNKNOWN), ("", NatKind.UNKNOWN),
    ("not-an-ip", NatKind.UNKNOWN),
])
def test_nat_kind(address: str, kind: NatKind) -> None:
    assert nat_kind(address) is kind


def test_an_igd_telling_a_cgnat_address_is_cgnat() -> None:
    view, _ = read(FakeIgd(external=external("100.64.1.2")))
    assert (view.external_address, view.nat) == ("100.64.1.2", NatKind.CGNAT)


def test_natpmp_only_gateway_behind_cgnat() -> None:
    answer = b"\x00\x80\x00\x00" + struct.pack("!I", 77) + bytes([100, 64, 1, 2])
    fake = FakeIgd(ssdp=[], natpmp=answer)
    view, _ = read(fake)
    assert view.found is True
    assert view.protocol == "natpmp"
    assert (view.external_address, view.nat) == ("100.64.1.2", NatKind.CGNAT)
    assert view.control_open is True
    assert any("NAT-PMP external address request" in e for e in view.evidence)


def test_natpmp_garbage_is_an_error() -> None:
    view, _ = read(FakeIgd(ssdp=[], natpmp=b"\xff" * 40))
    assert view.found is False
    assert "NAT-PMP: not a NAT-PMP external address answer" in view.error


def test_a_gateway_that_says_yes_to_everything_gives_no_finding() -> None:
    """The honeypot rule: 200 OK and "yes" to every request is no IGD, and no finding."""
    fake = FakeIgd(raw=lambda c, p, a, b: c.sendall(http(b"yes")))
    view, _ = read(fake)
    assert view.found is False
    results = router_results(view)
    assert results and all(r.status is not CheckStatus.FINDING for r in results)


def status_info(status: str) -> bytes:
    return soap_answer("GetStatusInfo", f"<NewConnectionStatus>{status}</NewConnectionStatus>"
                       "<NewLastConnectionError>ERROR_NONE</NewLastConnectionError>"
                       "<NewUptime>77</NewUptime>")


def natpmp_result(result: int) -> bytes:
    return b"\x00\x80" + struct.pack("!HI", result, 77)


def test_connected_with_an_empty_external_address_is_no_public_ipv4() -> None:
    """What Debian's miniupnpd does behind CGNAT: Connected, NewExternalIPAddress empty,
    NAT-PMP result 3: the router has no usable public address (likely)."""
    fake = FakeIgd(external=external(""), status=status_info("Connected"),
                   natpmp=natpmp_result(3))
    view, _ = read(fake)
    assert view.found and view.external_address is None
    assert view.nat is NatKind.NO_PUBLIC
    assert view.connection_status == "Connected"
    evidence = "\n".join(view.evidence)
    assert "POST GetStatusInfo: HTTP 200, NewConnectionStatus='Connected'" in evidence
    assert "network failure" in evidence
    assert view.mappings  # the table is still read


def test_a_disconnected_router_with_no_address_is_not_no_public() -> None:
    fake = FakeIgd(external=external(""), status=status_info("Disconnected"),
                   natpmp=natpmp_result(3))
    view, _ = read(fake)
    assert view.external_address is None and view.nat is NatKind.UNKNOWN
    assert view.connection_status == "Disconnected"


def test_no_status_answer_and_no_natpmp_stays_unknown() -> None:
    view, _ = read(FakeIgd(external=external("")))
    assert view.external_address is None and view.nat is NatKind.UNKNOWN
    assert view.connection_status == ""


def test_natpmp_result_3_alone_is_no_public_ipv4() -> None:
    view, _ = read(FakeIgd(ssdp=[], natpmp=natpmp_result(3)))
    assert view.found and view.protocol == "natpmp"
    assert view.external_address is None and view.nat is NatKind.NO_PUBLIC
    assert "NAT-PMP: network failure" in (view.error or "")


def test_natpmp_refusing_is_not_no_public_ipv4() -> None:
    view, _ = read(FakeIgd(ssdp=[], natpmp=natpmp_result(2)))
    assert view.nat is NatKind.UNKNOWN
