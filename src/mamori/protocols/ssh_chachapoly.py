"""OpenSSH's chacha20-poly1305@openssh.com packet protection (OpenSSH PROTOCOL.chacha20poly1305).

The 64 bytes of key material split into K_2 (first 32: payload and Poly1305 key) and K_1
(last 32: the length field). Both ChaCha20 instances use the packet sequence number as a
64-bit big-endian nonce; the Poly1305 key is the first 32 bytes of K_2's block 0, the
payload is encrypted from block 1, and the tag covers the encrypted length and payload.
Pure computation; no sockets.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

from mamori.protocols.ssh_kex import SshError, packet_length, unframe

NAME = "chacha20-poly1305@openssh.com"
KEY_SIZE = 64
TAG = 16
_BLOCK = 8  # OpenSSH pads chacha20-poly1305 packets to 8 bytes, length field excluded


def _stream(key: bytes, seq: int, counter: int, data: bytes) -> bytes:
    # ChaCha20 with a 64-bit block counter and a 64-bit nonce (the original variant), laid
    # out as cryptography's 16-byte counter || nonce.
    iv = counter.to_bytes(8, "little") + seq.to_bytes(8, "big")
    return Cipher(algorithms.ChaCha20(key, iv), mode=None).encryptor().update(data)


def _poly_key(main: bytes, seq: int) -> bytes:
    return _stream(main, seq, 0, b"\x00" * 32)


def seal(key: bytes, seq: int, payload: bytes) -> bytes:
    """One protected packet: encrypted length, encrypted body, Poly1305 tag."""
    main, header = key[:32], key[32:64]
    pad = _BLOCK - (1 + len(payload)) % _BLOCK
    pad += _BLOCK if pad < 4 else 0
    body = bytes([pad]) + payload + os.urandom(pad)
    enc = _stream(header, seq, 0, struct.pack(">I", len(body))) + _stream(main, seq, 1, body)
    return enc + Poly1305.generate_tag(_poly_key(main, seq), enc)


def open_packet(key: bytes, seq: int, buf: bytes) -> tuple[bytes, int] | None:
    """(payload, bytes consumed) of the first packet in ``buf``, None while incomplete.
    Raises SshError for a length out of range or a tag that does not verify."""
    if len(buf) < 4:
        return None
    main, header = key[:32], key[32:64]
    n = packet_length(_stream(header, seq, 0, buf[:4]))
    if n % _BLOCK:
        raise SshError("chacha20-poly1305 packet length is not a multiple of 8")
    if len(buf) < 4 + n + TAG:
        return None
    tag = Poly1305.generate_tag(_poly_key(main, seq), buf[: 4 + n])
    if not hmac.compare_digest(tag, buf[4 + n : 4 + n + TAG]):
        raise SshError("packet failed authentication (Poly1305)")
    return unframe(_stream(main, seq, 1, buf[4 : 4 + n])), 4 + n + TAG
