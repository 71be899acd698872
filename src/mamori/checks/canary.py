"""Canaries: small servers mamori runs so a stepping-stone check can prove the abuse itself.

- ``HttpCanary``: an HTTP listener with a random path and a different random secret in its
  body. A proxy check asks the target to fetch the path; only a target that really fetched
  it can hand back the secret (a server that echoes our request line back cannot).
- ``SmtpSink``: a minimal SMTP server that drops every message into an inbox directory, one
  file each. A relay check sends a token through the target to an address at a canary domain
  whose mail reaches the sink, then looks for the token there (``find_token``).

Every read is capped in bytes and bounded in time; connections, recipients, message size and
inbox size are bounded too, so a sink exposed to the Internet cannot be made to grow without
bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CANARY_PREFIX = "/mamori-canary/"
_HEAD_CAP = 8192
_READ_TIMEOUT = 10.0
_MAX_HITS = 16


def source_address_for(target: str, port: int) -> str:
    """The local address the kernel would use to reach ``target`` (what the target sees us
    as). A UDP ``connect`` picks the route and sends nothing. Raises OSError if unroutable."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((target, port or 9))
        return str(sock.getsockname()[0])


def url_host(address: str) -> str:
    """An address as it goes in a URL or Host header (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True, slots=True)
class CanaryHit:
    peer: str  # address of whoever fetched the canary (the proxy, when it works)
    request_line: str


class HttpCanary:
    """An HTTP listener on ``host`` (ephemeral port) serving ``secret`` at ``path``.

    Use ``async with HttpCanary(host) as canary``; ``canary.url`` is what to fetch,
    ``canary.secret`` what must come back, ``canary.hits`` who fetched it.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.path = CANARY_PREFIX + secrets.token_hex(12)
        # Never sent to the target: only a real fetch can return it.
        self.secret = "mamori-canary-" + secrets.token_hex(16)
        self.hits: list[CanaryHit] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}{self.path}"

    @property
    def body(self) -> bytes:
        return f"{self.secret}\n".encode()

    async def __aenter__(self) -> HttpCanary:
        self._server = await asyncio.start_server(self._serve, self.host, 0, limit=_HEAD_CAP)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")[:512]
        parts = request_line.split(" ")
        target = parts[1] if len(parts) == 3 else ""
        # A proxy may forward the absolute URI unchanged: compare the path part only.
        path = "/" + target.split("://", 1)[1].split("/", 1)[1] if "://" in target else target
        if path == self.path:
            peer = writer.get_extra_info("peername")
            if len(self.hits) < _MAX_HITS:
                self.hits.append(CanaryHit(str(peer[0]) if peer else "?", request_line))
            status, body = b"200 OK", self.body
        else:
            status, body = b"404 Not Found", b"not here\n"
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"Connection: close\r\n\r\n" + body)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        writer.close()


# --- the SMTP sink --------------------------------------------------------------------------

_LINE_CAP = 1000  # RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with CRLF
_MAX_MESSAGE = 1 << 20
_MAX_RECIPIENTS = 100
_MAX_CONNECTIONS = 32
_MAX_INBOX = 10000
_MAX_COMMANDS = 200


class SmtpSink:
    """A minimal SMTP server that accepts any mail and writes each message to ``inbox``.

    Files are written whole and then renamed into place, so a reader never sees half a
    message. Use ``async with SmtpSink(inbox, host, port)``; ``port`` 0 picks one.
    """

    def __init__(self, inbox: Path, host: str, port: int = 0,
                 hostname: str = "sink.mamori.invalid") -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.hostname = hostname
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)

    async def __aenter__(self) -> SmtpSink:
        self.inbox.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=_LINE_CAP * 2)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            writer.write(b"421 too many connections\r\n")
            writer.close()
            return
        async with self._slots:
            with contextlib.suppress(TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                                     asyncio.LimitOverrunError, ValueError):
                await self._session(reader, writer)
            writer.close()

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(reader.readuntil(b"\n"), _READ_TIMEOUT * 3)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(reply: str) -> None:
            writer.write(reply.encode() + b"\r\n")
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)

        await say(f"220 {self.hostname} ESMTP mamori canary sink")
        sender: str | None = None
        recipients: list[str] = []
        for _ in range(_MAX_COMMANDS):
            line = (await self._line(reader)).decode("utf-8", "replace").strip()
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                sender, recipients = None, []
                await say(f"250-{self.hostname}\r\n250 8BITMIME" if verb == "EHLO"
                          else f"250 {self.hostname}")
            elif verb == "MAIL":
                sender, recipients = line[10:][:256], []
                await say("250 2.1.0 ok")
            elif verb == "RCPT":
                if sender is None:
                    await say("503 5.5.1 MAIL first")
                elif len(recipients) >= _MAX_RECIPIENTS:
                    await say("452 4.5.3 too many recipients")
                else:
                    recipients.append(line[8:][:256])
                    await say("250 2.1.5 ok")
            elif verb == "DATA":
                if not recipients:
                    await say("503 5.5.1 RCPT first")
                    continue
                await say("354 end with <CRLF>.<CRLF>")
                message = await self._data(reader)
                if message is None:
                    await say("552 5.3.4 message too big")
                    return
                stored = await asyncio.to_thread(self._store, sender or "", recipients, message)
                await say("250 2.0.0 queued" if stored else "452 4.3.1 inbox full")
                sender, recipients = None, []
            elif verb == "RSET":
                sender, recipients = None, []
                await say("250 2.0.0 ok")
            elif verb == "NOOP":
                await say("250 2.0.0 ok")
            elif verb == "QUIT":
                await say("221 2.0.0 bye")
                return
            else:
                await say("502 5.5.2 command not recognized")

    async def _data(self, reader: asyncio.StreamReader) -> bytes | None:
        """The message up to the lone dot (dot-stuffing undone), or None past the size cap."""
        out = bytearray()
        while True:
            line = await self._line(reader)
            if line in (b".\r\n", b".\n"):
                return bytes(out)
            if len(out) + len(line) > _MAX_MESSAGE:
                return None
            out += line[1:] if line.startswith(b"..") else line

    def _store(self, sender: str, recipients: list[str], message: bytes) -> bool:
        if sum(1 for _ in zip(range(_MAX_INBOX), self.inbox.iterdir(), strict=False)) \
                >= _MAX_INBOX:
            return False
        name = f"{time.time_ns()}-{secrets.token_hex(4)}"
        envelope = f"X-Envelope-From: {sender}\r\n" + "".join(
            f"X-Envelope-To: {r}\r\n" for r in recipients)
        tmp = self.inbox / f".{name}.tmp"
        tmp.write_bytes(envelope.encode("utf-8", "replace") + message)
        os.replace(tmp, self.inbox / f"{name}.eml")
        return True


def find_token(inbox: Path, token: str, *, max_files: int = 500,
               read_cap: int = 65536) -> Path | None:
    """The newest message file in ``inbox`` that contains ``token``, or None.

    Looks at no more than ``max_files`` newest files and ``read_cap`` bytes of each, so a
    full inbox costs a bounded read. Never raises for a missing or unreadable inbox.
    """
    needle = token.encode()
    try:
        entries = [e for e in os.scandir(inbox) if e.name.endswith(".eml") and e.is_file()]
    except OSError:
        return None
    entries.sort(key=lambda e: e.name, reverse=True)
    for entry in entries[:max_files]:
        try:
            with open(entry.path, "rb") as fh:
                if needle in fh.read(read_cap):
                    return Path(entry.path)
        except OSError:
            continue
    return None


# --- running a canary beside synchronous code (tests, a CLI command) -----------------------


class _AsyncServer(Protocol):
    async def __aenter__(self) -> object: ...
    async def __aexit__(self, *exc: object) -> None: ...


@contextlib.contextmanager
def serving_in_thread(make: Callable[[], _AsyncServer]) -> Iterator[object]:
    """Run the server ``make()`` builds on its own event loop in a thread; yields it started.

    Raises whatever starting it raised (e.g. OSError for an address in use).
    """
    started = threading.Event()
    stop: asyncio.Event | None = None
    loop_box: list[asyncio.AbstractEventLoop] = []
    result: list[object] = []
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        try:
            server = make()
            async with server:
                result.append(server)
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    try:
        yield result[0]
    finally:
        if loop_box and stop is not None:
            loop_box[0].call_soon_threadsafe(stop.set)
        thread.join(timeout=5)

