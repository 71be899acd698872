"""One UDP request answered from another port of the same host (TFTP's transfer ID).

``ask`` in datagram.py connects its socket, so the kernel drops exactly such replies. Here
the socket stays unconnected; datagrams from any other address are ignored, the first one
from ``host`` is kept, and ``farewell`` (if given) is sent back to the port it came from, so
the server can end what it started. Bounded: one reply, ``tries`` sends, ``timeout`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from dataclasses import dataclass

from mamori.model import ErrorKind
from mamori.net.datagram import MAX_DATAGRAM
from mamori.net.stream import ProbeFailure

__all__ = ["TidReply", "ask_any_port"]


@dataclass(frozen=True)
class TidReply:
    data: bytes | None  # None: nothing came back from the host
    port: int  # the port it came from (0 when nothing came)
    sent: int


async def ask_any_port(host: str, port: int, payload: bytes, *, timeout: float, tries: int,
                       farewell: bytes | None = None) -> TidReply:
    """Send ``payload`` to host:port; return the first datagram from ``host`` (any port).

    Raises ProbeFailure (OS) when the socket cannot be made or the send fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    want = ipaddress.ip_address(host)
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise ProbeFailure(ErrorKind.OS, f"UDP socket: {exc.strerror}") from None
    sock.setblocking(False)
    sent = 0
    try:
        for _ in range(max(1, tries)):
            try:
                await loop.sock_sendto(sock, payload, (host, port))
            except OSError as exc:
                raise ProbeFailure(ErrorKind.OS, f"send: {exc.strerror}") from None
            sent += 1
            end = time.monotonic() + timeout
            while (left := end - time.monotonic()) > 0:
                try:
                    data, peer = await asyncio.wait_for(
                        loop.sock_recvfrom(sock, MAX_DATAGRAM), timeout=left)
                except (TimeoutError, OSError):
                    break
                if ipaddress.ip_address(peer[0]) != want:
                    continue
                if farewell is not None:
                    with contextlib.suppress(OSError):
                        await loop.sock_sendto(sock, farewell, (host, peer[1]))
                return TidReply(data, int(peer[1]), sent)
    finally:
        sock.close()
    return TidReply(None, 0, sent)
