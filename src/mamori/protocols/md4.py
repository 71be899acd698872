"""MD4 (RFC 1320) in pure Python, for rsync's protocol-29 whole-file checksum.

hashlib's "md4" comes from OpenSSL, whose 3.x default provider no longer offers it, so this
small implementation is used instead. Only ever fed our own few bytes (the upload test file).
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def _block(state: list[int], chunk: bytes) -> None:
    x = struct.unpack("<16I", chunk)
    a, b, c, d = state
    for i in (0, 4, 8, 12):  # round 1: F(b, c, d) = (b & c) | (~b & d)
        a = _rotl(a + ((b & c) | (~b & d)) + x[i], 3)
        d = _rotl(d + ((a & b) | (~a & c)) + x[i + 1], 7)
        c = _rotl(c + ((d & a) | (~d & b)) + x[i + 2], 11)
        b = _rotl(b + ((c & d) | (~c & a)) + x[i + 3], 19)
    for i in (0, 1, 2, 3):  # round 2: G = majority, constant 0x5A827999
        a = _rotl(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999, 3)
        d = _rotl(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999, 5)
        c = _rotl(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999, 9)
        b = _rotl(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999, 13)
    for i in (0, 2, 1, 3):  # round 3: H = parity, constant 0x6ED9EBA1
        a = _rotl(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1, 3)
        d = _rotl(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1, 9)
        c = _rotl(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1, 11)
        b = _rotl(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1, 15)
    for k, v in enumerate((a, b, c, d)):
        state[k] = (state[k] + v) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    padded += struct.pack("<Q", (len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    for off in range(0, len(padded), 64):
        _block(state, padded[off:off + 64])
    return struct.pack("<4I", *state)
