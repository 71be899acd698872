"""RDP decoy: records the X.224 Connection Request (the ``mstshash`` cookie or routing token
and the security protocols requested), then closes without answering."""

from __future__ import annotations

import struct

from mamori.protocols._wire import Reader, Truncated
from mamori.watch.decoys.session import Persona, Step, clean

__all__ = ["RdpPersona", "parse_connection_request"]

_PROTOCOLS = {1: "ssl", 2: "hybrid", 4: "rdstls", 8: "hybrid-ex"}
_MAX_TPKT = 4096


def parse_connection_request(tpkt: bytes) -> dict[str, str] | None:
    """Fields of a TPKT + X.224 Connection Request: ``cookie`` (mstshash user name or routing
    token) and ``protocols`` requested. None when the bytes are not one. Never raises."""
    try:
        reader = Reader(tpkt)
        if reader.u8() != 3:
            return None
        reader.skip(1)
        length = reader.u16be()
        body = Reader(reader.take(min(length, len(tpkt)) - 4))
        indicator = body.u8()
        if body.u8() & 0xF0 != 0xE0:
            return None
        body.skip(5)  # dst-ref, src-ref, class
        rest = body.take(min(indicator - 6, body.remaining))
    except Truncated:
        return None
    fields: dict[str, str] = {}
    neg = rest
    end = rest.find(b"\r\n")
    if end >= 0:
        token = rest[:end]
        if token.startswith(b"Cookie: mstshash="):
            fields["cookie"] = clean(token[len(b"Cookie: mstshash=") :], 128)
        else:
            fields["routing_token"] = clean(token, 128)
        neg = rest[end + 2 :]
    if len(neg) >= 8 and neg[0] == 0x01:
        (requested,) = struct.unpack("<I", neg[4:8])
        names = [name for bit, name in _PROTOCOLS.items() if requested & bit] or ["rdp"]
        fields["protocols"] = ",".join(names)
    return fields


class RdpPersona(Persona):
    name = "rdp"

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()

    def handle(self, data: bytes) -> Step:
        self._buf += data[: _MAX_TPKT - len(self._buf)]
        if len(self._buf) < 4:
            return Step()
        if self._buf[0] != 3:
            return Step(records=[self.first_request({"note": "not tpkt"})], close=True)
        (length,) = struct.unpack(">H", bytes(self._buf[2:4]))
        if len(self._buf) < length and len(self._buf) < _MAX_TPKT:
            return Step()
        fields = parse_connection_request(bytes(self._buf))
        if fields is None:
            fields = {"note": "not an x.224 connection request"}
        return Step(records=[self.first_request(fields)], close=True)
