"""Raw sockets for the watch sensors (ICMP, TCP knocks): opened per address family, with one
``sensor.error`` event per family that cannot open (no root / CAP_NET_RAW), and read from the
asyncio loop. The only place watch opens raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

from mamori.model.watch import Event, EventType

RawSock = tuple[socket.socket, int]  # (socket, IP version)


def open_raw(version: int, proto4: int, proto6: int) -> socket.socket:
    """A non-blocking raw socket for ``proto4`` (IPv4) or ``proto6`` (IPv6, with the packet
    info that carries the destination address)."""
    if version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto4)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto6)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        except OSError:
            sock.close()
            raise
    sock.setblocking(False)
    return sock


def open_all(
    loop: asyncio.AbstractEventLoop,
    families: Sequence[int],
    *,
    name: str,
    proto: str,
    source: str,
    opener: Callable[[int], socket.socket],
    reader: Callable[[socket.socket, int], None],
    emit: Callable[[Event], None],
    errors: list[str],
) -> list[RawSock]:
    """Open one socket per family and register ``reader`` for it; a family that cannot open
    becomes a reason in ``errors`` and a ``sensor.error`` event (``name`` e.g. "ICMP")."""
    socks: list[RawSock] = []
    for version in families:
        try:
            sock = opener(version)
        except OSError as exc:
            why = exc.strerror or exc
            reason = (f"raw {name}v{version} socket not permitted (needs root or CAP_NET_RAW):"
                      f" {why}" if isinstance(exc, PermissionError)
                      else f"raw {name}v{version} socket unavailable: {why}")
            errors.append(reason)
            emit(Event(time=datetime.now(UTC), type=EventType.SENSOR_ERROR, source=source,
                       proto=proto, fields=MappingProxyType({"reason": reason,
                                                            "family": f"ipv{version}"})))
            continue
        socks.append((sock, version))
        loop.add_reader(sock.fileno(), reader, sock, version)
    return socks


def close_all(loop: asyncio.AbstractEventLoop | None, socks: Sequence[RawSock]) -> None:
    for sock, _ in socks:
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(sock.fileno())
        sock.close()
