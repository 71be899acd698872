"""TLS: a ClientHello to ask "do you speak TLS?" and a parser for the first reply record.

A ServerHello (or a TLS alert) in reply proves a TLS speaker; the handshake itself is left to
the ``ssl`` module. Nothing here opens a socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
             0x0304: "TLSv1.3"}

# TLS 1.3, ECDHE-GCM/ChaCha, then plain RSA suites so that old servers answer too.
_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
            0xC014, 0x009C, 0x009D, 0x002F, 0x0035, 0x000A)
_GROUPS = (0x001D, 0x0017, 0x0018)
_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201)
_HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(body)) + body


def _u16_list(values: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


def build_client_hello(server_name: str | None = None, random: bytes = b"\x42" * 32) -> bytes:
    """A TLS record holding a ClientHello that TLS 1.0-1.3 servers answer with a ServerHello.

    ``server_name`` goes in the SNI extension when it is a DNS name. Returns the record bytes.
    """
    exts = b""
    if server_name and not server_name.replace(".", "").isdigit() and ":" not in server_name:
        name = server_name.encode("idna")
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        exts += _ext(0x0000, struct.pack(">H", len(entry)) + entry)
    groups = _u16_list(_GROUPS)
    exts += _ext(0x000A, struct.pack(">H", len(groups)) + groups)
    exts += _ext(0x000B, b"\x01\x00")
    sigs = _u16_list(_SIGALGS)
    exts += _ext(0x000D, struct.pack(">H", len(sigs)) + sigs)
    versions = _u16_list((0x0304, 0x0303, 0x0302, 0x0301))
    exts += _ext(0x002B, bytes([len(versions)]) + versions)
    ciphers = _u16_list(_CIPHERS)
    body = (
        b"\x03\x03" + random[:32].ljust(32, b"\0")
        + b"\x20" + b"\x11" * 32  # a session id: TLS 1.3 middlebox-compatibility mode
        + struct.pack(">H", len(ciphers)) + ciphers
        + b"\x01\x00"
        + struct.pack(">H", len(exts)) + exts
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake


@dataclass(frozen=True, slots=True)
class TlsReply:
    """The first record a TLS server sent: a ServerHello or an alert."""

    kind: str  # "server-hello", "hello-retry" or "alert"
    version: str  # negotiated (supported_versions wins over the legacy field)
    cipher: int | None = None
    alert_level: int | None = None
    alert_description: int | None = None


def reply_complete(buf: bytes) -> bool:
    """True when the first record is complete, or when the bytes cannot be a TLS record."""
    if len(buf) < 5:
        return bool(buf) and buf[0] not in (0x15, 0x16)
    if buf[0] not in (0x15, 0x16) or buf[1] != 0x03:
        return True
    return len(buf) >= 5 + int.from_bytes(buf[3:5], "big")


def parse_server_reply(data: bytes) -> TlsReply | None:
    """Parse the first TLS record of a server's reply to a ClientHello.

    Returns a ``TlsReply`` for a ServerHello (possibly a HelloRetryRequest) or an alert;
    None for anything else, including truncated records. Never raises.
    """
    try:
        return _parse(Reader(data))
    except Truncated:
        return None


def _parse(r: Reader) -> TlsReply | None:
    content_type = r.u8()
    major, minor = r.u8(), r.u8()
    length = r.u16be()
    if major != 3 or minor > 4 or length == 0 or length > 16384 + 2048:
        return None
    record = Reader(r.take(length))
    legacy = _VERSIONS.get(0x0300 | minor, "unknown")
    if content_type == 0x15:
        level, desc = record.u8(), record.u8()
        if level not in (1, 2):
            return None
        return TlsReply("alert", legacy, alert_level=level, alert_description=desc)
    if content_type != 0x16 or record.u8() != 0x02:
        return None
    hs = Reader(record.take(record.u24be()))
    version = hs.u16be()
    if version >> 8 != 3:
        return None
    random = hs.take(32)
    hs.skip(hs.u8())
    cipher = hs.u16be()
    hs.u8()  # compression method
    negotiated = version
    if hs.remaining >= 2:
        exts = Reader(hs.take(hs.u16be()))
        while exts.remaining:
            ext_type, ext_len = exts.u16be(), exts.u16be()
            body = exts.take(ext_len)
            if ext_type == 0x002B and len(body) == 2:
                negotiated = int.from_bytes(body, "big")
    kind = "hello-retry" if random == _HELLO_RETRY_RANDOM else "server-hello"
    return TlsReply(kind, _VERSIONS.get(negotiated, f"0x{negotiated:04x}"), cipher=cipher)


# --- one chosen version, one chosen cipher list (for the version and cipher checks) ----------

VERSION_CODES = {"SSLv3": 0x0300, "TLSv1.0": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303}

# Suites every TLS 1.0-1.2 server of the last twenty years accepts, so that a refusal of an
# old-version hello is about the version, not the cipher (CBC suites included on purpose).
BROAD_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A, 0xC014,
                0x009E, 0x009F, 0x0033, 0x0039, 0x009C, 0x009D, 0x002F, 0x0035, 0x000A)

# Suites nobody should accept, with why: IANA code → (name, weakness).
WEAK_SUITES: dict[int, tuple[str, str]] = {
    0x0001: ("TLS_RSA_WITH_NULL_MD5", "no encryption"),
    0x0002: ("TLS_RSA_WITH_NULL_SHA", "no encryption"),
    0x003B: ("TLS_RSA_WITH_NULL_SHA256", "no encryption"),
    0xC006: ("TLS_ECDHE_ECDSA_WITH_NULL_SHA", "no encryption"),
    0xC010: ("TLS_ECDHE_RSA_WITH_NULL_SHA", "no encryption"),
    0xC015: ("TLS_ECDH_anon_WITH_NULL_SHA", "no encryption, no authentication"),
    0x0003: ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", "export grade (40-bit)"),
    0x0006: ("TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", "export grade (40-bit)"),
    0x0008: ("TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", "export grade (40-bit)"),
    0x0011: ("TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA", "export grade (40-bit)"),
    0x0014: ("TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", "export grade (40-bit)"),
    0x0017: ("TLS_DH_anon_EXPORT_WITH_RC4_40_MD5", "export grade, no authentication"),
    0x0019: ("TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA", "export grade, no authentication"),
    0x0004: ("TLS_RSA_WITH_RC4_128_MD5", "RC4 (RFC 7465)"),
    0x0005: ("TLS_RSA_WITH_RC4_128_SHA", "RC4 (RFC 7465)"),
    0xC007: ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "RC4 (RFC 7465)"),
    0xC011: ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", "RC4 (RFC 7465)"),
    0x0018: ("TLS_DH_anon_WITH_RC4_128_MD5", "RC4, no authentication"),
    0xC016: ("TLS_ECDH_anon_WITH_RC4_128_SHA", "RC4, no authentication"),
    0x0009: ("TLS_RSA_WITH_DES_CBC_SHA", "single DES (56-bit)"),
    0x0012: ("TLS_DHE_DSS_WITH_DES_CBC_SHA", "single DES (56-bit)"),
    0x0015: ("TLS_DHE_RSA_WITH_DES_CBC_SHA", "single DES (56-bit)"),
    0x000A: ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "3DES, 64-bit block (Sweet32)"),
    0x0013: ("TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA", "3DES, 64-bit block (Sweet32)"),
    0x0016: ("TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "3DES, 64-bit block (Sweet32)"),
    0xC008: ("TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", "3DES, 64-bit block (Sweet32)"),
    0xC012: ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "3DES, 64-bit block (Sweet32)"),
    0x001B: ("TLS_DH_anon_WITH_3DES_EDE_CBC_SHA", "3DES, no authentication"),
    0xC017: ("TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA", "3DES, no authentication"),
    0x0034: ("TLS_DH_anon_WITH_AES_128_CBC_SHA", "no authentication (anonymous)"),
    0x003A: ("TLS_DH_anon_WITH_AES_256_CBC_SHA", "no authentication (anonymous)"),
    0x006C: ("TLS_DH_anon_WITH_AES_128_CBC_SHA256", "no authentication (anonymous)"),
    0x006D: ("TLS_DH_anon_WITH_AES_256_CBC_SHA256", "no authentication (anonymous)"),
    0x00A6: ("TLS_DH_anon_WITH_AES_128_GCM_SHA256", "no authentication (anonymous)"),
    0x00A7: ("TLS_DH_anon_WITH_AES_256_GCM_SHA384", "no authentication (anonymous)"),
    0xC018: ("TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "no authentication (anonymous)"),
    0xC019: ("TLS_ECDH_anon_WITH_AES_256_CBC_SHA", "no authentication (anonymous)"),
}

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter",
          50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
          90: "user_canceled", 112: "unrecognized_name"}

_RENEGOTIATION_SCSV = 0x00FF


def build_version_hello(
    version: int,
    ciphers: tuple[int, ...],
    server_name: str | None = None,
    random: bytes = b"\x42" * 32,
) -> bytes:
    """A TLS record holding a ClientHello that offers exactly ``version`` (0x0300-0x0303) as
    its highest version and exactly ``ciphers`` (plus the renegotiation SCSV).

    No supported_versions extension, so the server must answer with ``version`` or lower,
    or refuse. SSLv3 hellos carry no extensions at all (SSLv3 predates them). Returns the
    record bytes. Raises ValueError for a version outside SSLv3..TLS 1.2 or no ciphers.
    """
    if version not in VERSION_CODES.values():
        raise ValueError(f"cannot offer version 0x{version:04x}")
    if not ciphers:
        raise ValueError("a ClientHello needs at least one cipher suite")
    exts = b""
    if version >= 0x0301:
        if server_name and not server_name.replace(".", "").isdigit() and ":" not in server_name:
            name = server_name.encode("idna")
            entry = b"\x00" + struct.pack(">H", len(name)) + name
            exts += _ext(0x0000, struct.pack(">H", len(entry)) + entry)
        groups = _u16_list(_GROUPS)
        exts += _ext(0x000A, struct.pack(">H", len(groups)) + groups)
        exts += _ext(0x000B, b"\x01\x00")
        if version >= 0x0303:
            sigs = _u16_list(_SIGALGS)
            exts += _ext(0x000D, struct.pack(">H", len(sigs)) + sigs)
    suites = _u16_list((*ciphers, _RENEGOTIATION_SCSV))
    body = (
        struct.pack(">H", version) + random[:32].ljust(32, b"\0")
        + b"\x00"  # no session id
        + struct.pack(">H", len(suites)) + suites
        + b"\x01\x00"
        + (struct.pack(">H", len(exts)) + exts if exts else b"")
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    record_version = min(version, 0x0301)  # what old servers expect in the record layer
    return b"\x16" + struct.pack(">HH", record_version, len(handshake)) + handshake


@dataclass(frozen=True, slots=True)
class HelloOutcome:
    """How a server answered a ClientHello: it chose a version and a cipher, or it refused."""

    accepted: bool
    version: int | None = None  # the ServerHello's version (None for an alert)
    cipher: int | None = None
    alert: str | None = None  # alert name when it refused with an alert

    @property
    def version_name(self) -> str:
        if self.version is None:
            return "none"
        return _VERSIONS.get(self.version, f"0x{self.version:04x}")


def parse_hello_outcome(data: bytes) -> HelloOutcome | None:
    """Read a server's first record after a ``build_version_hello`` ClientHello.

    Returns ``HelloOutcome(accepted=True, version, cipher)`` for a ServerHello,
    ``HelloOutcome(accepted=False, alert=...)`` for an alert, None for anything that is not
    a well-formed TLS record (truncated, garbage, a HelloRetryRequest). Never raises.
    """
    reply = parse_server_reply(data)
    if reply is None or reply.kind == "hello-retry":
        return None
    if reply.kind == "alert":
        desc = reply.alert_description if reply.alert_description is not None else -1
        return HelloOutcome(False, alert=ALERTS.get(desc, f"alert {desc}"))
    # parse_server_reply names the version; map it back to the code the server sent.
    code = next((c for c, n in _VERSIONS.items() if n == reply.version), None)
    if code is None:
        try:
            code = int(reply.version, 16)
        except ValueError:
            return None
    return HelloOutcome(True, version=code, cipher=reply.cipher)
