"""SSH transport cryptography (RFC 4253 7-8, RFC 5656, RFC 8731, RFC 5647): key agreement,
exchange hash, key derivation and the packet ciphers a probe needs to reach userauth.

Pure computation over bytes with the ``cryptography`` package; no sockets. Only what modern
servers accept is implemented: curve25519-sha256 / ecdh-sha2-nistp256 key exchange, the
post-quantum hybrids mlkem768x25519-sha256 and sntrup761x25519-sha512 (OpenSSH's PROTOCOL,
draft-ietf-sshm-mlkem-hybrid-kex, draft-josefsson-ntruprime-ssh; the KEMs are in ``ssh_pq``),
and aes-gcm, chacha20-poly1305 (``ssh_chachapoly``) or aes-ctr + hmac-sha2 packet protection.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mamori.protocols import ssh_chachapoly, ssh_pq
from mamori.protocols.ssh_kex import SshError, mpint, packet_length, string, unframe

# Hybrid key exchanges: the KEM of each. The client's share is KEM public key || X25519 public
# key, the server's is KEM ciphertext || X25519 public key, and the shared secret is
# HASH(kem_secret || x25519_secret), encoded as a string (not an mpint) wherever K is used.
HYBRID_KEX = {
    "mlkem768x25519-sha256": ssh_pq.MLKEM768,
    "sntrup761x25519-sha512": ssh_pq.SNTRUP761,
    "sntrup761x25519-sha512@openssh.com": ssh_pq.SNTRUP761,
}
# Our order of preference: classical first (cheapest), the hybrids for servers that offer
# nothing else.
KEX_ALGORITHMS = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
                  *HYBRID_KEX)
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                       "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa",
                       "ssh-dss")
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr",
           "aes256-ctr", ssh_chachapoly.NAME)
MACS = ("hmac-sha2-256", "hmac-sha2-512")

_KEY_SIZES = {"aes128-gcm@openssh.com": 16, "aes256-gcm@openssh.com": 32, "aes128-ctr": 16,
              "aes192-ctr": 24, "aes256-ctr": 32, ssh_chachapoly.NAME: ssh_chachapoly.KEY_SIZE}
_MAC_HASHES: dict[str, Callable[[], hashlib._Hash]] = {
    "hmac-sha2-256": hashlib.sha256, "hmac-sha2-512": hashlib.sha512}


def usable_kex_algorithms() -> tuple[str, ...]:
    """KEX_ALGORITHMS less the hybrids whose KEM this installation lacks."""
    return tuple(a for a in KEX_ALGORITHMS
                 if a not in HYBRID_KEX or _kem_available(HYBRID_KEX[a]))


@functools.cache
def _kem_available(name: str) -> bool:
    return ssh_pq.available(name)


class KexAgreement:
    """Our ephemeral key for one key exchange; ``public`` is our share (Q_C)."""

    def __init__(self, algorithm: str, kem: ssh_pq.Kem | None = None,
                 x25519_key: x25519.X25519PrivateKey | None = None) -> None:
        """``kem`` and ``x25519_key`` replace the fresh key pairs (known-answer tests).
        Raises SshError for an algorithm not implemented or a KEM not installed."""
        if algorithm not in KEX_ALGORITHMS:
            raise SshError(f"unsupported key exchange {algorithm}")
        self.algorithm = algorithm
        self._x: x25519.X25519PrivateKey | None = None
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._kem: ssh_pq.Kem | None = None
        if algorithm in HYBRID_KEX:
            try:
                self._kem = kem or ssh_pq.new_kem(HYBRID_KEX[algorithm])
            except ssh_pq.KemUnavailable as exc:
                raise SshError(str(exc)) from None
        if algorithm.startswith("curve25519") or self._kem is not None:
            self._x = x25519_key or x25519.X25519PrivateKey.generate()
            x_public = self._x.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.public = (self._kem.public if self._kem else b"") + x_public
        else:
            self._ec = ec.generate_private_key(ec.SECP256R1())
            self.public = self._ec.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def shared_secret(self, server_public: bytes) -> bytes:
        """K, encoded as the exchange hash and key derivation take it: an mpint for the
        classical methods, a string of HASH(kem_secret || x25519_secret) for the hybrids.
        Raises SshError when the server's share is invalid."""
        try:
            if self._kem is not None:
                return string(self.hash(self._hybrid_secret(server_public)))
            if self._x is not None:
                raw = self._x25519(server_public)
            else:
                assert self._ec is not None
                peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                    server_public)
                raw = self._ec.exchange(ec.ECDH(), peer)
        except ValueError as exc:
            raise SshError(f"invalid server key share: {exc}") from None
        return mpint(int.from_bytes(raw, "big"))

    def _hybrid_secret(self, server_public: bytes) -> bytes:
        assert self._kem is not None
        size = self._kem.ciphertext_size + 32
        if len(server_public) != size:
            raise SshError(f"{self.algorithm} server share is {len(server_public)} bytes, "
                           f"not {size}")
        return (self._kem.decapsulate(server_public[:-32])
                + self._x25519(server_public[-32:]))

    def _x25519(self, server_public: bytes) -> bytes:
        assert self._x is not None
        if len(server_public) != 32:
            raise SshError("curve25519 public value is not 32 bytes")
        return self._x.exchange(x25519.X25519PublicKey.from_public_bytes(server_public))

    def hash(self, data: bytes) -> bytes:
        if self.algorithm.startswith("sntrup761x25519-sha512"):
            return hashlib.sha512(data).digest()
        return hashlib.sha256(data).digest()


def exchange_hash(kex: KexAgreement, v_c: bytes, v_s: bytes, i_c: bytes, i_s: bytes,
                  k_s: bytes, q_s: bytes, k: bytes) -> bytes:
    """H of RFC 5656 4 / RFC 8731 3 over both idents, both KEXINITs, host key, shares, and
    K as ``shared_secret`` encoded it."""
    return kex.hash(string(v_c) + string(v_s) + string(i_c) + string(i_s) + string(k_s)
                    + string(kex.public) + string(q_s) + k)


def derive(kex: KexAgreement, k: bytes, h: bytes, session_id: bytes, letter: bytes,
           size: int) -> bytes:
    """RFC 4253 7.2 key derivation: HASH(K || H || letter || session_id), extended."""
    out = kex.hash(k + h + letter + session_id)
    while len(out) < size:
        out += kex.hash(k + h + out)
    return out[:size]


@dataclass
class Keys:
    cipher: str
    mac: str | None
    iv: bytes
    key: bytes
    mac_key: bytes


def direction_keys(kex: KexAgreement, k: bytes, h: bytes, cipher: str, mac: str | None,
                   client_to_server: bool) -> Keys:
    """The IV, cipher key and MAC key for one direction (letters A/C/E or B/D/F)."""
    if cipher not in _KEY_SIZES:
        raise SshError(f"unsupported cipher {cipher}")
    iv_l, key_l, mac_l = (b"A", b"C", b"E") if client_to_server else (b"B", b"D", b"F")
    iv_size = 12 if cipher.endswith("gcm@openssh.com") else 16
    iv = derive(kex, k, h, h, iv_l, 0 if cipher == ssh_chachapoly.NAME else iv_size)
    key = derive(kex, k, h, h, key_l, _KEY_SIZES[cipher])
    mac_key = b""
    if mac is not None:
        mac_key = derive(kex, k, h, h, mac_l, _MAC_HASHES[mac]().digest_size)
    return Keys(cipher, mac, iv, key, mac_key)


def is_aead(cipher: str) -> bool:
    """The cipher authenticates by itself: no MAC is negotiated for it."""
    return cipher.endswith("gcm@openssh.com") or cipher == ssh_chachapoly.NAME


class PacketSealer:
    """Encrypts our packets once NEWKEYS is sent. ``seq`` is the packet sequence number."""

    def __init__(self, keys: Keys, seq: int) -> None:
        self.keys, self.seq = keys, seq
        self._fixed, self._counter = keys.iv[:4], int.from_bytes(keys.iv[4:12], "big")
        self._ctr = (None if is_aead(keys.cipher) else
                     Cipher(algorithms.AES(keys.key), modes.CTR(keys.iv)).encryptor())

    def seal(self, payload: bytes) -> bytes:
        block = 16
        if self.keys.cipher == ssh_chachapoly.NAME:
            out = ssh_chachapoly.seal(self.keys.key, self.seq, payload)
        elif is_aead(self.keys.cipher):
            pad = block - (1 + len(payload)) % block
            pad += block if pad < 4 else 0
            body = bytes([pad]) + payload + os.urandom(pad)
            header = struct.pack(">I", len(body))
            nonce = self._fixed + self._counter.to_bytes(8, "big")
            self._counter = (self._counter + 1) % (1 << 64)
            out = header + AESGCM(self.keys.key).encrypt(nonce, body, header)
        else:
            assert self._ctr is not None and self.keys.mac is not None
            pad = block - (5 + len(payload)) % block
            pad += block if pad < 4 else 0
            plain = struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + os.urandom(pad)
            tag = hmac.new(self.keys.mac_key, struct.pack(">I", self.seq) + plain,
                           _MAC_HASHES[self.keys.mac]).digest()
            out = self._ctr.update(plain) + tag
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return out


class PacketOpener:
    """Decrypts the server's packets after its NEWKEYS, one at a time from a byte buffer."""

    def __init__(self, keys: Keys, seq: int) -> None:
        self.keys, self.seq = keys, seq
        self._fixed, self._counter = keys.iv[:4], int.from_bytes(keys.iv[4:12], "big")
        self._ctr = (None if is_aead(keys.cipher) else
                     Cipher(algorithms.AES(keys.key), modes.CTR(keys.iv)).decryptor())
        self._first_block: bytes | None = None  # CTR: the decrypted start of the next packet

    def open(self, buf: bytes) -> tuple[bytes, int] | None:
        """(payload, bytes consumed) of the first packet in ``buf``, or None while incomplete.

        Raises SshError when the length is out of range or the tag does not verify (the
        peer did not derive the same keys: not a real key exchange).
        """
        if self.keys.cipher == ssh_chachapoly.NAME:
            got = ssh_chachapoly.open_packet(self.keys.key, self.seq, buf)
            if got is not None:
                self.seq = (self.seq + 1) & 0xFFFFFFFF
            return got
        if is_aead(self.keys.cipher):
            return self._open_gcm(buf)
        return self._open_ctr(buf)

    def _open_gcm(self, buf: bytes) -> tuple[bytes, int] | None:
        if len(buf) < 4:
            return None
        n = packet_length(buf)
        if n % 16:
            raise SshError("GCM packet length is not a multiple of the block size")
        if len(buf) < 4 + n + 16:
            return None
        nonce = self._fixed + self._counter.to_bytes(8, "big")
        try:
            body = AESGCM(self.keys.key).decrypt(nonce, buf[4 : 4 + n + 16], buf[:4])
        except Exception as exc:  # cryptography raises InvalidTag
            raise SshError(f"packet failed authentication: {type(exc).__name__}") from None
        self._counter = (self._counter + 1) % (1 << 64)
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return unframe(body), 4 + n + 16

    def _open_ctr(self, buf: bytes) -> tuple[bytes, int] | None:
        assert self._ctr is not None and self.keys.mac is not None
        if self._first_block is None:
            if len(buf) < 16:
                return None
            self._first_block = self._ctr.update(buf[:16])
        n = packet_length(self._first_block)
        if (4 + n) % 16:
            raise SshError("CTR packet length is not a multiple of the block size")
        digest = _MAC_HASHES[self.keys.mac]
        tag_len = digest().digest_size
        if len(buf) < 4 + n + tag_len:
            return None
        plain = self._first_block + self._ctr.update(buf[16 : 4 + n])
        tag = hmac.new(self.keys.mac_key, struct.pack(">I", self.seq) + plain, digest).digest()
        if not hmac.compare_digest(tag, buf[4 + n : 4 + n + tag_len]):
            raise SshError("packet failed MAC verification")
        self._first_block = None
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return unframe(plain[4:]), 4 + n + tag_len
