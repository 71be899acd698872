"""SSH transport wire format (RFC 4253): binary packets, KEXINIT, ECDH and userauth messages.

Pure: builders return bytes, parsers take bytes and return a record or None (never raise on
hostile input). The cryptography of the key exchange lives in ``ssh_transport``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

MSG_DISCONNECT = 1
MSG_IGNORE = 2
MSG_UNIMPLEMENTED = 3
MSG_DEBUG = 4
MSG_SERVICE_REQUEST = 5
MSG_SERVICE_ACCEPT = 6
MSG_EXT_INFO = 7
MSG_KEXINIT = 20
MSG_NEWKEYS = 21
MSG_KEX_ECDH_INIT = 30
MSG_KEX_ECDH_REPLY = 31
MSG_USERAUTH_REQUEST = 50
MSG_USERAUTH_FAILURE = 51
MSG_USERAUTH_SUCCESS = 52
MSG_USERAUTH_BANNER = 53

MAX_PACKET = 35000  # RFC 4253 6.1: every implementation must handle this; we accept no more
MAX_NAMES = 128  # entries kept from one name-list
MAX_NAME_LIST = 8192  # bytes of one name-list

_IDENT_LINE = re.compile(rb"SSH-(\d\.\d+)-[\x21-\x7e]+(?: [\x20-\x7e]*)?\r?\n")


class SshError(ValueError):
    """Bytes that break the SSH wire rules (length out of range, bad padding, ...)."""


# --- encoding helpers -------------------------------------------------------------------------


def string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def name_list(names: tuple[str, ...] | list[str]) -> bytes:
    return string(",".join(names).encode("ascii"))


def mpint(value: int) -> bytes:
    """RFC 4251 mpint for a non-negative integer."""
    if value == 0:
        return string(b"")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return string(raw)


def _read_string(r: Reader, limit: int = MAX_PACKET) -> bytes:
    n = r.u32be()
    if n > limit:
        raise Truncated(f"string of {n} bytes exceeds {limit}")
    return r.take(n)


def _read_names(r: Reader) -> tuple[str, ...]:
    raw = _read_string(r, MAX_NAME_LIST)
    if not raw:
        return ()
    text = raw.decode("ascii", "replace")
    return tuple(n[:64] for n in text.split(","))[:MAX_NAMES]


# --- identification and packets ---------------------------------------------------------------


def find_ident(buf: bytes) -> tuple[bytes, int] | None:
    """The server's identification line without its CR LF, and the offset just after it.

    Servers may send other lines first (RFC 4253 4.2). Returns None while no complete
    ``SSH-x.y-...`` line is in the buffer. Never raises.
    """
    m = _IDENT_LINE.search(buf[:8192])
    if m is None:
        return None
    return m.group(0).rstrip(b"\r\n"), m.end()


def frame(payload: bytes, block: int = 8, padding: bytes | None = None) -> bytes:
    """An unencrypted binary packet: length, padding length, payload, random padding.

    ``block`` is the cipher block size (8 before keys are in use); ``padding`` supplies the
    padding bytes (at least 4 + block of them), zeros when None.
    """
    pad = block - (5 + len(payload)) % block
    if pad < 4:
        pad += block
    pad_bytes = (padding or b"\x00" * (pad + block))[:pad]
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + pad_bytes


def packet_length(header: bytes) -> int:
    """The packet_length field of a packet's first 4 bytes. Raises SshError when out of range."""
    (n,) = struct.unpack(">I", header[:4])
    if n < 5 or n > MAX_PACKET:
        raise SshError(f"packet length {n} out of range")
    return int(n)


def unframe(body: bytes) -> bytes:
    """Payload of a packet body (padding_length, payload, padding: everything after the
    length field). Raises SshError when the padding length does not fit."""
    if not body:
        raise SshError("empty packet")
    pad = body[0]
    if pad < 4 or pad + 1 > len(body):
        raise SshError(f"padding length {pad} invalid")
    return body[1 : len(body) - pad]


def split_plain_packet(buf: bytes) -> tuple[bytes, int] | None:
    """First unencrypted packet in ``buf``: (payload, bytes consumed), or None while
    incomplete. Raises SshError for a length or padding that break the rules."""
    if len(buf) < 4:
        return None
    n = packet_length(buf)
    if len(buf) < 4 + n:
        return None
    return unframe(buf[4 : 4 + n]), 4 + n


# --- KEXINIT ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KexInit:
    """The algorithm lists one side offers (RFC 4253 7.1), in its order of preference."""

    kex: tuple[str, ...]
    host_key: tuple[str, ...]
    ciphers_c2s: tuple[str, ...]
    ciphers_s2c: tuple[str, ...]
    macs_c2s: tuple[str, ...]
    macs_s2c: tuple[str, ...]
    compression_c2s: tuple[str, ...]
    compression_s2c: tuple[str, ...]
    first_kex_follows: bool = False


def build_kexinit(
    cookie: bytes,
    kex: tuple[str, ...],
    host_key: tuple[str, ...],
    ciphers: tuple[str, ...],
    macs: tuple[str, ...],
    compression: tuple[str, ...] = ("none",),
) -> bytes:
    """A KEXINIT payload offering the same lists in both directions."""
    return (
        bytes([MSG_KEXINIT]) + cookie[:16].ljust(16, b"\0")
        + name_list(kex) + name_list(host_key)
        + name_list(ciphers) + name_list(ciphers)
        + name_list(macs) + name_list(macs)
        + name_list(compression) + name_list(compression)
        + name_list(()) + name_list(())
        + b"\x00" + b"\x00\x00\x00\x00"
    )


def parse_kexinit(payload: bytes) -> KexInit | None:
    """Parse a KEXINIT payload (message number included). None if it is not one. Never raises."""
    try:
        r = Reader(payload)
        if r.u8() != MSG_KEXINIT:
            return None
        r.skip(16)
        lists = [_read_names(r) for _ in range(10)]
        follows = r.u8() != 0
        r.u32be()
    except Truncated:
        return None
    if not lists[0] or not lists[1] or not lists[2] or not lists[4]:
        return None  # a real server names at least one kex, host key, cipher and MAC
    return KexInit(lists[0], lists[1], lists[2], lists[3], lists[4], lists[5], lists[6],
                   lists[7], follows)


def choose(client: tuple[str, ...], server: tuple[str, ...]) -> str | None:
    """RFC 4253 7.1: the first client algorithm the server also offers."""
    return next((c for c in client if c in server), None)


# --- ECDH key exchange messages (RFC 5656 4, RFC 8731) ---------------------------------------


def build_ecdh_init(public: bytes) -> bytes:
    return bytes([MSG_KEX_ECDH_INIT]) + string(public)


@dataclass(frozen=True, slots=True)
class EcdhReply:
    host_key: bytes  # K_S, the server's public host key blob
    server_public: bytes  # Q_S
    signature: bytes
    host_key_type: str


def parse_ecdh_reply(payload: bytes) -> EcdhReply | None:
    """Parse SSH_MSG_KEX_ECDH_REPLY. None if it is not one or is malformed. Never raises."""
    try:
        r = Reader(payload)
        if r.u8() != MSG_KEX_ECDH_REPLY:
            return None
        host_key = _read_string(r, 16384)
        server_public = _read_string(r, 2048)  # hybrids: KEM ciphertext || X25519 key
        signature = _read_string(r, 16384)
        key_type = _read_string(Reader(host_key), 64).decode("ascii", "replace")
    except Truncated:
        return None
    return EcdhReply(host_key, server_public, signature, key_type)


# --- service and userauth ---------------------------------------------------------------------


def build_service_request(service: str) -> bytes:
    return bytes([MSG_SERVICE_REQUEST]) + string(service.encode("ascii"))


def build_userauth_none(user: str) -> bytes:
    """SSH_MSG_USERAUTH_REQUEST with method "none": asks which methods may continue."""
    return (bytes([MSG_USERAUTH_REQUEST]) + string(user.encode("utf-8"))
            + string(b"ssh-connection") + string(b"none"))


@dataclass(frozen=True, slots=True)
class AuthReply:
    """The server's answer to a userauth request."""

    success: bool  # the "none" method itself was accepted: no authentication at all
    methods: tuple[str, ...] = ()
    partial: bool = False


def parse_userauth_reply(payload: bytes) -> AuthReply | None:
    """Parse USERAUTH_FAILURE or USERAUTH_SUCCESS; None for anything else. Never raises."""
    if payload[:1] == bytes([MSG_USERAUTH_SUCCESS]):
        return AuthReply(True)
    try:
        r = Reader(payload)
        if r.u8() != MSG_USERAUTH_FAILURE:
            return None
        methods = _read_names(r)
        partial = r.u8() != 0
    except Truncated:
        return None
    return AuthReply(False, methods, partial)


def parse_disconnect(payload: bytes) -> tuple[int, str] | None:
    """(reason code, description) of SSH_MSG_DISCONNECT; None otherwise. Never raises."""
    try:
        r = Reader(payload)
        if r.u8() != MSG_DISCONNECT:
            return None
        code = r.u32be()
        text = _read_string(r, 1024).decode("utf-8", "replace")
    except Truncated:
        return None
    return code, text[:256]


def message_number(payload: bytes) -> int:
    return payload[0] if payload else -1
