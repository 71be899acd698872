"""The decoy listeners: all socket I/O of the decoys lives here.

TCP decoys use non-blocking sockets read by callbacks on the asyncio loop's selector
(``add_reader``), without asyncio transports: setting up a transport costs several times what a
decoy needs per connection, and connection floods are what decoys get. Each connection has a
persona session and a read cap, is swept for idle and total timeouts by one timer per server,
and gets answers with one non-blocking ``send`` (what does not fit is dropped: nothing
queues). UDP decoys record datagrams and by default never answer. Every event goes through
the ``SourceGuard`` (per-source rate; excess summarised as ``sensor.limit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

from mamori.model.watch import EXCERPT_LIMIT, Event, EventType, excerpt
from mamori.watch.decoys.guard import SourceGuard
from mamori.watch.decoys.personas import persona_factory
from mamori.watch.decoys.session import Persona, Record
from mamori.watch.decoys.spec import UDP_PERSONA, DecoyLimits, DecoySpec

__all__ = ["DecoyServer", "DecoyStats"]

Emit = Callable[[Event], None]
_ACCEPT_BATCH = 512


@dataclass(slots=True)
class DecoyStats:
    """Counters of one decoy (live; read them on the loop thread)."""

    accepted: int = 0  # TCP connections accepted (including those closed at once)
    active: int = 0
    dropped_source: int = 0  # closed at once: per-source connection cap
    dropped_global: int = 0  # closed at once: global connection cap
    events: int = 0  # events emitted (not counting sensor.limit reports)
    suppressed: int = 0  # events not emitted: per-source rate
    bytes_in: int = 0
    read_cap_hits: int = 0
    idle_timeouts: int = 0
    total_timeouts: int = 0
    datagrams: int = 0
    replies: int = 0  # UDP replies sent
    errors: int = 0  # a persona or emit callback raised (the connection is closed)

    @property
    def dropped(self) -> int:
        return self.dropped_source + self.dropped_global


def _address(raw: Any) -> tuple[str | None, int | None]:
    if not isinstance(raw, tuple) or len(raw) < 2:
        return None, None
    host = str(raw[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(raw[1])


class DecoyServer:
    """One decoy listener (see ``DecoySpec``). ``guard`` may be shared by several servers so the
    per-source and global limits count across all of them; by default each has its own."""

    def __init__(self, spec: DecoySpec, emit: Emit, limits: DecoyLimits | None = None, *,
                 guard: SourceGuard | None = None) -> None:
        self.spec = spec
        self.limits = limits or DecoyLimits()
        self.stats = DecoyStats()
        self._emit_cb = emit
        self._own_guard = guard is None
        self.guard = guard or SourceGuard(self.limits, emit, spec.label)
        self.make_persona = persona_factory(spec, self.limits) if spec.proto == "tcp" else None
        self._listener: socket.socket | None = None
        self._family = socket.AF_INET
        self._dst: tuple[str | None, int | None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.connections: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = spec.port
        self.label = spec.label  # the events' source, with the bound port once started

    async def start(self) -> None:
        """Bind and listen. Raises OSError (address in use, not permitted ...) like a bind."""
        loop = self._loop = asyncio.get_running_loop()
        if self.spec.proto == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.spec.host, self.spec.port))
            self._udp = transport
            self.port = int(transport.get_extra_info("sockname")[1])
            self._bound()
            return
        family = socket.AF_INET6 if ":" in self.spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.spec.host, self.spec.port))
            sock.listen(self.limits.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self._family = family
        name = sock.getsockname()
        self.port = int(name[1])
        self._bound()
        wildcard = ipaddress.ip_address(self.spec.host).is_unspecified
        self._dst = None if wildcard else _address(name)
        loop.add_reader(sock.fileno(), self._accept)
        self._schedule_sweep()

    def _bound(self) -> None:
        self.label = dataclasses.replace(self.spec, port=self.port).label
        if self._own_guard:
            self.guard.label = self.label

    async def close(self) -> None:
        """Stop listening, end every open connection (recording what they sent), flush the
        pending ``sensor.limit`` reports of an own guard."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for conn in list(self.connections):
            conn.end(reset=True)
        if self._udp is not None:
            self._udp.close()
            self._udp = None
            await asyncio.sleep(0)
        if self._own_guard:
            self.guard.close()

    def _accept(self) -> None:
        """Accept what is waiting (a bounded batch per wake-up, so one busy listener cannot
        starve the others)."""
        listener, loop = self._listener, self._loop
        assert listener is not None and loop is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                # socket.accept() minus its per-call enum conversions of family and type
                fd, peer = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.stats.errors += 1
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(loop, listener)
                return
            self.stats.accepted += 1
            sock = socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
            src, src_port = _address(peer)
            key = self.guard.open_connection(src or "")
            if key is None:
                if self.guard.active >= self.guard.limits.max_connections:
                    self.stats.dropped_global += 1
                else:
                    self.stats.dropped_source += 1
                _reset(sock)
                sock.close()
                continue
            dst = self._dst or _address(sock.getsockname())
            assert self.make_persona is not None
            conn = _Connection(self, loop, sock, (src, src_port), key, dst, self.make_persona())
            self.connections.add(conn)
            self.stats.active += 1
            conn.begin()

    def _pause_accepting(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        """Out of descriptors: stop accepting for a moment instead of spinning on the listener
        (the kernel keeps the backlog; open connections time out and free descriptors)."""
        loop.remove_reader(listener.fileno())

        def resume() -> None:
            if self._listener is listener:
                loop.add_reader(listener.fileno(), self._accept)

        loop.call_later(0.1, resume)

    # events --------------------------------------------------------------------------------
    def emit(self, kind: EventType, src: str | None, src_port: int | None, dst: str | None,
             dst_port: int | None, fields: Mapping[str, str], data: bytes = b"") -> None:
        if not self.guard.allow_event(src):
            self.stats.suppressed += 1
            return
        event = Event(time=datetime.now(UTC), type=kind, source=self.label, src=src,
                      src_port=src_port, dst=dst, dst_port=dst_port, proto=self.spec.proto,
                      fields=MappingProxyType(dict(fields)),
                      excerpt=excerpt(data[: EXCERPT_LIMIT * 4]) if data else "")
        self.stats.events += 1
        self._emit_cb(event)

    # timeouts ------------------------------------------------------------------------------
    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        period = min(1.0, self.limits.idle_timeout / 4, self.limits.total_timeout / 4)
        self._sweeper = self._loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check(now)
        self._schedule_sweep()


class _Connection:
    """One accepted TCP connection, read by a loop reader callback. Every recv/send carries
    MSG_DONTWAIT, so the socket never blocks without a system call to make it non-blocking."""

    __slots__ = ("_dst", "_dst_port", "_fd", "_key", "_loop", "_persona", "_registered",
                 "_server", "_sock", "_src", "_src_port", "_started", "draining", "last",
                 "received")

    def __init__(self, server: DecoyServer, loop: asyncio.AbstractEventLoop,
                 sock: socket.socket, peer: tuple[str | None, int | None], key: str,
                 dst: tuple[str | None, int | None], persona: Persona) -> None:
        self._server = server
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._src, self._src_port = peer
        self._dst, self._dst_port = dst
        self._key = key
        self._persona: Persona | None = persona
        self._started = self.last = time.monotonic()
        self.received = 0
        self.draining = False  # our answer is sent and our side shut: reading until EOF
        self._registered = False

    def begin(self) -> None:
        self._record(Record(EventType.DECOY_CONNECT, {"persona": self._server.spec.persona}))
        assert self._persona is not None
        greeting = self._persona.greeting()
        if greeting and not self._send(greeting):
            return
        # What already arrived (a scanner's FIN, a request sent right after the handshake) is
        # handled now; a connection that ends here never costs a selector registration.
        self._readable()
        if self._persona is not None:
            self._loop.add_reader(self._fd, self._readable)
            self._registered = True

    def _readable(self) -> None:
        cap = self._server.limits.read_cap
        try:
            want = 4096 if self.draining else max(1, min(4096, cap - self.received))
            data = self._sock.recv(want, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.end()
            return
        self.last = time.monotonic()
        self.received += len(data)
        self._server.stats.bytes_in += len(data)
        if self.draining:
            if self.received >= cap:
                self.end()
            return
        capped = self.received >= cap
        if capped:
            self._server.stats.read_cap_hits += 1
        assert self._persona is not None
        try:
            step = self._persona.feed(data)
        except Exception:  # a persona bug must not take the decoy down: close, count
            self._server.stats.errors += 1
            self.end()
            return
        for record in step.records:
            self._record(record)
        if step.reply and not self._send(step.reply):
            return
        if capped:
            self.end()
        elif step.close:
            self._shutdown()

    def _send(self, data: bytes) -> bool:
        """Send a (small) answer without blocking; what does not fit at once is dropped, so a
        visitor that never reads cannot make us hold anything. False: the connection ended."""
        try:
            self._sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.end()
            return False
        return True

    def _shutdown(self) -> None:
        """Send our FIN after the answer, then read (and discard) until the visitor closes, so
        unread bytes do not turn our close into a reset that destroys the answer."""
        self.draining = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.end()

    def end(self, *, reset: bool = False) -> None:
        server = self._server
        if self._persona is None:
            return
        persona, self._persona = self._persona, None
        if self._registered:
            self._loop.remove_reader(self._fd)
        if reset:
            _reset(self._sock)
        self._sock.close()
        server.connections.discard(self)
        server.stats.active -= 1
        server.guard.close_connection(self._key)
        try:
            records = persona.finish()
        except Exception:
            server.stats.errors += 1
            records = []
        for record in records:
            self._record(record)

    def check(self, now: float) -> None:
        """Called by the server's sweeper: enforce the idle and total timeouts."""
        limits = self._server.limits
        if now - self._started >= limits.total_timeout:
            self._server.stats.total_timeouts += 1
            self.end(reset=True)
        elif now - self.last >= limits.idle_timeout:
            self._server.stats.idle_timeouts += 1
            self.end()  # a plain close, as a server's login timeout

    def _record(self, record: Record) -> None:
        try:
            self._server.emit(record.type, self._src, self._src_port, self._dst,
                              self._dst_port, record.fields, record.data)
        except Exception:
            self._server.stats.errors += 1


def _reset(sock: socket.socket) -> None:
    """Make the coming close() send RST (no TIME_WAIT, no lingering)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: DecoyServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None
        self._dst: str | None = None
        self._dst_port: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._dst, self._dst_port = _address(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        server = self._server
        server.stats.datagrams += 1
        server.stats.bytes_in += len(data)
        src, src_port = _address(addr)
        before = server.stats.events
        try:
            server.emit(EventType.DECOY_UDP, src, src_port, self._dst, self._dst_port,
                        {"persona": UDP_PERSONA, "size": str(len(data))}, data)
        except Exception:
            server.stats.errors += 1
        reply = server.spec.udp_reply[: len(data)]  # never amplify
        if reply and server.stats.events > before and self._transport is not None:
            server.stats.replies += 1
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from earlier replies: nothing to do
