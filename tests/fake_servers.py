"""Small in-process servers for identification tests: hostile peers and faithful fakes.

``tcp_server`` serves a handler per connection inside the running loop, ``udp_server`` answers
each datagram, ``udp_ask`` sends one datagram and returns the first reply. Real Debian daemons
are started with ``daemons.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(host: str, port: int, handler: Handler) -> AsyncIterator[None]:
    """Serve ``handler`` per connection on host:port inside the running loop; on exit every
    connection is closed and every handler task cancelled (hostile handlers loop forever)."""
    tasks: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(wrapped, host, port, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport is not a DatagramTransport subclass, but has its API.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.reply(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


@contextlib.asynccontextmanager
async def udp_server(
    host: str, port: int, reply: Callable[[bytes], bytes | None]
) -> AsyncIterator[None]:
    """Answer each datagram with ``reply(data)`` (None: stay silent)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(reply), local_addr=(host, port))
    try:
        yield
    finally:
        transport.close()


async def udp_ask(
    host: str, port: int, payload: bytes, timeout: float = 2.0, cap: int = 65535
) -> bytes:
    """Send one datagram from an ephemeral port; return the first reply (b"" if none)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect((host, port))
        await loop.sock_sendall(sock, payload)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, cap), timeout)
        except (TimeoutError, ConnectionRefusedError):
            return b""
    finally:
        sock.close()
