"""MySQL decoy: a handshake v10 greeting (no TLS offered), the login packet's username (and
database) recorded, then "Access denied" (error 1045). The scrambled password cannot be read
back, so logins carry ``password`` empty and ``auth_size`` (0 means no password was sent)."""

from __future__ import annotations

import itertools
import secrets
import struct
from dataclasses import dataclass

from mamori.model.watch import EventType
from mamori.protocols._wire import Reader, Truncated
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["Login", "MysqlPersona", "greeting", "parse_login"]

SERVER_VERSION = b"5.7.42-log"
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000
_CAPABILITIES = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x80000
_MAX_PACKET = 4096
_ids = itertools.count(8)


@dataclass(frozen=True, slots=True)
class Login:
    username: bytes
    auth_size: int
    database: bytes = b""
    plugin: bytes = b""
    tls: bool = False  # an SSL request instead of a login


def _salt(n: int) -> bytes:
    return bytes(0x21 + secrets.randbelow(0x5E) for _ in range(n))


def packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([sequence & 0xFF]) + payload


def greeting(connection_id: int, salt: bytes) -> bytes:
    """The server's first packet (protocol 10) with a 20-byte ``salt``."""
    payload = (b"\x0a" + SERVER_VERSION + b"\x00" + struct.pack("<I", connection_id)
               + salt[:8] + b"\x00" + struct.pack("<H", _CAPABILITIES & 0xFFFF) + b"\x21"
               + struct.pack("<H", 0x0002) + struct.pack("<H", _CAPABILITIES >> 16)
               + bytes([21]) + b"\x00" * 10 + salt[8:20] + b"\x00"
               + b"mysql_native_password\x00")
    return packet(0, payload)


def _cstring(reader: Reader, limit: int = 256) -> bytes:
    rest = reader.data[reader.pos :]
    end = rest.find(b"\x00", 0, limit)
    if end < 0:
        value = rest[:limit]
        reader.pos = len(reader.data)
        return value
    reader.pos += end + 1
    return rest[:end]


def _lenenc(reader: Reader) -> int:
    first = reader.u8()
    if first < 0xFB:
        return first
    if first == 0xFC:
        return reader.u16le()
    if first == 0xFD:
        return reader.u24le()
    raise Truncated("length too large")


def parse_login(payload: bytes) -> Login | None:
    """The client's HandshakeResponse (4.1 or 3.20). None when it is not one. Never raises."""
    try:
        reader = Reader(payload)
        caps = reader.u16le()
        if caps & CLIENT_PROTOCOL_41:
            caps |= reader.u16le() << 16
            reader.skip(4 + 1 + 23)
            if caps & CLIENT_SSL and reader.remaining == 0:
                return Login(b"", 0, tls=True)
            user = _cstring(reader)
            if caps & CLIENT_PLUGIN_AUTH_LENENC:
                size = _lenenc(reader)
            elif caps & CLIENT_SECURE_CONNECTION:
                size = reader.u8()
            else:
                size = len(_cstring(reader))  # NUL-terminated, already consumed
            if caps & (CLIENT_PLUGIN_AUTH_LENENC | CLIENT_SECURE_CONNECTION):
                reader.skip(min(size, reader.remaining))
            database = _cstring(reader) if caps & CLIENT_CONNECT_WITH_DB and reader.remaining \
                else b""
            plugin = _cstring(reader) if caps & CLIENT_PLUGIN_AUTH and reader.remaining else b""
            return Login(user, size, database, plugin)
        reader.skip(3)
        user = _cstring(reader)
        return Login(user, len(_cstring(reader)))
    except Truncated:
        return None


class MysqlPersona(Persona):
    name = "mysql"

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()

    def greeting(self) -> bytes:
        return greeting(next(_ids) & 0xFFFFFFFF, _salt(20))

    def handle(self, data: bytes) -> Step:
        if self.data_recorded:
            return Step(close=True)
        self._buf += data[: _MAX_PACKET + 4 - len(self._buf)]
        if len(self._buf) < 4:
            return Step()
        (length,) = struct.unpack("<I", bytes(self._buf[:3]) + b"\x00")
        sequence = self._buf[3]
        if length > _MAX_PACKET:
            return Step(records=[self.first_request({"note": "packet too large"})], close=True)
        if len(self._buf) < 4 + length:
            return Step()
        login = parse_login(bytes(self._buf[4 : 4 + length]))
        if login is None:
            return Step(records=[self.first_request({"note": "not a mysql login"})], close=True)
        if login.tls:
            return Step(records=[self.first_request({"note": "tls requested"})], close=True)
        user = clean(login.username, 64)
        fields = {"username": user, "auth_size": str(login.auth_size)}
        if login.database:
            fields["database"] = clean(login.database, 64)
        if login.plugin:
            fields["client_plugin"] = clean(login.plugin, 64)
        step = Step(close=True)
        step.records.append(self.first_request(fields))
        step.records.append(Record(EventType.DECOY_LOGIN, {
            "persona": self.name, "username": user, "password": "", "outcome": "refused",
            "auth_size": str(login.auth_size),
        }, login.username))
        message = b"Access denied for user '%s'@'localhost' (using password: %s)" % (
            user.encode("utf-8", "replace")[:64], b"YES" if login.auth_size else b"NO")
        step.reply = packet(sequence + 1, b"\xff" + struct.pack("<H", 1045) + b"#28000"
                            + message)
        return step
