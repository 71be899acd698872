"""The post-quantum halves of SSH's hybrid key exchanges, client side: ML-KEM-768 (FIPS 203,
from ``cryptography``) for mlkem768x25519-sha256, and Streamlined NTRU Prime 761 (from
``pqcrypto``, Rust code with wheels) for sntrup761x25519-sha512.

The client makes a key pair, sends the public key, and decapsulates the server's ciphertext.
Pure computation; no sockets. ``available()`` says which KEMs this installation has, so a
platform without one simply does not offer that key exchange.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import mlkem

MLKEM768 = "ml-kem-768"
SNTRUP761 = "sntrup761"


class KemUnavailable(RuntimeError):
    """This installation has no implementation of the KEM."""


class Kem(Protocol):
    """One ephemeral client key pair of a KEM."""

    public: bytes
    ciphertext_size: int

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The 32-byte shared secret. Raises ValueError for a ciphertext of the wrong size."""
        ...


class MlKem768:
    ciphertext_size = 1088

    def __init__(self, seed: bytes | None = None) -> None:
        """A fresh key pair, or the one FIPS 203 derives from ``seed`` (d || z, 64 bytes)."""
        try:
            self._key = (mlkem.MLKEM768PrivateKey.generate() if seed is None
                         else mlkem.MLKEM768PrivateKey.from_seed_bytes(seed))
        except UnsupportedAlgorithm as exc:
            raise KemUnavailable(f"ML-KEM-768: {exc}") from None
        self.public = self._key.public_key().public_bytes_raw()

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_size:
            raise ValueError(f"ML-KEM-768 ciphertext is {len(ciphertext)} bytes, not 1088")
        return self._key.decapsulate(ciphertext)


class Sntrup761:
    ciphertext_size = 1039

    def __init__(self) -> None:
        try:
            from pqcrypto.kem import sntrup_761  # Rust code in the wheel; untyped
        except ImportError as exc:
            raise KemUnavailable(f"sntrup761: pqcrypto not installed ({exc})") from None
        self._impl = sntrup_761
        public, self._secret = sntrup_761.keygen()
        self.public = bytes(public)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_size:
            raise ValueError(f"sntrup761 ciphertext is {len(ciphertext)} bytes, not 1039")
        return bytes(self._impl.decaps(self._secret, ciphertext))


def new_kem(name: str) -> Kem:
    """A fresh client key pair of KEM ``name``. Raises KemUnavailable when not installed."""
    if name == MLKEM768:
        return MlKem768()
    if name == SNTRUP761:
        return Sntrup761()
    raise KemUnavailable(f"unknown KEM {name}")


def available(name: str) -> bool:
    """Whether ``new_kem(name)`` works here (library installed, backend supports it)."""
    try:
        new_kem(name)
    except KemUnavailable:
        return False
    return True
