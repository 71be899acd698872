"""mamori.net.datagram: bounded UDP request/replies against small loopback servers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time

import pytest

import fixtures_dns as fd
from mamori.model import ErrorKind
from mamori.net.datagram import DatagramLimits, ask
from mamori.net.stream import Limits, ProbeFailure
from sweep_fixtures import netns_available, run_python

HOST = "127.0.61.80"
FAST = DatagramLimits(timeout=0.5, tries=2, settle=0.2, window=3.0)


def _ask(port: int, payload: bytes = b"ping", limits: DatagramLimits = FAST):  # type: ignore[no-untyped-def]
    return asyncio.run(ask(HOST, port, payload, limits))


def test_every_reply_datagram_is_kept_and_measured() -> None:
    with fd.UdpServer(HOST, 6001, lambda d, _p: [b"x" * 100] * 5):
        got = _ask(6001, b"ping")
    assert got.replies == (b"x" * 100,) * 5
    assert (got.sent, got.bytes_out, got.bytes_in) == (1, 4, 500)
    assert got.factor == 125.0 and not got.truncated


def test_silence_is_an_empty_answer_after_every_try() -> None:
    with fd.UdpServer(HOST, 6002, lambda d, _p: []) as server:
        started = time.monotonic()
        got = _ask(6002)
    assert got.replies == () and got.sent == 2 and got.factor == 0.0
    assert len(server.received) == 2
    assert time.monotonic() - started < 2.0


def test_a_lost_first_try_is_retried_and_both_sends_count() -> None:
    seen: list[bytes] = []

    def second_only(data: bytes, _peer: tuple[str, int]) -> list[bytes]:
        seen.append(data)
        return [b"y" * 40] if len(seen) >= 2 else []

    with fd.UdpServer(HOST, 6003, second_only):
        got = _ask(6003, b"0123456789")
    assert got.sent == 2 and got.bytes_out == 20 and got.factor == 2.0


def test_icmp_port_unreachable_is_refused() -> None:
    with pytest.raises(ProbeFailure) as info:
        _ask(6004)
    assert info.value.kind is ErrorKind.REFUSED


def test_replies_from_another_port_do_not_count() -> None:
    # The server answers from a second socket (another port): a connected socket never
    # delivers that datagram, so the exchange sees silence.
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind((HOST, 0))

    def from_elsewhere(_data: bytes, peer: tuple[str, int]) -> list[bytes]:
        other.sendto(b"spoofed-looking reply", peer)
        return []

    try:
        with fd.UdpServer(HOST, 6005, from_elsewhere) as server:
            got = _ask(6005)
    finally:
        other.close()
    assert len(server.received) == 2 and got.replies == ()


def test_byte_cap_ends_a_flood() -> None:
    limits = DatagramLimits(timeout=0.5, tries=1, settle=0.5, window=3.0, read_cap=5000)
    with fd.UdpServer(HOST, 6006, lambda d, _p: [b"z" * 1400] * 50):
        got = _ask(6006, limits=limits)
    assert got.truncated
    assert 5000 <= got.bytes_in <= 5000 + 1400


def test_datagram_cap_ends_a_flood() -> None:
    limits = DatagramLimits(timeout=0.5, tries=1, settle=0.5, window=3.0, max_datagrams=7)
    with fd.UdpServer(HOST, 6007, lambda d, _p: [b"q"] * 50):
        got = _ask(6007, limits=limits)
    assert got.truncated and len(got.replies) == 7


def test_window_ends_a_trickle() -> None:
    # One datagram every 0.1 s forever: the settle time never passes, the window does.
    stop = threading.Event()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((HOST, 6008))

    def trickle() -> None:
        srv.settimeout(2)
        try:
            _, peer = srv.recvfrom(100)
        except OSError:
            return
        while not stop.is_set():
            try:
                srv.sendto(b"t" * 10, peer)
            except OSError:
                return
            time.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    limits = DatagramLimits(timeout=1.0, tries=1, settle=0.5, window=1.0)
    try:
        started = time.monotonic()
        got = _ask(6008, limits=limits)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=2)
        srv.close()
    assert 1.0 <= elapsed < 1.6 and 5 <= len(got.replies) <= 12 and not got.truncated


def test_limits_follow_a_check_runs_stream_limits() -> None:
    limits = DatagramLimits.from_limits(Limits(read_cap=1000, idle_timeout=1.5, deadline=4.0),
                                        settle=0.3, tries=3)
    assert (limits.timeout, limits.window, limits.settle, limits.tries) == (1.5, 4.0, 0.3, 3)
    assert limits.read_cap == 65536 * 4


_ONE_LOCAL_UDP_PORT = """
import asyncio, json, socket, time
from mamori.net.datagram import DatagramLimits, ask
from mamori.net.stream import ProbeFailure

async def main():
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); echo.bind(("127.0.0.1", 9999))
    loop = asyncio.get_running_loop()
    loop.add_reader(echo, lambda: echo.sendto(*echo.recvfrom(2048)))
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.connect(("127.0.0.1", 9999))  # takes the only local port
    limits = DatagramLimits(timeout=0.5, tries=1, settle=0.1, window=1.0, local_wait=1.0)
    out = {}
    t0 = time.monotonic()
    try:
        await ask("127.0.0.1", 9999, b"ping", limits)
    except ProbeFailure as exc:
        out["stuck"] = [exc.kind.value, exc.detail, time.monotonic() - t0]
    loop.call_later(0.3, held.close)  # the port comes free during the next wait
    got = await ask("127.0.0.1", 9999, b"ping", limits)
    out["replies"] = [r.decode() for r in got.replies]
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.root
def test_udp_waits_out_a_local_port_shortage_and_names_it_when_it_lasts() -> None:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    ns = f"mamori-oneu{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                        "net.ipv4.ip_local_port_range=40000 40000"], check=True)
        data = run_python(_ONE_LOCAL_UDP_PORT, netns=ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    kind, detail, elapsed = data["stuck"]
    assert kind == "resource" and "shortage on this machine" in detail, detail
    assert 0.9 <= elapsed < 2.0
    assert data["replies"] == ["ping"]
