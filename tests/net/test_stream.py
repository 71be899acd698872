"""BoundedStream and exchange against small servers on 127.0.21.x: caps and clocks hold."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import time

import pytest

from fake_servers import tcp_server
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, Limits, ProbeFailure, exchange
from sweep_fixtures import netns_available, run_python

HOST = "127.0.21.1"
FAST = Limits(read_cap=4096, idle_timeout=0.5, deadline=1.5, connect_timeout=1.0)


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(line.upper())
    await writer.drain()


async def _flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"A" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.1)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def _half_then_quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nServer: half")
    await writer.drain()
    await asyncio.sleep(3600)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _run(port: int, handler, coro_factory):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with tcp_server(HOST, port, handler):
            return await coro_factory()

    return asyncio.run(main())


def test_exchange_returns_reply() -> None:
    reply = _run(21001, _echo_upper, lambda: exchange(HOST, 21001, b"hello\n", FAST,
                                                       done=lambda b: b.endswith(b"\n")))
    assert reply == b"HELLO\n"


def test_flood_is_capped() -> None:
    async def go() -> tuple[ProbeFailure, int]:
        stream = await BoundedStream.open(HOST, 21002, FAST)
        try:
            with pytest.raises(ProbeFailure) as info:
                await stream.read_until(lambda b: False)
            return info.value, stream.bytes_read
        finally:
            await stream.close()

    failure, read = _run(21002, _flood, go)
    assert failure.kind is ErrorKind.TOO_LARGE
    assert read <= FAST.read_cap
    assert len(failure.partial) <= FAST.read_cap


def test_trickle_hits_deadline() -> None:
    t0 = time.monotonic()
    with pytest.raises(ProbeFailure) as info:
        _run(21003, _trickle, lambda: exchange(HOST, 21003, None, FAST, done=lambda b: False))
    assert info.value.kind is ErrorKind.TRICKLE
    assert time.monotonic() - t0 < FAST.deadline + 1.0
    assert 0 < len(info.value.partial) < 100


def test_silent_is_idle() -> None:
    t0 = time.monotonic()
    with pytest.raises(ProbeFailure) as info:
        _run(21004, _silent, lambda: exchange(HOST, 21004, b"hi", FAST))
    assert info.value.kind is ErrorKind.IDLE
    assert time.monotonic() - t0 < FAST.idle_timeout + 1.0


def test_quiet_after_partial_keeps_partial() -> None:
    with pytest.raises(ProbeFailure) as info:
        _run(21005, _half_then_quiet,
             lambda: exchange(HOST, 21005, b"GET /", FAST, done=lambda b: b"\r\n\r\n" in b))
    assert info.value.kind is ErrorKind.TIMEOUT
    assert info.value.partial.startswith(b"HTTP/1.1 200 OK")


def test_reset_and_refused() -> None:
    with pytest.raises(ProbeFailure) as info:
        _run(21006, _reset, lambda: exchange(HOST, 21006, b"x" * 10, FAST, done=lambda b: False))
    assert info.value.kind is ErrorKind.RESET
    with pytest.raises(ProbeFailure) as refused:
        asyncio.run(exchange(HOST, 21007, b"x", FAST))
    assert refused.value.kind is ErrorKind.REFUSED
    assert refused.value.stage == "connect"


def test_read_some_respects_max_and_cap() -> None:
    async def go() -> list[int]:
        stream = await BoundedStream.open(HOST, 21008, FAST)
        try:
            sizes = [len(await stream.read_some(100)) for _ in range(3)]
            stream.rearm(Limits(read_cap=10, idle_timeout=0.5, deadline=1.0))
            sizes.append(len(await stream.read_some()))
            with pytest.raises(ProbeFailure) as info:
                await stream.read_some()
            assert info.value.kind is ErrorKind.TOO_LARGE
            return sizes
        finally:
            await stream.close()

    sizes = _run(21008, _flood, go)
    assert all(0 < s <= 100 for s in sizes[:3])
    assert sizes[3] <= 10


# ---- out of local ports: a shortage here, waited out within a bound, never the target's ----

_ONE_LOCAL_PORT = """
import asyncio, json, socket, struct, time
from mamori.net.stream import BoundedStream, Limits, ProbeFailure

async def main():
    listener = socket.socket(); listener.bind(("127.0.0.1", 8080)); listener.listen(16)
    held = socket.socket(); held.connect(("127.0.0.1", 8080))  # takes the only local port
    # Closed with a reset: no TIME_WAIT keeps the port after close.
    held.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    limits = Limits(idle_timeout=0.5, deadline=1.0, connect_timeout=1.0, local_wait=1.0)
    out = {}
    t0 = time.monotonic()
    try:
        await BoundedStream.open("127.0.0.1", 8080, limits)
    except ProbeFailure as exc:
        out["stuck"] = [exc.kind.value, exc.detail, exc.stage, time.monotonic() - t0]
    # The port comes free 0.3 s into the next wait: the connect then succeeds.
    asyncio.get_running_loop().call_later(0.3, held.close)
    stream = await BoundedStream.open("127.0.0.1", 8080, limits)
    out["waited"] = stream.local_wait
    await stream.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.root
def test_connect_waits_out_a_local_port_shortage_and_names_it_when_it_lasts() -> None:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    ns = f"mamori-onep{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                        "net.ipv4.ip_local_port_range=40000 40000"], check=True)
        data = run_python(_ONE_LOCAL_PORT, netns=ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    kind, detail, stage, elapsed = data["stuck"]
    assert (kind, stage) == ("resource", "connect")
    assert "no free local port" in detail and "shortage on this machine" in detail
    assert 0.9 <= elapsed < 2.0  # waited local_wait (1 s), no longer
    assert 0.25 <= data["waited"] < 1.0
