"""Open proxies: will the target fetch a canary for anyone (HTTP absolute-URI GET, CONNECT,
SOCKS 5, SOCKS 4)?

Proof is the canary's body coming back: by default a listener mamori starts on the address
the target sees it from, serving a secret that is never sent to the target (so a server that
answers 200 and echoes our request cannot pass for a proxy); or a canary URL and pattern given
as options, for a target that cannot reach the scanner.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mamori.checks.canary import HttpCanary, source_address_for, url_host
from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import http, socks

_SILENT = (ErrorKind.IDLE, ErrorKind.TIMEOUT, ErrorKind.TRICKLE)
_HEAD_CAP = 16384
_HOST = re.compile(r"[A-Za-z0-9._:-]{1,253}")  # nothing that could break a request line


@dataclass
class _Canary:
    """Where to fetch through the target and how to recognise a real fetch."""

    host: str
    port: int
    path: str
    pattern: re.Pattern[bytes]
    builtin: HttpCanary | None = None

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        return http.host_header(self.host, self.port)

    def hit_from(self) -> str | None:
        hits = self.builtin.hits if self.builtin else []
        return hits[0].peer if hits else None


@contextlib.asynccontextmanager
async def _canary(ctx: ProbeContext) -> AsyncIterator[_Canary]:
    opts = ctx.options
    if opts.proxy_canary_url:
        parts = urlsplit(opts.proxy_canary_url)
        if parts.scheme != "http" or not _HOST.fullmatch(parts.hostname or ""):
            raise ProbeFailure(ErrorKind.INTERNAL, "proxy_canary_url must be an http:// URL")
        pattern = re.compile((opts.proxy_canary_pattern or "").encode() or rb"(?!)")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        yield _Canary(parts.hostname or "", parts.port or 80, path, pattern)
        return
    try:
        here = source_address_for(ctx.address, ctx.port)
    except OSError as exc:
        raise ProbeFailure(ErrorKind.UNREACHABLE, f"no route to the target: {exc}") from None
    async with HttpCanary(here) as canary:
        yield _Canary(here, canary.port, canary.path, re.compile(re.escape(canary.secret.encode())),
                      builtin=canary)


@dataclass
class _Attempts:
    fields: dict[str, str] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    failures: list[ProbeFailure] = field(default_factory=list)
    answered: bool = False  # some attempt got a reply in the protocol asked for

    async def run(self, name: str, attempt: _Attempt, ctx: ProbeContext,
                  canary: _Canary) -> bool:
        """Run one attempt; True when it fetched the canary. A failure to connect at all is
        raised (the check is then "not tested"); later failures are recorded as evidence."""
        try:
            return await attempt(ctx, canary, self)
        except ProbeFailure as exc:
            if exc.stage == "connect":
                raise
            self.failures.append(exc)
            self.fields[f"{name}_error"] = f"{exc.kind.value}: {exc.detail}"[:200]
            return False

    def finish(self, canary: _Canary, fetched_by: str | None) -> dict[str, str]:
        """The fields, with grade: "fetched" (the canary's body came back through the
        target), "reached" (the canary saw the request, its body did not come back) or
        "none". Raises the first failure when every attempt met silence."""
        hit = canary.hit_from()
        if fetched_by is None and hit is None and not self.answered and self.failures and all(
                f.kind in _SILENT for f in self.failures):
            raise self.failures[0]
        self.fields["canary_url"] = canary.url
        if hit is not None:
            self.fields["canary_hit_from"] = hit
        if fetched_by is not None:
            self.fields["fetched_via"] = fetched_by
        self.fields["grade"] = "fetched" if fetched_by else "reached" if hit else "none"
        return self.fields


_Attempt = Callable[[ProbeContext, _Canary, _Attempts], Awaitable[bool]]


def _head_or_garbage(buf: bytes) -> bool:
    return b"\r\n\r\n" in buf or (len(buf) >= 5 and not buf.startswith(b"HTTP/"))


async def _read_response(stream: BoundedStream, prefix: bytes = b"") -> bytes:
    stream.rearm()
    if prefix and http.reply_complete(prefix):
        return prefix
    return prefix + await stream.read_until(lambda b: http.reply_complete(prefix + b))


def _fetched(canary: _Canary, reply: bytes) -> bool:
    parsed = http.parse_response(reply)
    return parsed is not None and 200 <= parsed.status < 300 and bool(
        canary.pattern.search(parsed.body))


def _note_server(fields: dict[str, str], reply: bytes) -> None:
    parsed = http.parse_response(reply)
    if parsed is None:
        return
    for name in ("Server", "Via", "Proxy-Agent"):
        value = parsed.header(name)
        if value and "proxy_software" not in fields:
            fields["proxy_software"] = value[:120]


async def _via_get(ctx: ProbeContext, canary: _Canary, att: _Attempts) -> bool:
    request = http.build_request("GET", canary.url, canary.host_header, ctx.options.user_agent)
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        att.sent.append(request.decode("latin-1"))
        await stream.send(request)
        reply = await _read_response(stream)
    finally:
        await stream.close()
    att.replies.append(reply)
    parsed = http.parse_response(reply)
    att.fields["get_status"] = str(parsed.status) if parsed else "not HTTP"
    att.answered |= parsed is not None
    _note_server(att.fields, reply)
    return _fetched(canary, reply)


async def _via_connect(ctx: ProbeContext, canary: _Canary, att: _Attempts) -> bool:
    hostport = canary.host_header
    request = (f"CONNECT {hostport} HTTP/1.1\r\nHost: {hostport}\r\n"
               f"User-Agent: {ctx.options.user_agent}\r\n\r\n").encode("latin-1", "replace")
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        att.sent.append(request.decode("latin-1"))
        await stream.send(request)
        head = await stream.read_until(_head_or_garbage)
        att.replies.append(head[:_HEAD_CAP])
        parsed = http.parse_response(head)
        att.fields["connect_status"] = str(parsed.status) if parsed else "not HTTP"
        att.answered |= parsed is not None
        if parsed is None or not 200 <= parsed.status < 300:
            return False
        _note_server(att.fields, head)
        # Bytes after the CONNECT head belong to the tunnel: a real proxy sends none.
        reply = await _fetch_through(stream, canary, ctx.options.user_agent, att, parsed.body)
    finally:
        await stream.close()
    tunnelled = http.parse_response(reply)
    att.fields["tunnel_status"] = str(tunnelled.status) if tunnelled else "not HTTP"
    return _fetched(canary, reply)


async def _fetch_through(stream: BoundedStream, canary: _Canary, agent: str,
                         att: _Attempts, prefix: bytes = b"") -> bytes:
    """GET the canary's path through an open tunnel; returns the reply."""
    request = http.build_request("GET", canary.path, canary.host_header, agent)
    att.sent.append(request.decode("latin-1"))
    await stream.send(request)
    reply = await _read_response(stream, prefix)
    att.replies.append(reply)
    return reply


_HTTP_METHODS = {"get": ("absolute-URI GET", _via_get), "connect": ("CONNECT", _via_connect)}


async def http_proxy_fetch(ctx: ProbeContext, params: Params) -> Observation:
    """Ask the target, as an HTTP proxy, for the canary: absolute-URI GET, then CONNECT.

    Returns fields: grade (fetched / reached / none), fetched_via, get_status,
    connect_status, tunnel_status, canary_url, canary_hit_from, proxy_software. Raises
    ProbeFailure when the target cannot be reached or never answers.
    """
    methods = params.texts("methods", ["get", "connect"])
    att = _Attempts()
    async with _canary(ctx) as canary:
        fetched_by = None
        for method in methods:
            if method not in _HTTP_METHODS:
                raise ProbeFailure(ErrorKind.INTERNAL, f"unknown proxy method {method!r}")
            label, attempt = _HTTP_METHODS[method]
            if await att.run(method, attempt, ctx, canary):
                fetched_by = label
                break
        fields = att.finish(canary, fetched_by)
    return Observation(
        test=f"asked the target as an HTTP proxy ({' then '.join(m.upper() for m in methods)}) "
             f"for a canary URL ({canary.url}) and looked for the canary's secret in the reply",
        fields=fields,
        request=excerpt("\r\n".join(att.sent)),
        reply=excerpt(b"\r\n".join(att.replies)),
    )


# --- SOCKS ------------------------------------------------------------------------------------


async def _via_socks5(ctx: ProbeContext, canary: _Canary, att: _Attempts) -> bool:
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        # Offer username/password too: choosing it tells us the proxy wants a login.
        greeting = socks.build_greeting5((socks.METHOD_NONE, socks.METHOD_USERPASS))
        att.sent.append(excerpt(greeting))
        await stream.send(greeting)
        chosen = await stream.read_until(lambda b: len(b) >= 2)
        att.replies.append(chosen[:64])
        method = socks.parse_method5(chosen[:2])
        if method is None:
            att.fields["socks5_method"] = "not SOCKS 5" if chosen else "closed"
            return False
        att.answered = True
        att.fields["socks5_method"] = socks.method_name(method)
        if method != socks.METHOD_NONE:
            return False
        request = socks.build_connect5(canary.host, canary.port)
        att.sent.append(excerpt(request))
        await stream.send(request)
        stream.rearm()
        raw = await stream.read_until(socks.reply5_complete)
        att.replies.append(raw[:64])
        parsed = socks.parse_reply5(raw)
        if parsed is None:
            att.fields["socks5_reply"] = "not a SOCKS 5 reply"
            return False
        att.fields["socks5_reply"] = socks.reply5_name(parsed[0].code)
        if not parsed[0].succeeded:
            return False
        reply = await _fetch_through(stream, canary, ctx.options.user_agent, att,
                                     raw[parsed[1]:])
    finally:
        await stream.close()
    return _fetched(canary, reply)


async def _via_socks4(ctx: ProbeContext, canary: _Canary, att: _Attempts) -> bool:
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        request = socks.build_connect4(canary.host, canary.port)
        att.sent.append(excerpt(request))
        await stream.send(request)
        raw = await stream.read_until(lambda b: len(b) >= 8)
        att.replies.append(raw[:64])
        parsed = socks.parse_reply4(raw[:8])
        if parsed is None:
            att.fields["socks4_reply"] = "not a SOCKS 4 reply" if raw else "closed"
            return False
        att.answered = True
        att.fields["socks4_reply"] = socks.reply4_name(parsed.code)
        if not parsed.granted:
            return False
        reply = await _fetch_through(stream, canary, ctx.options.user_agent, att, raw[8:])
    finally:
        await stream.close()
    return _fetched(canary, reply)


_SOCKS_VERSIONS = {"5": _via_socks5, "4": _via_socks4}


async def socks_fetch(ctx: ProbeContext, params: Params) -> Observation:
    """Ask the target, as a SOCKS 5 (then SOCKS 4) proxy, to connect to the canary and fetch
    it without authenticating.

    Returns fields: grade (fetched / reached / none), fetched_via, socks5_method,
    socks5_reply, socks4_reply, canary_url, canary_hit_from. Raises ProbeFailure when the
    target cannot be reached or never answers.
    """
    versions = params.texts("versions", ["5", "4"])
    att = _Attempts()
    async with _canary(ctx) as canary:
        fetched_by = None
        for version in versions:
            if version not in _SOCKS_VERSIONS:
                raise ProbeFailure(ErrorKind.INTERNAL, f"unknown SOCKS version {version!r}")
            if ":" in canary.host and version == "4":
                continue  # SOCKS 4 has no IPv6 addresses
            attempt = _SOCKS_VERSIONS[version]
            if await att.run(f"socks{version}", attempt, ctx, canary):
                fetched_by = f"SOCKS {version}"
                break
        fields = att.finish(canary, fetched_by)
    return Observation(
        test=f"asked the target as a SOCKS proxy (versions {', '.join(versions)}, no "
             f"authentication) to connect to a canary ({canary.url}), fetched it through the "
             "tunnel and looked for the canary's secret",
        fields=fields,
        request=excerpt("\r\n".join(att.sent)),
        reply=excerpt(b"\r\n".join(att.replies)),
    )


PRIMITIVES: dict[str, Primitive] = {
    "http_proxy_fetch": http_proxy_fetch,
    "socks_fetch": socks_fetch,
}
