"""HTTP decoy: one request per connection (request line, headers, a bounded body), a plain
200 page for ``/`` and 404 for everything else, then close. Basic credentials are recorded."""

from __future__ import annotations

import base64
import binascii
import re

from mamori.model.watch import EventType
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["HttpPersona", "HttpRequest", "parse_head"]

MAX_HEAD = 8192
MAX_BODY = 8192
MAX_HEADERS = 100
_REQUEST_LINE = re.compile(rb"^([A-Za-z][A-Za-z0-9_-]{0,31}) (\S{1,8000})(?: (HTTP/\d(?:\.\d)?))?$")
_ROUTINE = frozenset({"host", "user-agent", "accept", "accept-encoding", "accept-language",
                      "connection", "authorization", "content-length", "content-type"})

_PAGE_OK = (b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head>"
            b"<body><h1>It works</h1></body></html>\n")
_PAGE_404 = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
             b"<body><h1>Not Found</h1></body></html>\n")


class HttpRequest:
    """The parsed head of one request (all fields bounded by the head cap)."""

    __slots__ = ("headers", "method", "other_headers", "path", "version")

    def __init__(self, method: bytes, path: bytes, version: bytes,
                 headers: dict[str, bytes], other_headers: list[bytes]) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.other_headers = other_headers


def parse_head(head: bytes) -> HttpRequest | None:
    """Parse a request head (without the blank line). None when it is not HTTP. Never raises."""
    lines = re.split(rb"\r?\n", head)
    match = _REQUEST_LINE.match(lines[0])
    if match is None:
        return None
    headers: dict[str, bytes] = {}
    other: list[bytes] = []
    for line in lines[1 : MAX_HEADERS + 1]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().decode("latin-1").lower()
        headers.setdefault(key, value.strip())
        if key not in _ROUTINE:
            other.append(line)
    return HttpRequest(match.group(1), match.group(2), match.group(3) or b"HTTP/0.9",
                       headers, other)


def basic_credentials(value: bytes) -> tuple[bytes, bytes] | None:
    """``(username, password)`` from an ``Authorization: Basic`` value, else None."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def response(status: int, method: bytes) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 431: b"Request Header Fields "
              b"Too Large"}[status]
    body = _PAGE_OK if status == 200 else _PAGE_404 if status == 404 else b""
    head = (b"HTTP/1.1 %d %s\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, reason, len(body)))
    return head if method == b"HEAD" else head + body


class HttpPersona(Persona):
    name = "http"
    FIRST_KEEP = 0  # the request buffer itself is the excerpt

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._request: HttpRequest | None = None
        self._head_len = 0
        self._body_want = 0

    def handle(self, data: bytes) -> Step:
        if self.data_recorded:
            return Step(close=True)
        self._buf += data[: MAX_HEAD + MAX_BODY + 4 - len(self._buf)]
        if self._request is None:
            if self._buf[:1] == b"\x16":
                return self._bad({"note": "tls client hello"}, reply=False)
            end = self._find_head_end()
            if end is None:
                if len(self._buf) > MAX_HEAD:
                    return self._bad({"note": "head too large"}, status=431)
                if b"\n" in self._buf and parse_head(bytes(self._buf).split(b"\n")[0]
                                                     .rstrip(b"\r")) is None:
                    return self._bad({"note": "not http"})
                return Step()
            head_end, self._head_len = end
            request = parse_head(bytes(self._buf[:head_end]))
            if request is None:
                return self._bad({"note": "not http"})
            self._request = request
            length = request.headers.get("content-length", b"0").strip()
            self._body_want = min(int(length), MAX_BODY) if length.isdigit() and len(
                length) < 12 else 0
        if len(self._buf) - self._head_len < self._body_want:
            return Step()
        return self._answer(self._request)

    def _find_head_end(self) -> tuple[int, int] | None:
        for sep in (b"\r\n\r\n", b"\n\n"):
            pos = self._buf.find(sep, 0, MAX_HEAD + len(sep))
            if pos >= 0:
                return pos, pos + len(sep)
        return None

    def _answer(self, request: HttpRequest) -> Step:
        step = Step(close=True)
        step.records.append(self.first_request(self._fields(request), self._raw()))
        auth = request.headers.get("authorization")
        creds = basic_credentials(auth) if auth is not None else None
        if creds is not None:
            step.records.append(Record(EventType.DECOY_LOGIN, {
                "persona": self.name, "username": clean(creds[0]), "password": clean(creds[1]),
                "method": clean(request.method), "path": clean(request.path),
                "scheme": "basic",
            }, auth or b""))
        step.reply = response(200 if request.path == b"/" else 404, request.method)
        return step

    def _fields(self, request: HttpRequest) -> dict[str, str]:
        fields = {"method": clean(request.method, 32), "path": clean(request.path, 1024),
                  "version": clean(request.version, 16)}
        for key, name in (("user-agent", "user_agent"), ("host", "host"),
                          ("content-type", "content_type")):
            if key in request.headers:
                fields[name] = clean(request.headers[key])
        if request.other_headers:
            fields["headers"] = clean(b"\n".join(request.other_headers), 1024)
        body = len(self._buf) - self._head_len
        if body > 0:
            fields["body_size"] = str(body)
        return fields

    def _raw(self) -> bytes:
        return bytes(self._buf)

    def _bad(self, fields: dict[str, str], *, status: int = 400, reply: bool = True) -> Step:
        step = Step(close=True, records=[self.first_request(fields, self._raw())])
        if reply:
            step.reply = response(status, b"GET")
        return step

    def finish(self) -> list[Record]:
        if self.data_recorded or not self._buf:
            return []
        if self._request is not None:
            fields = self._fields(self._request)
        else:
            fields = {"note": "incomplete request"}
        return [self.first_request({**fields, "complete": "no"}, self._raw())]
