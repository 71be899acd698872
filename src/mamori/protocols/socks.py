"""SOCKS 4/4a (the de-facto spec) and SOCKS 5 (RFC 1928): build requests, parse replies.

Pure: no sockets here. Parsers return None for bytes that are not (yet) a well-formed reply
and never raise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

# SOCKS 5 authentication methods (RFC 1928 section 3).
METHOD_NONE = 0x00
METHOD_GSSAPI = 0x01
METHOD_USERPASS = 0x02
METHOD_UNACCEPTABLE = 0xFF

METHOD_NAMES = {
    METHOD_NONE: "no authentication",
    METHOD_GSSAPI: "GSSAPI",
    METHOD_USERPASS: "username/password",
    METHOD_UNACCEPTABLE: "no acceptable method",
}

REPLY5_NAMES = {
    0x00: "succeeded",
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}

REPLY4_NAMES = {
    0x5A: "request granted",
    0x5B: "request rejected or failed",
    0x5C: "rejected: cannot reach identd on the client",
    0x5D: "rejected: identd reports a different user",
}

_CMD_CONNECT = 0x01
_ATYP_IPV4 = 0x01
_ATYP_DOMAIN = 0x03
_ATYP_IPV6 = 0x04


def method_name(method: int) -> str:
    return METHOD_NAMES.get(method, f"method 0x{method:02x}")


def reply5_name(code: int) -> str:
    return REPLY5_NAMES.get(code, f"reply 0x{code:02x}")


def reply4_name(code: int) -> str:
    return REPLY4_NAMES.get(code, f"reply 0x{code:02x}")


def build_greeting5(methods: tuple[int, ...] = (METHOD_NONE,)) -> bytes:
    """The SOCKS 5 method-selection message offering ``methods``."""
    if not 1 <= len(methods) <= 255:
        raise ValueError("offer between 1 and 255 methods")
    return bytes([5, len(methods), *methods])


def parse_method5(data: bytes) -> int | None:
    """The method the server chose, from its 2-byte answer (version 5), or None."""
    if len(data) < 2 or data[0] != 5:
        return None
    return data[1]


def _address(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("idna")
        if not 1 <= len(raw) <= 255:
            raise ValueError("a SOCKS domain name is 1 to 255 bytes") from None
        return bytes([_ATYP_DOMAIN, len(raw)]) + raw
    if isinstance(ip, ipaddress.IPv4Address):
        return bytes([_ATYP_IPV4]) + ip.packed
    return bytes([_ATYP_IPV6]) + ip.packed


def build_connect5(host: str, port: int) -> bytes:
    """A SOCKS 5 CONNECT request for host (IP literal or name) and port."""
    if not 0 < port < 65536:
        raise ValueError("port out of range")
    return bytes([5, _CMD_CONNECT, 0]) + _address(host) + port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Socks5Reply:
    code: int  # 0 = succeeded
    bound_host: str
    bound_port: int

    @property
    def succeeded(self) -> bool:
        return self.code == 0


def parse_reply5(data: bytes) -> tuple[Socks5Reply, int] | None:
    """Parse a SOCKS 5 reply; returns (reply, bytes consumed) or None. Never raises."""
    r = Reader(data)
    try:
        if r.u8() != 5:
            return None
        code = r.u8()
        if r.u8() != 0:  # RSV must be zero
            return None
        atyp = r.u8()
        if atyp == _ATYP_IPV4:
            host = str(ipaddress.IPv4Address(r.take(4)))
        elif atyp == _ATYP_IPV6:
            host = str(ipaddress.IPv6Address(r.take(16)))
        elif atyp == _ATYP_DOMAIN:
            host = r.take(r.u8()).decode("ascii", "replace")
        else:
            return None
        port = r.u16be()
    except Truncated:
        return None
    return Socks5Reply(code, host, port), r.pos


def reply5_complete(buf: bytes) -> bool:
    """For read_until: a whole SOCKS 5 reply is in, or the bytes cannot become one."""
    if parse_reply5(buf) is not None:
        return True
    if not buf:
        return False
    return buf[0] != 5 or (len(buf) >= 3 and buf[2] != 0) or (
        len(buf) >= 4 and buf[3] not in (_ATYP_IPV4, _ATYP_DOMAIN, _ATYP_IPV6))


def build_connect4(host: str, port: int, user: str = "mamori") -> bytes:
    """A SOCKS 4 CONNECT (IPv4 literal) or SOCKS 4a CONNECT (a name) request."""
    if not 0 < port < 65536:
        raise ValueError("port out of range")
    head = bytes([4, _CMD_CONNECT]) + port.to_bytes(2, "big")
    userid = user.encode("ascii") + b"\0"
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        # SOCKS 4a: 0.0.0.x (x non-zero) says "the name follows the user id".
        raw = host.encode("idna")
        if b"\0" in raw or not raw:
            raise ValueError("bad host name") from None
        return head + bytes([0, 0, 0, 1]) + userid + raw + b"\0"
    return head + ip.packed + userid


@dataclass(frozen=True, slots=True)
class Socks4Reply:
    code: int  # 0x5A = granted

    @property
    def granted(self) -> bool:
        return self.code == 0x5A


def parse_reply4(data: bytes) -> Socks4Reply | None:
    """Parse the 8-byte SOCKS 4 reply (version byte 0), or None. Never raises."""
    if len(data) < 8 or data[0] != 0:
        return None
    return Socks4Reply(data[1])
