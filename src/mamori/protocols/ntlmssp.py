"""NTLMSSP messages for anonymous and guest logons (MS-NLMP), optionally wrapped in SPNEGO.

Only what an exposure check needs: a NEGOTIATE, the parse of the server's CHALLENGE (whose
target info names the server), and an AUTHENTICATE that is either anonymous (empty user and
responses) or a guest attempt for a user that should not exist. No password is ever known or
sent: the guest attempt's NTLMv2 response is keyed with random bytes, so it can only succeed
where the server maps unknown users to its guest account ("map to guest = bad user").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

SIGNATURE = b"NTLMSSP\0"
_UNICODE = 0x00000001
_REQUEST_TARGET = 0x00000004
_NTLM = 0x00000200
_ANONYMOUS = 0x00000800
_ALWAYS_SIGN = 0x00008000
_EXTENDED_SESSION_SECURITY = 0x00080000
_TARGET_INFO = 0x00800000
_128 = 0x20000000
_56 = 0x80000000
BASE_FLAGS = (_UNICODE | _REQUEST_TARGET | _NTLM | _ALWAYS_SIGN | _EXTENDED_SESSION_SECURITY
              | _TARGET_INFO | _128 | _56)

_AV_NAMES = {1: "netbios_computer", 2: "netbios_domain", 3: "dns_computer", 4: "dns_domain"}
_MAX_AV_PAIRS = 32
_MAX_TARGET_INFO = 1024  # bytes of the server's target info echoed back in the guest response


def build_negotiate() -> bytes:
    """An NTLMSSP NEGOTIATE message (no domain or workstation supplied)."""
    return SIGNATURE + struct.pack("<II", 1, BASE_FLAGS) + b"\0" * 16


@dataclass(frozen=True, slots=True)
class Challenge:
    flags: int
    server_challenge: bytes
    target_info: bytes  # raw AV pairs, echoed in an NTLMv2 response
    names: dict[str, str]  # netbios_computer, netbios_domain, dns_computer, dns_domain


def _secbuf(r: Reader) -> tuple[int, int]:
    length = r.u16le()
    r.skip(2)
    return length, r.u32le()


def _slice(data: bytes, length: int, offset: int) -> bytes:
    if offset + length > len(data):
        raise Truncated("security buffer beyond the message")
    return data[offset : offset + length]


def parse_challenge(data: bytes) -> Challenge | None:
    """Parse an NTLMSSP CHALLENGE message. Returns None for anything else; never raises."""
    try:
        r = Reader(data)
        if r.take(8) != SIGNATURE or r.u32le() != 2:
            return None
        _secbuf(r)  # target name: also in the target info
        flags = r.u32le()
        challenge = r.take(8)
        r.skip(8)
        info_len, info_off = _secbuf(r)
        info = _slice(data, info_len, info_off)[:_MAX_TARGET_INFO]
        names: dict[str, str] = {}
        av = Reader(info)
        for _ in range(_MAX_AV_PAIRS):
            if av.remaining < 4:
                break
            av_id, av_len = av.u16le(), av.u16le()
            if av_id == 0:
                break
            value = av.take(av_len)
            if av_id in _AV_NAMES:
                names[_AV_NAMES[av_id]] = value.decode("utf-16-le", "replace")[:128]
    except Truncated:
        return None
    return Challenge(flags, challenge, info, names)


def _filetime_now() -> bytes:
    return struct.pack("<Q", int((time.time() + 11644473600) * 10_000_000))


def _authenticate(
    lm: bytes, nt: bytes, domain: str, user: str, workstation: str, flags: int
) -> bytes:
    fields = [lm, nt, domain.encode("utf-16-le"), user.encode("utf-16-le"),
              workstation.encode("utf-16-le"), b""]
    offset = 8 + 4 + 6 * 8 + 4
    head = SIGNATURE + struct.pack("<I", 3)
    payload = b""
    for value in fields:
        head += struct.pack("<HHI", len(value), len(value), offset + len(payload))
        payload += value
    return head + struct.pack("<I", flags) + payload


def build_anonymous_authenticate(challenge: Challenge) -> bytes:
    """An anonymous AUTHENTICATE: empty user, domain and NT response (MS-NLMP 3.2.5.1.2)."""
    flags = (challenge.flags & BASE_FLAGS) | _ANONYMOUS
    return _authenticate(b"\0", b"", "", "", "", flags)


def build_guest_authenticate(challenge: Challenge, user: str) -> bytes:
    """An NTLMv2 AUTHENTICATE for ``user`` (meant to be a name that does not exist), keyed
    with random bytes: only a server that maps bad users to guest lets it in."""
    key = os.urandom(16)  # stands for a password hash nobody knows
    blob = (b"\x01\x01\0\0\0\0\0\0" + _filetime_now() + os.urandom(8) + b"\0" * 4
            + challenge.target_info + b"\0" * 4)
    proof = hmac.new(key, challenge.server_challenge + blob, hashlib.md5).digest()
    flags = challenge.flags & BASE_FLAGS
    return _authenticate(b"\0" * 24, proof + blob, "", user, "", flags)


# --- SPNEGO (RFC 4178), the few DER shapes an SMB session setup uses ---------------------------

_NTLMSSP_OID = b"\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a"
_SPNEGO_OID = b"\x06\x06\x2b\x06\x01\x05\x05\x02"


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


def spnego_init(mech_token: bytes) -> bytes:
    """GSS-API InitialContextToken carrying a NegTokenInit that offers NTLMSSP only."""
    mech_types = _der(0xA0, _der(0x30, _NTLMSSP_OID))
    token = _der(0xA2, _der(0x04, mech_token))
    return _der(0x60, _SPNEGO_OID + _der(0xA0, _der(0x30, mech_types + token)))


def spnego_response(token: bytes) -> bytes:
    """A NegTokenResp carrying ``token`` (the client's AUTHENTICATE)."""
    return _der(0xA1, _der(0x30, _der(0xA2, _der(0x04, token))))


def find_ntlmssp(blob: bytes) -> bytes:
    """The NTLMSSP message inside a SPNEGO token (or the blob itself when it is raw NTLMSSP);
    b"" when there is none. Never raises."""
    at = blob.find(SIGNATURE)
    return blob[at:] if at >= 0 else b""
