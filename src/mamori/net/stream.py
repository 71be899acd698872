"""Bounded TCP/TLS client streams: the only client-side stream I/O identification and checks use.

Every read is capped in bytes (``Limits.read_cap`` for the whole exchange) and bounded in time
twice: an idle timeout (no byte for that long) and a total deadline (counted from ``open`` or the
last ``rearm``). A hostile peer that floods, trickles, stays silent or resets therefore ends as a
``ProbeFailure`` with a stable ``ErrorKind``, never as a hang or an unbounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from mamori.model import ErrorKind
from mamori.net.limits import RESOURCE_ERRNOS

__all__ = ["BoundedStream", "Limits", "ProbeFailure", "exchange", "insecure_tls_context"]

# asyncio's reader pauses the transport when its buffer passes 2 * limit, so this bounds the
# memory a flooding peer can make us hold besides what we accumulate ourselves.
_READER_BUFFER = 16384
# Back-off while this machine is short of ephemeral ports or descriptors (as the sweep does):
# first pause, then doubled up to the longest pause.
_SHORTAGE_FIRST_PAUSE = 0.01
_SHORTAGE_MAX_PAUSE = 0.5


@dataclass(frozen=True)
class Limits:
    """Caps for one exchange: bytes read in total, seconds without a byte, seconds in total."""

    read_cap: int = 65536
    idle_timeout: float = 3.0
    deadline: float = 8.0
    connect_timeout: float = 3.0
    # Longest wait for a free local port (or descriptor) before a connect gives up with a
    # RESOURCE failure; not counted in the timeouts above, which are about the peer.
    local_wait: float = 30.0


class ProbeFailure(Exception):
    """A connection or exchange that could not finish.

    ``partial`` holds what the peer sent before the failure (at most the read cap), so a
    caller can still judge a banner that arrived without its line end.
    """

    def __init__(
        self, kind: ErrorKind, detail: str, partial: bytes = b"", stage: str = "read"
    ) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.partial = partial
        # "connect" (TCP connect or TLS handshake), "send" or "read": a caller tells "could
        # not reach it" from "reached it and it misbehaved".
        self.stage = stage


def insecure_tls_context() -> ssl.SSLContext:
    """A client context for identification only: no verification, every protocol version on.

    Identification must see what answers even with a self-signed or expired certificate;
    judging the certificate is a check's job, not this one's.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Old servers are exactly the ones worth naming; allow what OpenSSL still allows.
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def _os_failure(exc: OSError) -> ProbeFailure:
    """Map a socket error to a stable kind; the errno goes in the detail."""
    code = exc.errno
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return ProbeFailure(ErrorKind.REFUSED, "connection refused")
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or code == errno.ECONNRESET:
        return ProbeFailure(ErrorKind.RESET, "connection reset by peer")
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ProbeFailure(ErrorKind.UNREACHABLE, f"errno {code}: {exc.strerror}")
    if code in RESOURCE_ERRNOS:
        return ProbeFailure(ErrorKind.RESOURCE, shortage_detail(exc))
    return ProbeFailure(ErrorKind.OS, f"errno {code}: {exc.strerror or exc}")


def shortage_detail(exc: OSError) -> str:
    """Words for a shortage on this machine (never the target's fault): EADDRNOTAVAIL on
    connect means no free local (ephemeral) port, not an unreachable peer."""
    what = "no free local port" if exc.errno == errno.EADDRNOTAVAIL else "local shortage"
    return (f"{what} (errno {exc.errno}: {exc.strerror}): a shortage on this machine, "
            "the target was not tested")


class BoundedStream:
    """An asyncio stream whose reads are capped in bytes and bounded in time.

    ``bytes_read`` counts bytes since ``open`` (or the last ``rearm``); the cap and the
    deadline apply to that count and that clock.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: Limits,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.limits = limits
        self.bytes_read = 0
        self._loop = asyncio.get_running_loop()
        self._deadline_at = self._loop.time() + limits.deadline
        self._closed = False
        # Seconds ``open`` spent waiting for a free local port (0.0 when there was one).
        self.local_wait = 0.0

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        limits: Limits,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> BoundedStream:
        """Connect (and complete the TLS handshake when ``tls`` is given).

        Returns the open stream. Raises ``ProbeFailure`` (REFUSED, RESET, UNREACHABLE,
        TIMEOUT, TLS, RESOURCE or OS) when the connection cannot be made.
        """
        kwargs: dict[str, object] = {}
        if tls is not None:
            kwargs["ssl"] = tls
            # An IP literal is not a valid SNI name; send none rather than a wrong one.
            kwargs["server_hostname"] = server_hostname or ""
            kwargs["ssl_handshake_timeout"] = limits.connect_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        pause = _SHORTAGE_FIRST_PAUSE
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=_READER_BUFFER, **kwargs),  # type: ignore[arg-type]
                    timeout=limits.connect_timeout * (2 if tls is not None else 1),
                )
                break
            except TimeoutError:
                detail = "connect timed out"
                raise ProbeFailure(ErrorKind.TIMEOUT, detail, stage="connect") from None
            except ssl.SSLError as exc:
                detail = f"TLS handshake failed: {exc.reason or exc}"
                raise ProbeFailure(ErrorKind.TLS, detail, stage="connect") from None
            except OSError as exc:
                # Out of ephemeral ports or descriptors here: wait for some to come free
                # (our own connections close) and try again, as the sweep does.
                remaining = limits.local_wait - (loop.time() - started)
                if exc.errno in RESOURCE_ERRNOS and remaining > 0:
                    await asyncio.sleep(min(pause, remaining))
                    pause = min(pause * 2, _SHORTAGE_MAX_PAUSE)
                    continue
                failure = _os_failure(exc)
                failure.stage = "connect"
                raise failure from None
        stream = cls(reader, writer, limits)
        stream.local_wait = loop.time() - started if pause > _SHORTAGE_FIRST_PAUSE else 0.0
        return stream

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS connection (certificates, cipher, version), or None on a plain one."""
        obj = self._writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version ("TLSv1.3"), or None on a plain connection."""
        obj = self.ssl_object
        return obj.version() if obj is not None else None

    def rearm(self, limits: Limits | None = None) -> None:
        """Start a fresh byte count and deadline (under new ``limits`` if given) on this
        connection, for the next exchange."""
        if limits is not None:
            self.limits = limits
        self.bytes_read = 0
        self._deadline_at = self._loop.time() + self.limits.deadline

    async def send(self, data: bytes) -> None:
        """Write ``data`` and wait until it is handed to the kernel (bounded by the idle timeout).

        Raises ``ProbeFailure`` (RESET, TIMEOUT, OS) when the peer is gone or does not drain.
        """
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), timeout=self._time_left())
        except TimeoutError:
            detail = "peer does not read what we send"
            raise ProbeFailure(ErrorKind.TIMEOUT, detail, stage="send") from None
        except OSError as exc:
            failure = _os_failure(exc)
            failure.stage = "send"
            raise failure from None

    def _time_left(self) -> float:
        remaining = self._deadline_at - self._loop.time()
        return max(0.0, min(self.limits.idle_timeout, remaining))

    async def read_some(self, max_bytes: int | None = None) -> bytes:
        """Read what the peer sends next, at most ``max_bytes`` and never past the read cap.

        Returns b"" at EOF. Raises ``ProbeFailure``: TOO_LARGE when the peer sends beyond
        the cap, IDLE when it sent nothing at all before a timeout, TIMEOUT when it went
        quiet for the idle timeout after sending something, TRICKLE when it kept sending so
        slowly that the total deadline passed, RESET/OS on socket errors.
        """
        room = self.limits.read_cap - self.bytes_read
        # With the cap reached, one more byte proves the peer sends too much; EOF proves not.
        want = 1 if room <= 0 else room if max_bytes is None else max(1, min(max_bytes, room))
        remaining = self._deadline_at - self._loop.time()
        idle = min(self.limits.idle_timeout, remaining)
        try:
            if idle <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(self._reader.read(want), timeout=idle)
        except TimeoutError:
            hit = remaining <= self.limits.idle_timeout
            raise self._timeout_failure(deadline_hit=hit) from None
        except ssl.SSLError as exc:
            raise ProbeFailure(ErrorKind.TLS, f"TLS error while reading: {exc.reason}") from None
        except OSError as exc:
            raise _os_failure(exc) from None
        if chunk and room <= 0:
            raise ProbeFailure(
                ErrorKind.TOO_LARGE, f"peer sent more than {self.limits.read_cap} bytes"
            )
        self.bytes_read += len(chunk)
        return chunk

    def _timeout_failure(self, *, deadline_hit: bool) -> ProbeFailure:
        if self.bytes_read == 0:
            return ProbeFailure(ErrorKind.IDLE, "peer accepted and sent nothing")
        if deadline_hit:
            return ProbeFailure(
                ErrorKind.TRICKLE,
                f"only {self.bytes_read} bytes in {self.limits.deadline:.1f}s",
            )
        return ProbeFailure(
            ErrorKind.TIMEOUT,
            f"peer went quiet after {self.bytes_read} bytes without completing its reply",
        )

    async def read_until(self, pred: Callable[[bytes], bool]) -> bytes:
        """Accumulate bytes until ``pred(buffer)`` holds or the peer closes.

        Returns the buffer (check ``pred`` again: at EOF it may not hold). Raises
        ``ProbeFailure`` as ``read_some`` does; the failure's ``partial`` carries the buffer.
        """
        buf = bytearray()
        while not pred(bytes(buf)):
            try:
                chunk = await self.read_some()
            except ProbeFailure as exc:
                exc.partial = bytes(buf[: self.limits.read_cap])
                raise
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    async def read_line(self) -> bytes:
        """Read up to and including the next b"\\n" (or to EOF). Raises as ``read_until``.

        Returns everything received so far, which may run past the line end: meant for line
        protocols where the peer then waits for us.
        """
        return await self.read_until(lambda b: b"\n" in b)

    async def close(self) -> None:
        """Close the connection; never raises (a peer that vanished is already closed)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        # Closing is best effort: the reply is already in hand and the socket is released.
        with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
            await asyncio.wait_for(self._writer.wait_closed(), timeout=1.0)


async def exchange(
    host: str,
    port: int,
    payload: bytes | None,
    limits: Limits,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    done: Callable[[bytes], bool] | None = None,
) -> bytes:
    """One connection, one request (or none: wait for a banner), one reply within the caps.

    ``done(buffer)`` says when the reply is complete; by default the first bytes received
    complete it. Returns the reply (b"" if the peer closed without a word). Raises
    ``ProbeFailure`` for connection failures and for the read failures of ``read_some``.
    """
    stream = await BoundedStream.open(host, port, limits, tls, server_hostname)
    try:
        if payload:
            await stream.send(payload)
        return await stream.read_until(done or bool)
    finally:
        await stream.close()
