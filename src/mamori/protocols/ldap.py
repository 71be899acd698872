"""LDAPv3 (RFC 4511) over BER: the few requests an anonymous reader sends, and their answers.

Builders: anonymous simple bind, search, unbind. Parser: split a byte stream into LDAPMessages
and read bind/search results and search entries. Bounded: definite lengths only, at most four
length octets, nesting at most ``_MAX_DEPTH``, at most ``_MAX_ITEMS`` items per SET/SEQUENCE
read. Pure: bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

from dataclasses import dataclass

from mamori.protocols._wire import Truncated

SCOPE_BASE, SCOPE_SUB = 0, 2
OP_BIND_RESPONSE, OP_SEARCH_ENTRY, OP_SEARCH_DONE = 0x61, 0x64, 0x65
RESULT_NAMES = {0: "success", 1: "operationsError", 2: "protocolError", 4: "sizeLimitExceeded",
                8: "strongerAuthRequired", 13: "confidentialityRequired", 32: "noSuchObject",
                48: "inappropriateAuthentication", 49: "invalidCredentials",
                50: "insufficientAccessRights", 53: "unwillingToPerform"}
_MAX_ITEMS = 512
_MAX_VALUE = 4096


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _int(tag: int, value: int) -> bytes:
    return tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _str(value: str, tag: int = 0x04) -> bytes:
    return tlv(tag, value.encode("utf-8"))


def _message(msgid: int, op: bytes) -> bytes:
    return tlv(0x30, _int(0x02, msgid) + op)


def build_anonymous_bind(msgid: int) -> bytes:
    """BindRequest version 3, empty name, simple authentication with an empty password."""
    return _message(msgid, tlv(0x60, _int(0x02, 3) + _str("") + tlv(0x80, b"")))


def build_search(msgid: int, base: str, scope: int, attributes: list[str], *,
                 size_limit: int, types_only: bool) -> bytes:
    """SearchRequest with filter (objectClass=*), no alias dereferencing, 10 s time limit.

    ``types_only`` asks for attribute names without values (RFC 4511 4.5.1.8)."""
    body = (_str(base) + _int(0x0A, scope) + _int(0x0A, 0) + _int(0x02, size_limit)
            + _int(0x02, 10) + tlv(0x01, b"\xff" if types_only else b"\x00")
            + _str("objectClass", 0x87) + tlv(0x30, b"".join(_str(a) for a in attributes)))
    return _message(msgid, tlv(0x63, body))


def build_unbind(msgid: int) -> bytes:
    return _message(msgid, tlv(0x42, b""))


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    content: bytes
    end: int


def _read(data: bytes, pos: int) -> _Tlv:
    if pos + 2 > len(data):
        raise Truncated("no TLV header")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise Truncated("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(data):
        raise Truncated("content runs off the end")
    return _Tlv(tag, data[pos:pos + length], pos + length)


def _items(content: bytes) -> list[_Tlv]:
    out: list[_Tlv] = []
    pos = 0
    while pos < len(content):
        if len(out) >= _MAX_ITEMS:
            break
        item = _read(content, pos)
        out.append(item)
        pos = item.end
    return out


def _int_value(raw: bytes) -> int:
    if not 0 < len(raw) <= 4:
        raise Truncated("bad integer")
    return int.from_bytes(raw, "big", signed=True)


def _text(raw: bytes) -> str:
    return raw[:_MAX_VALUE].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Message:
    msgid: int
    op: int  # protocolOp tag, e.g. OP_SEARCH_ENTRY
    body: bytes  # the protocolOp's content


def split_messages(data: bytes) -> tuple[list[Message], int] | None:
    """Whole LDAPMessages at the start of ``data`` and the bytes they use; None when the bytes
    are not LDAP (the first TLV is no SEQUENCE holding an INTEGER and an operation)."""
    out: list[Message] = []
    pos = 0
    try:
        while pos < len(data) and len(out) < _MAX_ITEMS:
            try:
                outer = _read(data, pos)
            except Truncated:
                if data[pos] != 0x30:
                    return None
                break  # incomplete: wait for more
            if outer.tag != 0x30:
                return None
            parts = _items(outer.content)
            if len(parts) < 2 or parts[0].tag != 0x02:
                return None
            out.append(Message(_int_value(parts[0].content), parts[1].tag, parts[1].content))
            pos = outer.end
    except Truncated:
        return None
    return out, pos


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    diagnostic: str

    @property
    def name(self) -> str:
        return RESULT_NAMES.get(self.code, f"result {self.code}")


def parse_result(body: bytes) -> Result | None:
    """An LDAPResult (BindResponse, SearchResultDone): result code and diagnosticMessage."""
    try:
        parts = _items(body)
        if len(parts) < 3 or parts[0].tag != 0x0A:
            return None
        return Result(_int_value(parts[0].content), _text(parts[2].content)[:256])
    except Truncated:
        return None


@dataclass(frozen=True, slots=True)
class Entry:
    dn: str
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # (name, values); no values if typesOnly


def parse_entry(body: bytes, max_values: int = 16) -> Entry | None:
    """A SearchResultEntry: its DN and attributes (values capped per attribute)."""
    try:
        parts = _items(body)
        if len(parts) < 2 or parts[0].tag != 0x04 or parts[1].tag != 0x30:
            return None
        attrs: list[tuple[str, tuple[str, ...]]] = []
        for attr in _items(parts[1].content):
            pieces = _items(attr.content)
            if attr.tag != 0x30 or len(pieces) < 2 or pieces[0].tag != 0x04:
                return None
            values = tuple(_text(v.content) for v in _items(pieces[1].content)[:max_values])
            attrs.append((_text(pieces[0].content)[:128], values))
        return Entry(_text(parts[0].content)[:512], tuple(attrs))
    except Truncated:
        return None
