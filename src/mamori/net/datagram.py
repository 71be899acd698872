"""Bounded UDP request/replies: the only client-side datagram I/O checks use.

One *connected* socket per exchange, so the kernel hands us only datagrams from the probed
address and port (anything else is dropped before we see it) and turns an ICMP
port-unreachable into ECONNREFUSED. Every reply datagram that arrives within the window is
kept, because amplifiers answer one small request with many datagrams (memcached stats, NTP
monlist, SSDP): the measured bytes out are their sum. Collection is bounded three ways: total
bytes (``read_cap``), number of datagrams, and time (a first-reply timeout per try, a settle
time after each reply, and an overall window), so a flooding peer ends the exchange early
instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from dataclasses import dataclass

from mamori.model import ErrorKind
from mamori.net.limits import RESOURCE_ERRNOS
from mamori.net.stream import Limits, ProbeFailure, shortage_detail

__all__ = ["DatagramLimits", "DatagramReplies", "ask"]

MAX_DATAGRAM = 65535  # a single UDP payload is never larger


@dataclass(frozen=True)
class DatagramLimits:
    """Caps for one UDP exchange.

    ``timeout``: seconds to wait for a first reply after each try; ``tries``: sends when
    nothing comes back (loss happens); ``settle``: after a reply, seconds without another one
    that end the collection; ``window``: seconds from the first send after which collection
    stops whatever arrives; ``read_cap`` / ``max_datagrams``: bytes and datagrams kept at most
    (the last datagram may pass the byte cap by one datagram, at most 64 KiB).
    """

    timeout: float = 2.0
    tries: int = 2
    settle: float = 0.4
    window: float = 6.0
    read_cap: int = 262144
    max_datagrams: int = 512
    # Longest wait for a free local port or descriptor before giving up with RESOURCE.
    local_wait: float = 30.0

    @classmethod
    def from_limits(cls, limits: Limits, *, tries: int = 2, settle: float = 0.4) -> DatagramLimits:
        """Derive UDP caps from a check run's stream ``Limits``: its idle timeout waits for a
        first reply, its deadline is the window, four times its read cap the byte cap."""
        return cls(
            timeout=min(limits.idle_timeout, 3.0),
            tries=tries,
            settle=settle,
            window=limits.deadline,
            local_wait=limits.local_wait,
            read_cap=max(limits.read_cap, 65536) * 4,
        )


@dataclass(frozen=True)
class DatagramReplies:
    """What one exchange saw: the request, every reply datagram kept, and how it ended."""

    request: bytes
    sent: int  # how many times the request went out (retries when nothing came back)
    replies: tuple[bytes, ...]
    truncated: bool  # the byte or datagram cap ended the collection: more may have come
    elapsed: float  # seconds from the first send to the end of collection

    @property
    def bytes_in(self) -> int:
        """Payload bytes the peer sent us (UDP payload, headers not counted)."""
        return sum(len(r) for r in self.replies)

    @property
    def bytes_out(self) -> int:
        """Payload bytes we sent, all tries counted."""
        return len(self.request) * self.sent

    @property
    def factor(self) -> float:
        """Amplification: reply payload bytes per request payload byte sent (all tries)."""
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0


def _failure(exc: OSError) -> ProbeFailure:
    code = exc.errno
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return ProbeFailure(ErrorKind.REFUSED, "ICMP port unreachable: nothing listens on UDP")
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ProbeFailure(ErrorKind.UNREACHABLE, f"errno {code}: {exc.strerror}")
    if code in RESOURCE_ERRNOS:  # out of local ports or descriptors: never the target's fault
        return ProbeFailure(ErrorKind.RESOURCE, shortage_detail(exc))
    return ProbeFailure(ErrorKind.OS, f"errno {code}: {exc.strerror or exc}")


async def _recv(loop: asyncio.AbstractEventLoop, sock: socket.socket, wait: float) -> bytes | None:
    """One datagram within ``wait`` seconds, or None. Raises OSError (ICMP errors)."""
    if wait <= 0:
        return None
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, MAX_DATAGRAM), timeout=wait)
    except TimeoutError:
        return None


async def _connected(host: str, port: int, local_wait: float) -> socket.socket:
    """A non-blocking UDP socket connected to host:port. Out of local ports or descriptors
    (EAGAIN from the automatic bind, EMFILE...): wait with growing pauses for up to
    ``local_wait`` seconds, as the sweep does. Raises ``ProbeFailure``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    started = time.monotonic()
    pause = 0.01
    while True:
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((host, port))
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            remaining = local_wait - (time.monotonic() - started)
            if exc.errno not in RESOURCE_ERRNOS or remaining <= 0:
                raise _failure(exc) from None
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.5)


async def ask(host: str, port: int, payload: bytes, limits: DatagramLimits) -> DatagramReplies:
    """Send ``payload`` to host:port and collect every reply datagram within the limits.

    Returns the replies (an empty tuple when the peer stayed silent through every try: for
    UDP silence is an answer, not an error). Raises ``ProbeFailure``: REFUSED on an ICMP
    port-unreachable, UNREACHABLE, RESOURCE or OS for other socket errors.
    """
    loop = asyncio.get_running_loop()
    sock = await _connected(host, port, limits.local_wait)
    replies: list[bytes] = []
    total = 0
    sent = 0
    truncated = False
    start = time.monotonic()
    try:
        window_end = start + limits.window
        for _ in range(max(1, limits.tries)):
            sock.send(payload)
            sent += 1
            first = await _recv(loop, sock, min(limits.timeout, window_end - time.monotonic()))
            if first is None:
                continue
            replies.append(first)
            total = len(first)
            # More datagrams may follow (fragmented answers, one reply per service): keep
            # them until the peer goes quiet, the window closes or a cap is reached.
            while total < limits.read_cap and len(replies) < limits.max_datagrams:
                wait = min(limits.settle, window_end - time.monotonic())
                more = await _recv(loop, sock, wait)
                if more is None:
                    break
                replies.append(more)
                total += len(more)
            truncated = total >= limits.read_cap or len(replies) >= limits.max_datagrams
            break
    except OSError as exc:
        if not replies:
            raise _failure(exc) from None
        # An ICMP error after replies (the service went away mid-answer): keep what came.
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return DatagramReplies(
        request=payload,
        sent=sent,
        replies=tuple(replies),
        truncated=truncated,
        elapsed=time.monotonic() - start,
    )
