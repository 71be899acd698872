"""HTTP/1.x: build a small GET request and parse a response head (and the body we kept)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import text

_STATUS = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_MAX_HEADERS = 100
# Enough body to recognise JSON services (Elasticsearch, Docker); more only costs memory.
BODY_ENOUGH = 16384


def _clean(value: str) -> str:
    # Header injection through our own request is impossible only if no CR/LF gets in.
    return value.replace("\r", "").replace("\n", "")


def build_request(method: str, path: str, host: str, user_agent: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """An HTTP/1.0 request (so no chunked reply) with Host, User-Agent and Connection: close."""
    lines = [f"{_clean(method)} {_clean(path)} HTTP/1.0", f"Host: {_clean(host)}",
             f"User-Agent: {_clean(user_agent)}", "Accept: */*", "Connection: close"]
    lines += [f"{_clean(k)}: {_clean(v)}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def host_header(host: str, port: int, default_port: int = 80) -> str:
    """The Host header value for an address or name (IPv6 literals bracketed)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return name if port == default_port else f"{name}:{port}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header with this name (case-insensitive), or None."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None


def _head_end(buf: bytes) -> tuple[int, int] | None:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = buf.find(sep)
        if i >= 0:
            return i, i + len(sep)
    return None


def parse_response(data: bytes) -> HttpResponse | None:
    """Parse a status line and complete header block; the body is whatever follows.

    Returns None when ``data`` is not an HTTP/1.x response or its head is incomplete or
    malformed. Never raises.
    """
    m = _STATUS.match(data)
    end = _head_end(data)
    if m is None or end is None:
        return None
    head, body_at = end
    headers: list[tuple[str, str]] = []
    for line in data[m.end() : head].splitlines():
        if not line:
            continue
        if b":" not in line or line[:1] in b" \t" or len(headers) >= _MAX_HEADERS:
            return None
        key, _, value = line.partition(b":")
        headers.append((text(key.strip(), 128), text(value.strip(), 1024)))
    return HttpResponse(
        version=f"{chr(m.group(1)[0])}.{chr(m.group(2)[0])}",
        status=int(m.group(3)),
        reason=text(m.group(4) or b"", 128),
        headers=tuple(headers),
        body=data[body_at:],
    )


def reply_complete(buf: bytes) -> bool:
    """True when a response is complete enough to judge, or cannot be HTTP at all.

    Complete means: the head is in and the body is whole (Content-Length), ends its chunks,
    or already holds ``BODY_ENOUGH`` bytes. Without a length the peer's close ends it.
    """
    if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
        return True
    end = _head_end(buf)
    if end is None:
        return False
    resp = parse_response(buf)
    if resp is None:
        return True
    body = len(buf) - end[1]
    if body >= BODY_ENOUGH or resp.status in (204, 304) or 100 <= resp.status < 200:
        return True
    length = resp.header("Content-Length")
    if length is not None and length.strip().isdigit():
        return body >= int(length)
    encoding = (resp.header("Transfer-Encoding") or "").lower()
    return "chunked" in encoding and buf.endswith(b"0\r\n\r\n")
