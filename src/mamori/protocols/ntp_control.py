"""NTP's query modes: mode 6 control messages (RFC 9327) and mode 7 private requests (ntpd's
``monlist``, the amplifier behind CVE-2013-5211). Pure: builders and parsers only."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

# --- mode 6 -----------------------------------------------------------------------------------

OP_READVAR = 2
_MODE6_HEADER = 12
_MODE6_MAX_DATA = 468  # RFC 9327: at most 468 data octets per fragment
_MAX_VARS = 64


def build_readvar(sequence: int = 0x4D4D, association: int = 0, version: int = 2) -> bytes:
    """A mode 6 READVAR request for the system variables (association 0), no variables named:
    the server answers with all of its default list (what ``ntpq -c rv`` sends)."""
    first = (version << 3) | 6
    return struct.pack(">BBHHHHH", first, OP_READVAR, sequence, 0, association, 0, 0)


@dataclass(frozen=True, slots=True)
class ControlFragment:
    version: int
    opcode: int
    more: bool
    error: bool
    sequence: int
    status: int
    association: int
    offset: int
    data: bytes


def parse_control(data: bytes) -> ControlFragment | None:
    """Parse one mode 6 *response* fragment. None for anything else (a request, another
    mode, a count running past the datagram). Never raises."""
    try:
        r = Reader(data)
        first, second = r.u8(), r.u8()
        sequence, status, association, offset, count = (r.u16be() for _ in range(5))
        if first & 7 != 6 or not second & 0x80 or count > _MODE6_MAX_DATA:
            return None
        version = (first >> 3) & 7
        if version not in (1, 2, 3, 4):
            return None
        payload = r.take(count)
    except Truncated:
        return None
    return ControlFragment(version, second & 0x1F, bool(second & 0x20), bool(second & 0x40),
                           sequence, status, association, offset, payload)


def parse_variables(text: bytes) -> dict[str, str]:
    """``name=value, name="quoted, value"`` pairs of a READVAR answer (at most 64). Never
    raises; values are capped at 256 characters."""
    out: dict[str, str] = {}
    s = text.decode("ascii", "replace")
    i, n = 0, len(s)
    while i < n and len(out) < _MAX_VARS:
        while i < n and s[i] in " ,\r\n\t":
            i += 1
        start = i
        while i < n and s[i] not in "=,\r\n":
            i += 1
        name = s[start:i].strip()
        value = ""
        if i < n and s[i] == "=":
            i += 1
            if i < n and s[i] == '"':
                end = s.find('"', i + 1)
                end = n if end < 0 else end
                value, i = s[i + 1 : end], end + 1
            else:
                start = i
                while i < n and s[i] not in ",\r\n":
                    i += 1
                value = s[start:i].strip()
        if name and name.isprintable() and len(name) <= 64:
            out[name] = value[:256]
    return out


# --- mode 7 -----------------------------------------------------------------------------------

IMPL_UNIV, IMPL_XNTPD_OLD, IMPL_XNTPD = 0, 2, 3
REQ_MON_GETLIST, REQ_MON_GETLIST_1 = 20, 42
_MODE7_HEADER = 8
_MODE7_MAX_DATA = 500
_ITEM_SIZES = {REQ_MON_GETLIST: 32, REQ_MON_GETLIST_1: 72}


def build_monlist(request: int = REQ_MON_GETLIST_1, implementation: int = IMPL_XNTPD) -> bytes:
    """A mode 7 ``monlist`` request as ``ntpdc -c monlist`` sends it: the 8-byte header and
    40 bytes of zeros (ntpd wants at least a full request frame of 48 bytes)."""
    first = (2 << 3) | 7  # R=0 M=0 VN=2 mode=7
    return struct.pack(">BBBBHH", first, 0, implementation, request, 0, 0) + bytes(40)


@dataclass(frozen=True, slots=True)
class PrivateReply:
    more: bool
    sequence: int
    implementation: int
    request: int
    error: int
    items: tuple[bytes, ...]
    item_size: int


def parse_private(data: bytes) -> PrivateReply | None:
    """Parse one mode 7 *response* datagram. None for anything else. Never raises."""
    try:
        r = Reader(data)
        first, second, impl, request = r.u8(), r.u8(), r.u8(), r.u8()
        err_items, mbz_size = r.u16be(), r.u16be()
        if first & 7 != 7 or not first & 0x80 or impl not in (IMPL_UNIV, 2, 3):
            return None
        if (first >> 3) & 7 not in (1, 2, 3, 4):
            return None
        count, size = err_items & 0x0FFF, mbz_size & 0x0FFF
        if count * size > _MODE7_MAX_DATA:
            return None
        items = tuple(r.take(size) for _ in range(count))
    except Truncated:
        return None
    return PrivateReply(bool(first & 0x40), second & 0x7F, impl, request, err_items >> 12,
                        items, size)


def monitor_item_address(item: bytes) -> str | None:
    """The client address of one ``info_monitor_1`` / ``info_monitor`` item (IPv4), or None."""
    if len(item) < 20:
        return None
    return str(ipaddress.IPv4Address(item[16:20]))


def item_size(request: int) -> int | None:
    """The item size a monlist answer to ``request`` must use."""
    return _ITEM_SIZES.get(request)
