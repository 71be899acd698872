"""IPP (RFC 8010/8011) over HTTP: Get-Printer-Attributes and CUPS-Get-Printers requests, and
the responses' attribute groups.

Pure: bytes in, records out. The decoder takes untrusted bytes, caps every count and length
and never raises; anything malformed gives None.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from mamori.protocols import http
from mamori.protocols._wire import Reader, Truncated, text

OP_GET_PRINTER_ATTRIBUTES = 0x000B
OP_CUPS_GET_PRINTERS = 0x4002
STATUS_NOT_SUPPORTED = 0x0501  # server-error-operation-not-supported

_OPERATION, _END, _PRINTER = 0x01, 0x03, 0x04
_CHARSET, _LANGUAGE, _URI, _KEYWORD = 0x47, 0x48, 0x45, 0x44
_INTEGER, _BOOLEAN, _ENUM = 0x21, 0x22, 0x23
_TEXT_TAGS = frozenset({0x30, 0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49})
_LANG_TAGS = frozenset({0x35, 0x36})  # textWithLanguage, nameWithLanguage
MAX_GROUPS = 128
MAX_ATTRIBUTES = 4096
MAX_VALUES = 64  # values kept per attribute
_MAX_VALUE_TEXT = 256
MAX_BODY = 1 << 20

# What the checks ask for: enough to name a printer and say whether it is shared.
PRINTER_FIELDS = ("printer-name", "printer-is-shared", "printer-make-and-model",
                  "printer-info", "printer-location", "printer-uri-supported",
                  "printer-state", "printer-is-accepting-jobs", "device-uri")


def _attr(tag: int, name: str, value: bytes) -> bytes:
    raw = name.encode()
    return struct.pack(">BH", tag, len(raw)) + raw + struct.pack(">H", len(value)) + value


def build_request(operation: int, request_id: int, *, printer_uri: str | None = None,
                  requested: tuple[str, ...] = PRINTER_FIELDS, limit: int = 0) -> bytes:
    """An IPP/2.0 request body (operation attributes only; no document, ever)."""
    body = struct.pack(">BBHI", 2, 0, operation, request_id) + bytes([_OPERATION])
    body += _attr(_CHARSET, "attributes-charset", b"utf-8")
    body += _attr(_LANGUAGE, "attributes-natural-language", b"en")
    if printer_uri is not None:
        body += _attr(_URI, "printer-uri", printer_uri.encode())
    if limit:
        body += _attr(_INTEGER, "limit", struct.pack(">i", limit))
    for i, name in enumerate(requested):
        body += _attr(_KEYWORD, "requested-attributes" if i == 0 else "", name.encode())
    return body + bytes([_END])


def http_host(host: str, port: int) -> str:
    """The Host header for an IPP request to ``host``: "localhost" for a loopback address.

    CUPS answers 400 to a client on a loopback address whose Host is anything but localhost
    (its guard against DNS rebinding); from another machine it takes the address.
    """
    return http.host_header("localhost" if is_loopback(host) else host, port, 631)


def build_http(body: bytes, host: str, port: int, user_agent: str, path: str = "/") -> bytes:
    """POST the IPP body over HTTP/1.0 (Connection: close, no chunking)."""
    head = http.build_request("POST", path, http_host(host, port), user_agent, (
        ("Content-Type", "application/ipp"), ("Content-Length", str(len(body)))))
    return head + body


@dataclass(frozen=True, slots=True)
class Response:
    version: tuple[int, int]
    status: int
    request_id: int
    operation: dict[str, tuple[str, ...]]  # operation-attributes group
    printers: tuple[dict[str, tuple[str, ...]], ...]  # one dict per printer-attributes group

    @property
    def ok(self) -> bool:
        return self.status < 0x0100  # successful-ok and its variants


def _value(tag: int, raw: bytes) -> str:
    if tag in (_INTEGER, _ENUM) and len(raw) == 4:
        return str(int.from_bytes(raw, "big", signed=True))
    if tag == _BOOLEAN and len(raw) == 1:
        return "true" if raw[0] else "false"
    if tag in _LANG_TAGS and len(raw) >= 4:
        lang_len = int.from_bytes(raw[:2], "big")
        rest = raw[2 + lang_len:]
        if len(rest) >= 2:
            return text(rest[2:2 + int.from_bytes(rest[:2], "big")], _MAX_VALUE_TEXT)
    if tag in _TEXT_TAGS:
        return text(raw, _MAX_VALUE_TEXT)
    if 0x10 <= tag <= 0x1F:
        return ""  # out-of-band: unsupported, unknown, no-value
    return raw[:32].hex()


def parse_response(data: bytes) -> Response | None:
    """Decode an IPP response body; None when it is not one. Never raises."""
    r = Reader(data[:MAX_BODY])
    try:
        major, minor, status, request_id = r.u8(), r.u8(), r.u16be(), r.u32be()
        if major not in (1, 2):
            return None
        groups: list[tuple[int, dict[str, list[str]]]] = []
        current: dict[str, list[str]] | None = None
        last: list[str] | None = None
        count = 0
        while True:
            tag = r.u8()
            if tag == _END:
                break
            if tag < 0x10:  # a delimiter: a new attribute group
                if len(groups) >= MAX_GROUPS:
                    return None
                current, last = {}, None
                groups.append((tag, current))
                continue
            if current is None:
                return None
            name_len = r.u16be()
            name = text(r.take(name_len), 128)
            value = _value(tag, r.take(r.u16be()))
            count += 1
            if count > MAX_ATTRIBUTES:
                return None
            if name_len == 0:
                if last is None:
                    return None
                if len(last) < MAX_VALUES:
                    last.append(value)
                continue
            last = current.setdefault(name, [])
            if len(last) < MAX_VALUES:
                last.append(value)
    except Truncated:
        return None
    frozen = [(t, {k: tuple(v) for k, v in g.items()}) for t, g in groups]
    operation = next((g for t, g in frozen if t == _OPERATION), {})
    return Response((major, minor), status, request_id, operation,
                    tuple(g for t, g in frozen if t == _PRINTER))


def http_reply_complete(buf: bytes) -> bool:
    """True once an HTTP response carrying IPP is whole (Content-Length), or cannot be one,
    or is over the cap; without a length the peer's close ends it."""
    if len(buf) >= MAX_BODY or (len(buf) >= 5 and not buf.startswith(b"HTTP/")):
        return True
    resp = http.parse_response(buf)
    if resp is None:
        return False
    if 100 <= resp.status < 200:
        return True
    length = resp.header("Content-Length")
    if length is not None and length.strip().isdigit():
        return len(resp.body) >= int(length)
    return False


def is_ipp(resp: http.HttpResponse) -> bool:
    """The HTTP response carries IPP (by its content type)."""
    return (resp.header("Content-Type") or "").split(";")[0].strip().lower() == "application/ipp"


_CHECKBOX = re.compile(rb'<input\b[^>]{0,200}?\btype="?checkbox"?[^>]{0,200}>', re.IGNORECASE)
_NAME = re.compile(rb'\bname="?([A-Z_]{1,40})"?', re.IGNORECASE)
_CHECKED = re.compile(rb'\bchecked\b', re.IGNORECASE)
_ADMIN_SCAN = 1 << 17


def admin_settings(body: bytes) -> dict[str, bool]:
    """The server-settings checkboxes of a CUPS administration page (REMOTE_ADMIN,
    SHARE_PRINTERS, REMOTE_ANY, ...) and whether each is ticked; {} when there are none.
    Scans a bounded prefix; never raises."""
    out: dict[str, bool] = {}
    for m in _CHECKBOX.finditer(body[:_ADMIN_SCAN]):
        name = _NAME.search(m.group(0))
        if name and len(out) < 32:
            out[name.group(1).decode().upper()] = _CHECKED.search(m.group(0)) is not None
    return out


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
