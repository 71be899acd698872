"""MySQL/MariaDB: the server's initial handshake packet (or the error it sends instead), and
the client side of a login: the handshake response, the server's verdict, a command."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text

_VERSION = re.compile(r"^(\d+\.\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class Greeting:
    protocol: int
    server_version: str  # raw, e.g. "5.5.5-10.11.6-MariaDB-0+deb12u1"
    connection_id: int
    product: str  # "MariaDB" or "MySQL"
    version: str  # "10.11.6"
    auth_plugin: str


@dataclass(frozen=True, slots=True)
class ErrorPacket:
    code: int
    message: str


def parse_greeting(data: bytes) -> Greeting | ErrorPacket | None:
    """Parse the first packet a MySQL-protocol server sends on connect.

    Returns a ``Greeting`` (protocol 10 handshake) or an ``ErrorPacket`` (e.g. "Host ... is
    not allowed to connect"); None for anything else. Never raises.
    """
    try:
        r = Reader(data)
        length = r.u24le()
        if r.u8() != 0 or length < 3 or length > 1024:
            return None
        body = Reader(r.take(length))
        marker = body.u8()
        if marker == 0xFF:
            code = body.u16le()
            rest = body.take(body.remaining)
            if rest.startswith(b"#"):
                rest = rest[6:]  # SQL state marker and five-character state
            return ErrorPacket(code, rest.decode("utf-8", "replace")[:256])
        if marker != 10:
            return None
        raw = body.cstring(128).decode("ascii")
        conn_id = body.u32le()
        body.skip(8 + 1)  # auth-plugin-data part 1, filler
        body.u16le()
        plugin = ""
        if body.remaining >= 13:
            body.skip(1 + 2 + 2 + 1 + 10)  # charset, status, caps hi, auth len, reserved
            if body.remaining:
                tail = body.take(body.remaining)
                parts = tail.split(b"\0")
                plugin = parts[1].decode("ascii", "replace") if len(parts) > 2 else ""
    except (Truncated, UnicodeDecodeError):
        return None
    text = raw.removeprefix("5.5.5-")  # MariaDB's replication-compatibility prefix
    m = _VERSION.match(text)
    if m is None:
        return None
    product = "MariaDB" if "mariadb" in text.lower() else "MySQL"
    return Greeting(10, raw, conn_id, product, m.group(1), plugin)


# --- client side of the handshake (a login attempt), for checks ------------------------------
# Capability bits (MySQL client/server protocol, "Capability Flags").
CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
_CLIENT_WANTS = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41
                 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH)
COM_QUIT = 0x01
COM_STATISTICS = 0x09
NATIVE_PASSWORD = "mysql_native_password"  # noqa: S105 - a plugin name, not a password
_MAX_PACKET = 1 << 16  # what we accept from a server during login; real ones are far smaller


@dataclass(frozen=True, slots=True)
class Handshake:
    """The parts of a protocol-10 greeting a client needs to log in."""

    server_version: str
    connection_id: int
    capabilities: int
    charset: int
    salt: bytes  # auth-plugin-data, without the trailing NUL (20 bytes on real servers)
    auth_plugin: str
    sequence: int  # sequence id of the greeting packet; the client answers with the next


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The server's answer to a login attempt.

    ``kind``: "ok" (logged in), "error" (ERR packet: ``code``/``message``), "switch" (the
    server asks to retry with ``plugin`` and fresh ``data``) or "more" (plugin-specific data).
    """

    kind: str
    sequence: int
    code: int = 0
    message: str = ""
    plugin: str = ""
    data: bytes = b""


def split_packet(data: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole packet of ``data``: (sequence id, payload, the bytes after it).

    None when the packet is incomplete or its length is absurd. Never raises.
    """
    if len(data) < 4:
        return None
    length = int.from_bytes(data[:3], "little")
    if length > _MAX_PACKET or len(data) < 4 + length:
        return None
    return data[3], data[4 : 4 + length], data[4 + length :]


def packet_complete(buf: bytes) -> bool:
    """True once one whole packet is in, or the header cannot start a login-time packet."""
    if len(buf) < 4:
        return False
    return int.from_bytes(buf[:3], "little") > _MAX_PACKET or split_packet(buf) is not None


def parse_handshake(data: bytes) -> Handshake | ErrorPacket | None:
    """Parse the greeting for logging in: a ``Handshake`` with salt and capabilities, the
    server's ``ErrorPacket`` ("Host ... is not allowed"), or None for anything else (including
    servers too old for protocol 4.1 logins). Never raises."""
    first = parse_greeting(data)
    if first is None or isinstance(first, ErrorPacket):
        return first
    packet = split_packet(data)
    if packet is None:
        return None
    seq, payload, _ = packet
    try:
        r = Reader(payload)
        r.u8()
        version = r.cstring(128).decode("ascii")
        conn_id = r.u32le()
        salt = r.take(8)
        r.skip(1)
        caps = r.u16le()
        charset = r.u8()
        r.u16le()  # status flags
        caps |= r.u16le() << 16
        salt_len = r.u8()
        r.skip(10)
        if not caps & CLIENT_PROTOCOL_41 or not caps & CLIENT_SECURE_CONNECTION:
            return None
        part2 = r.take(max(13, salt_len - 8))
        salt += part2.rstrip(b"\0")
        plugin = ""
        if caps & CLIENT_PLUGIN_AUTH and r.remaining:
            rest = r.take(r.remaining)
            plugin = rest.split(b"\0", 1)[0].decode("ascii", "replace")[:64]
    except (Truncated, UnicodeDecodeError):
        return None
    return Handshake(version, conn_id, caps, charset, salt, plugin or NATIVE_PASSWORD, seq)


def native_password_scramble(password: bytes, salt: bytes) -> bytes:
    """mysql_native_password's proof: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))).

    An empty password is sent as an empty proof, as every client does.
    """
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()  # noqa: S324 - the protocol defines SHA-1
    stage2 = hashlib.sha1(stage1).digest()  # noqa: S324
    mix = hashlib.sha1(salt[:20] + stage2).digest()  # noqa: S324
    return bytes(a ^ b for a, b in zip(stage1, mix, strict=True))


def packet(sequence: int, payload: bytes) -> bytes:
    """Frame ``payload`` as one packet (3-byte length, sequence id)."""
    return len(payload).to_bytes(3, "little") + bytes([sequence & 0xFF]) + payload


def build_login(hello: Handshake, user: str, auth_response: bytes,
                plugin: str = NATIVE_PASSWORD) -> bytes:
    """A HandshakeResponse41 answering ``hello``: log in as ``user`` with ``auth_response``
    (see ``native_password_scramble``), no database, no TLS."""
    caps = _CLIENT_WANTS & (hello.capabilities | CLIENT_LONG_PASSWORD)
    body = struct.pack("<IIB", caps, 1 << 24, hello.charset or 33) + b"\0" * 23
    body += user.encode("utf-8")[:64] + b"\0"
    body += bytes([len(auth_response)]) + auth_response
    if caps & CLIENT_PLUGIN_AUTH:
        body += plugin.encode("ascii", "replace") + b"\0"
    return packet(hello.sequence + 1, body)


def parse_auth_result(data: bytes) -> AuthResult | None:
    """The server's reply to a login packet (OK, ERR, auth switch, more data); None for
    anything else or an incomplete packet. Never raises."""
    split = split_packet(data)
    if split is None or not split[1]:
        return None
    seq, payload, _ = split
    marker = payload[0]
    try:
        if marker == 0x00 and len(payload) >= 7:
            return AuthResult("ok", seq)
        if marker == 0xFF:
            r = Reader(payload, 1)
            code = r.u16le()
            rest = r.take(r.remaining)
            if rest.startswith(b"#"):
                rest = rest[6:]  # SQL state marker and five-character state
            return AuthResult("error", seq, code=code, message=text(rest, 256))
        if marker == 0xFE:
            r = Reader(payload, 1)
            plugin = r.cstring(64).decode("ascii") if r.remaining else NATIVE_PASSWORD
            return AuthResult("switch", seq, plugin=plugin,
                              data=r.take(r.remaining).rstrip(b"\0"))
        if marker == 0x01:
            return AuthResult("more", seq, data=payload[1:65])
    except (Truncated, UnicodeDecodeError):
        return None
    return None


def build_command(command: int, argument: bytes = b"") -> bytes:
    """A command packet (sequence 0), e.g. COM_STATISTICS."""
    return packet(0, bytes([command]) + argument)


def parse_statistics(data: bytes) -> str | None:
    """The text COM_STATISTICS returns ("Uptime: 12  Threads: 1  Questions: ..."), or None
    when the reply is not that. Never raises."""
    split = split_packet(data)
    if split is None:
        return None
    body = split[1]
    if not body.startswith(b"Uptime: "):
        return None
    return text(body, 512)
