"""Hostile peers: identification ends in bounded time and memory with a recorded error.

Servers run in-process on 127.0.21.x: FLOOD (endless bytes), TRICKLE (a byte now and then),
SILENT (accepts, says nothing), GARBAGE (random bytes to everything), CLOSE (closes at once)
and RESET (RST at once).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
import tracemalloc

from fake_servers import Handler, tcp_server
from mamori.identify.engine import identify_tcp
from mamori.model import ErrorKind, ProbeError, Service
from mamori.net.stream import Limits

HOST = "127.0.21.2"
LIMITS = Limits(read_cap=8192, idle_timeout=1.0, deadline=2.0, connect_timeout=1.0)
BUDGET = 6.0
# Generous against the caps above (8 KiB per read, at most a handful of connections at once),
# tiny against what an unbounded reader would hold after seconds of flooding.
MEMORY_CAP = 4 * 1024 * 1024


async def flood_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # An HTTP head that never ends: readers waiting for "\r\n\r\n" must hit the cap.
    writer.write(b"HTTP/1.1 200 OK\r\nX-Flood: ")
    chunk = b"A" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def flood_binary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = os.urandom(65536)
    while True:
        writer.write(chunk)
        await writer.drain()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"2")
        await writer.drain()
        await asyncio.sleep(0.1)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(4096):
        pass
    await asyncio.sleep(3600)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(os.urandom(64))
    await writer.drain()
    while await reader.read(4096):
        writer.write(os.urandom(48))
        await writer.drain()


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _identify(port: int, handler: Handler) -> tuple[Service | None, list[ProbeError], float, int]:
    async def main() -> tuple[Service | None, list[ProbeError]]:
        async with tcp_server(HOST, port, handler):
            return await identify_tcp(HOST, port, limits=LIMITS, budget=BUDGET, banner_wait=0.5)

    tracemalloc.start()
    t0 = time.monotonic()
    try:
        service, errors = asyncio.run(main())
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return service, errors, elapsed, peak


def _kinds(errors: list[ProbeError]) -> set[ErrorKind]:
    return {e.kind for e in errors}


def test_flood_text_is_too_large() -> None:
    service, errors, elapsed, peak = _identify(21101, flood_text)
    assert ErrorKind.TOO_LARGE in _kinds(errors)
    # Its first line looks like HTTP, so "likely http" is a fair guess; never "confirmed".
    assert service is None or service.confidence == "likely"
    assert elapsed < BUDGET + 1
    assert peak < MEMORY_CAP


def test_flood_binary_bounded() -> None:
    service, errors, elapsed, peak = _identify(21102, flood_binary)
    assert service is None or service.name == "unknown"
    assert _kinds(errors) & {ErrorKind.TOO_LARGE, ErrorKind.GARBAGE}
    assert elapsed < BUDGET + 1
    assert peak < MEMORY_CAP


def test_trickle_is_trickle() -> None:
    service, errors, elapsed, peak = _identify(21103, trickle)
    assert ErrorKind.TRICKLE in _kinds(errors)
    assert service is None or service.name == "unknown"
    # One deadline for the NULL probe, then probing stops: the peer is hostile.
    assert elapsed < LIMITS.deadline + 1.5
    assert peak < MEMORY_CAP


def test_silent_is_idle() -> None:
    service, errors, elapsed, peak = _identify(21104, silent)
    assert service is None
    assert ErrorKind.IDLE in _kinds(errors)
    assert elapsed < BUDGET + 1
    assert peak < MEMORY_CAP


def test_garbage_is_unknown() -> None:
    service, errors, elapsed, _ = _identify(21105, garbage)
    assert service is not None and service.name == "unknown"
    assert service.confidence == "likely"
    assert service.banner
    assert ErrorKind.GARBAGE in _kinds(errors)
    assert elapsed < BUDGET + 1


def test_close_at_once() -> None:
    service, errors, elapsed, _ = _identify(21106, close_at_once)
    assert service is None
    assert errors and ErrorKind.CLOSED in _kinds(errors)
    assert elapsed < 2.0


def test_reset_at_once() -> None:
    service, errors, elapsed, _ = _identify(21107, reset_at_once)
    assert service is None
    assert ErrorKind.RESET in _kinds(errors)
    assert elapsed < 2.0


def test_refused() -> None:
    service, errors = asyncio.run(identify_tcp(HOST, 21108, limits=LIMITS, budget=BUDGET))
    assert service is None
    assert [e.kind for e in errors] == [ErrorKind.REFUSED]
