"""SNMP v1/v2c over BER: a GetRequest builder and a response parser (bounded nesting)."""

from __future__ import annotations

from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_CONTACT = "1.3.6.1.2.1.1.4.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
OCTET_STRING = 0x04
_GET, _RESPONSE, _SET = 0xA0, 0xA2, 0xA3
_MAX_VARBINDS = 32


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        rest = part >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def build_get(oids: tuple[str, ...] = (SYS_DESCR, SYS_OBJECT_ID), community: str = "public",
              version: int = 1, request_id: int = 0x4D4D) -> bytes:
    """A GetRequest; ``version`` is the wire value (0 = v1, 1 = v2c)."""
    varbinds = b"".join(_tlv(0x30, _oid(o) + b"\x05\x00") for o in oids)
    pdu = _tlv(_GET, _int(request_id) + _int(0) + _int(0) + _tlv(0x30, varbinds))
    return _tlv(0x30, _int(version) + _tlv(0x04, community.encode()) + pdu)


def build_set(oid: str, tag: int, value: bytes, community: str, version: int = 1,
              request_id: int = 0x4D4E) -> bytes:
    """A SetRequest of one variable: ``oid`` = (``tag``, ``value``) exactly as given."""
    varbind = _tlv(0x30, _oid(oid) + _tlv(tag, value))
    pdu = _tlv(_SET, _int(request_id) + _int(0) + _int(0) + _tlv(0x30, varbind))
    return _tlv(0x30, _int(version) + _tlv(0x04, community.encode()) + pdu)


@dataclass(frozen=True, slots=True)
class SnmpResponse:
    version: int
    community: str
    request_id: int
    error_status: int
    varbinds: tuple[tuple[str, str], ...]  # (oid, value as text)
    raw: tuple[tuple[int, bytes], ...] = ()  # (BER tag, value bytes), one per varbind

    def value(self, oid: str) -> str | None:
        for key, val in self.varbinds:
            if key == oid:
                return val
        return None


def _read_tlv(r: Reader) -> tuple[int, bytes]:
    tag = r.u8()
    first = r.u8()
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise Truncated("bad BER length")
        length = int.from_bytes(r.take(count), "big")
    return tag, r.take(length)


def _expect(r: Reader, tag: int) -> bytes:
    got, body = _read_tlv(r)
    if got != tag:
        raise Truncated(f"expected tag {tag:#x}, got {got:#x}")
    return body


def _decode_oid(body: bytes) -> str:
    if not body or len(body) > 128:
        raise Truncated("bad OID")
    parts = [min(body[0] // 40, 2), body[0] - 40 * min(body[0] // 40, 2)]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _decode_int(body: bytes) -> int:
    if not body or len(body) > 8:
        raise Truncated("bad INTEGER")
    return int.from_bytes(body, "big", signed=True)


def _value_text(tag: int, body: bytes) -> str:
    if tag == 0x04:
        return body[:512].decode("utf-8", "replace")
    if tag == 0x06:
        return _decode_oid(body)
    if tag in (0x02, 0x41, 0x42, 0x43, 0x46) and 0 < len(body) <= 9:
        return str(int.from_bytes(body, "big", signed=tag == 0x02))
    if tag in (0x80, 0x81, 0x82):  # noSuchObject, noSuchInstance, endOfMibView
        return ""
    return body[:64].hex()


def parse_response(data: bytes) -> SnmpResponse | None:
    """Parse a v1/v2c GetResponse. Returns None for anything else. Never raises."""
    try:
        msg = Reader(_expect(Reader(data), 0x30))
        version = _decode_int(_expect(msg, 0x02))
        community = _expect(msg, 0x04).decode("utf-8", "replace")
        pdu = Reader(_expect(msg, _RESPONSE))
        request_id = _decode_int(_expect(pdu, 0x02))
        error_status = _decode_int(_expect(pdu, 0x02))
        _decode_int(_expect(pdu, 0x02))
        binds = Reader(_expect(pdu, 0x30))
        varbinds: list[tuple[str, str]] = []
        raw: list[tuple[int, bytes]] = []
        while binds.remaining and len(varbinds) < _MAX_VARBINDS:
            vb = Reader(_expect(binds, 0x30))
            oid = _decode_oid(_expect(vb, 0x06))
            tag, body = _read_tlv(vb)
            varbinds.append((oid, _value_text(tag, body)))
            raw.append((tag, body))
    except Truncated:
        return None
    if version not in (0, 1):
        return None
    return SnmpResponse(version, community, request_id, error_status, tuple(varbinds),
                        tuple(raw))
