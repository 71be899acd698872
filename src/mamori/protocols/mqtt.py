"""MQTT 3.1.1: CONNECT (+ SUBSCRIBE to the broker's version topic) and the broker's packets."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

CONNECT, CONNACK, PUBLISH, SUBSCRIBE, SUBACK = 1, 2, 3, 8, 9
VERSION_TOPIC = "$SYS/broker/version"
_MAX_PACKETS = 16


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def build_connect(client_id: str = "mamori-identify", keepalive: int = 10) -> bytes:
    """A clean-session CONNECT without credentials."""
    body = _str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive) + _str(client_id)
    return bytes([CONNECT << 4]) + _remaining_length(len(body)) + body


def build_subscribe(topic: str, packet_id: int = 1) -> bytes:
    """A QoS 0 SUBSCRIBE to one topic."""
    body = struct.pack(">H", packet_id) + _str(topic) + b"\x00"
    return bytes([(SUBSCRIBE << 4) | 0x02]) + _remaining_length(len(body)) + body


def build_version_query() -> bytes:
    """CONNECT then SUBSCRIBE to ``$SYS/broker/version``, pipelined in one write."""
    return build_connect() + build_subscribe(VERSION_TOPIC)


@dataclass(frozen=True, slots=True)
class Packet:
    kind: int
    flags: int
    body: bytes


def parse_packets(data: bytes) -> list[Packet] | None:
    """Split ``data`` into whole MQTT control packets (a cut last packet is dropped).

    Returns None when the first bytes are not an MQTT packet. Never raises.
    """
    out: list[Packet] = []
    r = Reader(data)
    try:
        while r.remaining and len(out) < _MAX_PACKETS:
            start = r.pos
            first = r.u8()
            length, shift = 0, 0
            for _ in range(4):
                byte = r.u8()
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                raise Truncated("remaining length over four bytes")
            if first >> 4 == 0:
                raise Truncated("reserved packet type")
            try:
                body = r.take(length)
            except Truncated:
                r.pos = start
                break
            out.append(Packet(first >> 4, first & 0xF, body))
    except Truncated:
        if not out:
            return None
    return out if out else None


@dataclass(frozen=True, slots=True)
class BrokerReply:
    return_code: int
    version: str | None  # payload of $SYS/broker/version, e.g. "mosquitto version 2.0.11"


def parse_broker_reply(data: bytes) -> BrokerReply | None:
    """The CONNACK return code and, if published, the broker version string.

    Returns None unless the first packet is a well-formed CONNACK. Never raises.
    """
    packets = parse_packets(data)
    if not packets or packets[0].kind != CONNACK or len(packets[0].body) != 2:
        return None
    code = packets[0].body[1]
    version = None
    for packet in packets[1:]:
        if packet.kind == PUBLISH:
            try:
                r = Reader(packet.body)
                topic = r.take(r.u16be()).decode("utf-8", "replace")
                if packet.flags & 0x06:
                    r.u16be()
                if topic == VERSION_TOPIC:
                    version = r.take(min(r.remaining, 128)).decode("utf-8", "replace")
            except Truncated:
                continue
    return BrokerReply(code, version)


def reply_complete(buf: bytes) -> bool:
    """True once the CONNACK refuses us, the version arrives, or the bytes are not MQTT."""
    if not buf:
        return False
    if buf[0] != CONNACK << 4:
        return True
    reply = parse_broker_reply(buf)
    if reply is None:
        return len(buf) >= 4
    return reply.return_code != 0 or reply.version is not None
