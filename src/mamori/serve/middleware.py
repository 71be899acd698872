"""Plain ASGI middleware: security headers, the Host allowlist, body caps, request rates.

Each refuses before any route runs: a foreign Host header is 400, a body over the cap 413, a
body that trickles past its deadline 408, a flood 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

from mamori.serve import ratelimit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


async def plain(send: Send, status: int, text: str,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(headers or []),
    ]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class SecurityHeaders:
    """CSP (unless the route set its own), nosniff, same-origin referrers, no framing, HSTS
    on https."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app, self.hsts = app, hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("content-security-policy", CSP)
                h.setdefault("x-content-type-options", "nosniff")
                # Result URLs are secrets: never sent elsewhere. (Not "no-referrer": Chromium then
                # sends "Origin: null" with our own forms, which the CSRF check refuses.)
                h.setdefault("referrer-policy", "same-origin")
                h.setdefault("x-frame-options", "DENY")
                h.setdefault("cross-origin-opener-policy", "same-origin")
                h.setdefault("cross-origin-resource-policy", "same-origin")
                h.setdefault("permissions-policy", "camera=(), microphone=(), geolocation=()")
                if self.hsts:
                    h.setdefault("strict-transport-security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, with_headers)


def host_of(value: str) -> str | None:
    """The host part of a Host header ("[::1]:80" -> "::1", "a.b:8080" -> "a.b")."""
    value = value.strip().lower()
    if not value or any(c in value for c in " /\\@?#"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not value[end + 1:].startswith(":")):
            return None
        return value[1:end]
    host, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return host.rstrip(".") or None


class HostAllowlist:
    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]").rstrip(".") for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = host_of(_header(scope, b"host") or "")
            if host is None or host not in self.hosts:
                await plain(send, 400, "Invalid host header")
                return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class BodyLimit:
    """At most ``limit`` bytes of request body, all of it within ``deadline`` seconds."""

    def __init__(self, app: ASGIApp, limit: int, deadline: float = 10.0) -> None:
        self.app, self.limit, self.deadline = app, limit, deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self.limit):
            await plain(send, 413, "Request body too large")
            return
        seen = 0
        complete = False
        end = time.monotonic() + self.deadline
        started = False

        async def capped() -> Message:
            nonlocal seen, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.01, end - time.monotonic()))
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped, tracking)
        except _TooLarge:
            if not started:
                await plain(send, 413, "Request body too large")
        except _TooSlow:
            if not started:
                await plain(send, 408, "Request body too slow")


class RequestRate:
    """At most ``window.limit`` requests per ``window.seconds`` per key (the visitor)."""

    def __init__(self, app: ASGIApp, window: ratelimit.Window,
                 key: Callable[[Scope], str | None],
                 on_refused: Callable[[str], None] | None = None,
                 exempt: tuple[str, ...] = ("/static/",)) -> None:
        self.app, self.window, self.key = app, window, key
        self.on_refused, self.exempt = on_refused, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith(self.exempt):
            key = self.key(scope)
            wait = ratelimit.acquire([(self.window, key)]) if key is not None else None
            if wait is not None:
                if self.on_refused is not None and key is not None:
                    self.on_refused(key)
                await plain(send, 429, "Too many requests: slow down",
                            [(b"retry-after", str(wait).encode())])
                return
        await self.app(scope, receive, send)
