"""UDP sweep against real sockets on loopback (127.0.10.0/24, ::1) and, for ICMP rate limiting
and ICMP-filtered ports, across a veth pair between two namespaces the test creates.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from mamori.model import PortState, Reason
from mamori.net.sweep import SweepOptions
from mamori.net.udp import udp_sweep
from sweep_fixtures import netns_pair, run_python, run_udp


class UdpServer:
    """A UDP socket on (host, port) whose handler decides what to send back, from where."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Callable[[socket.socket, bytes, tuple[str, int]], None],
    ) -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.05)
        self.handler = handler
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append(data)
            self.handler(self.sock, data, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[list[UdpServer]]:
    made: list[UdpServer] = []
    yield made
    for s in made:
        s.close()


def echo(sock: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
    sock.sendto(b"echo:" + data, peer)


def silent(_sock: socket.socket, _data: bytes, _peer: tuple[str, int]) -> None:
    pass


def free_udp_port(host: str, low: int) -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(low, low + 500):
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    raise AssertionError("no free UDP port")


def test_open_closed_and_silent_ports_ipv4(servers: list[UdpServer]) -> None:
    host = "127.0.10.40"
    base = free_udp_port(host, 33000)
    ports = list(range(base, base + 300))
    servers.append(UdpServer(host, base + 10, echo))
    servers.append(UdpServer(host, base + 20, silent))
    run = run_udp([host], ports, payload_for=lambda p: b"probe-%d" % p)
    assert run.stats is not None
    by_port = {r.port: r for r in run.results}
    hit = by_port[base + 10]
    assert hit.state is PortState.OPEN and hit.reason is Reason.UDP_RESPONSE
    assert hit.reply == b"echo:probe-%d" % (base + 10)  # the per-port payload, echoed
    quiet = by_port[base + 20]
    assert quiet.state is PortState.OPEN_FILTERED and quiet.reason is Reason.NO_RESPONSE
    assert quiet.reply is None
    assert set(by_port) == {base + 10, base + 20}  # closed ones only counted
    assert run.stats.counts[host] == {"open": 1, "closed": 298, "filtered": 0, "open|filtered": 1}
    assert not run.errors
    assert sum(run.progress) == 300
    # The silent port got its retry: 300 first tries + 1.
    assert run.stats.attempts == 301 and run.stats.retried == 1
    assert servers[1].received == [b"probe-%d" % (base + 20)] * 2


def test_ipv6_loopback(servers: list[UdpServer]) -> None:
    base = free_udp_port("::1", 34000)
    servers.append(UdpServer("::1", base + 3, echo))
    run = run_udp(["::1"], range(base, base + 50), payload_for=lambda p: b"x")
    assert run.stats is not None
    assert {(r.port, r.state) for r in run.results} == {(base + 3, PortState.OPEN)}
    assert run.stats.counts["::1"]["closed"] == 49


def test_reply_from_another_port_or_address_does_not_count(servers: list[UdpServer]) -> None:
    host = "127.0.10.41"
    other = "127.0.10.42"
    base = free_udp_port(host, 35000)
    liar_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    liar_port.bind((host, base + 1))  # answers for base from base + 1
    liar_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    liar_addr.bind((other, base + 2))  # answers for host:base+2 from other:base+2

    def from_other_port(_s: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        liar_port.sendto(b"not me", peer)

    def from_other_address(_s: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        liar_addr.sendto(b"not me either", peer)

    try:
        servers.append(UdpServer(host, base, from_other_port))
        servers.append(UdpServer(host, base + 2, from_other_address))
        run = run_udp([host], [base, base + 2], SweepOptions(max_timeout=0.3, retries=1))
    finally:
        liar_port.close()
        liar_addr.close()
    states = {r.port: (r.state, r.reply) for r in run.results}
    assert states == {
        base: (PortState.OPEN_FILTERED, None),
        base + 2: (PortState.OPEN_FILTERED, None),
    }
    assert len(servers[0].received) == 2 and len(servers[1].received) == 2  # both tried twice


def test_late_answer_on_retry_is_open(servers: list[UdpServer]) -> None:
    host = "127.0.10.43"
    port = free_udp_port(host, 36000)
    seen: list[int] = []

    def second_time_lucky(sock: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        seen.append(1)
        if len(seen) >= 2:
            sock.sendto(b"finally", peer)

    servers.append(UdpServer(host, port, second_time_lucky))
    run = run_udp([host], [port], SweepOptions(initial_timeout=0.2, max_timeout=0.3))
    assert [(r.state, r.reply) for r in run.results] == [(PortState.OPEN, b"finally")]
    assert run.stats is not None and run.stats.retried == 1


def test_large_reply_is_kept_whole(servers: list[UdpServer]) -> None:
    host = "127.0.10.44"
    port = free_udp_port(host, 37000)
    big = bytes(range(256)) * 200  # 51,200 bytes

    def blast(sock: socket.socket, _data: bytes, peer: tuple[str, int]) -> None:
        sock.sendto(big, peer)

    servers.append(UdpServer(host, port, blast))
    run = run_udp([host], [port])
    assert run.results[0].reply == big


def test_payload_errors_and_bad_targets() -> None:
    with pytest.raises(ValueError):
        udp_sweep(
            ["127.0.10.45"],
            [1000],
            SweepOptions(),
            lambda r: None,
            payload_for=lambda p: b"x" * 70000,
        )
    with pytest.raises(ValueError):
        udp_sweep(["not-an-ip"], [53], SweepOptions(), lambda r: None)


def test_rate_and_stop(servers: list[UdpServer]) -> None:
    host = "127.0.10.46"
    base = free_udp_port(host, 38000)
    run = run_udp([host], range(base, base + 100), SweepOptions(rate=500))
    assert run.stats is not None
    assert run.stats.elapsed >= 0.18  # 100 datagrams at 500/s
    calls: list[int] = []

    def second_call_stops() -> bool:
        calls.append(1)
        return len(calls) > 1

    stopped = run_udp(
        [host], range(base, base + 5000), SweepOptions(rate=1000), should_stop=second_call_stops
    )
    assert stopped.stats is not None and stopped.stats.stopped
    assert stopped.stats.elapsed < 1.0
    assert sum(stopped.stats.counts[host].values()) < 5000


# ---- across namespaces: ICMP that is filtered, and ICMP that is rate limited --------------

_FAR_UDP_SERVER = """
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{far}", 7001))
def serve():
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(b"hello " + data, peer)
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

_NEAR_UDP_SWEEP = """
import json
from mamori.net.sweep import SweepOptions
from mamori.net.udp import udp_sweep
res, errs = [], []
st = udp_sweep(["{far}"], {ports!r}, SweepOptions(**{opts!r}),
               lambda r: res.append([r.port, r.state.value, r.reason.value,
                                     (r.reply or b"").decode()]),
               lambda e: errs.append(e.detail), payload_for=lambda p: b"mamori")
print(json.dumps({{"results": res, "errors": errs, "counts": st.counts["{far}"],
                  "attempts": st.attempts, "elapsed": st.elapsed}}))
"""


@pytest.mark.root
def test_udp_states_across_namespaces_with_rate_limited_icmp() -> None:
    with netns_pair(subnet=43) as ns:
        # The far host answers at most ten ICMP errors per second per peer (burst 6): a real
        # rate limit, ten times Linux's default rate so the test stays short.
        ns.sh(ns.far, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=100")
        ns.nft(
            ns.far,
            """
            table inet mamori_test {
              chain input {
                type filter hook input priority 0; policy accept;
                udp dport 7002 drop
                udp dport 7004 reject with icmpx type admin-prohibited
              }
            }
            """,
        )
        ns.serve(_FAR_UDP_SERVER.format(far=ns.far_ip))
        closed = list(range(7100, 7130))  # 30 closed ports: 5x the ICMP burst
        ports = [7001, 7002, 7004, *closed]
        opts = {"initial_timeout": 0.3, "min_timeout": 0.1, "max_timeout": 0.3, "retries": 1}
        data = run_python(
            _NEAR_UDP_SWEEP.format(far=ns.far_ip, ports=ports, opts=opts),
            netns=ns.near,
            timeout=60,
        )
    states = {p: (s, r) for p, s, r, _ in data["results"]}
    assert states[7001] == ("open", "udp-response")
    assert states[7002] == ("open|filtered", "no-response")
    assert states[7004] == ("filtered", "host-unreach")
    replies = {p: reply for p, _, _, reply in data["results"]}
    assert replies[7001] == "hello mamori"
    # Every closed port is closed despite the rate limit: none left as open|filtered.
    assert data["counts"] == {"open": 1, "closed": 30, "filtered": 1, "open|filtered": 1}
    assert data["errors"] == []
