"""Which SSH algorithms are weak, and why: a table with named reasons (as ssh-audit's kexdb).

Two levels. WEAK: a server offering it gives the ssh-weak-algorithms finding; none of these is
in OpenSSH's default server set, so turning them on was a choice that can be undone. LEGACY:
still in some defaults and not broken in SSH's use, reported as context only.
tests/checks/test_ssh_algorithms_table.py enforces the table's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    KEX = "kex"
    HOST_KEY = "host-key"
    CIPHER = "cipher"
    MAC = "mac"


class Level(StrEnum):
    WEAK = "weak"
    LEGACY = "legacy"


class Why(StrEnum):
    """The fixed set of reasons; each says what an attacker gains."""

    SHA1 = "sha1"  # SHA-1 collisions are practical (SHAttered 2017, SHAmbles 2020)
    MD5 = "md5"  # MD5 is broken; HMAC-MD5 is retired everywhere
    SMALL_DH_GROUP = "1024-bit-group"  # 1024-bit DH is within reach of nation states (Logjam)
    SMALL_KEY = "small-key"  # key too short to resist brute force (DES, 1024-bit RSA/DSA)
    CBC_MODE = "cbc-mode"  # SSH's CBC mode leaks plaintext (CVE-2008-5161, Albrecht et al.)
    BLOCK_64 = "64-bit-block"  # birthday attacks on 64-bit blocks (Sweet32, CVE-2016-2183)
    RC4 = "rc4"  # RC4 keystream biases (RFC 7465 forbids it in TLS; RFC 8758 in SSH)
    NO_ENCRYPTION = "no-encryption"  # "none": everything readable on the wire
    NO_INTEGRITY = "no-integrity"  # "none" MAC: traffic can be altered undetected
    SHORT_TAG = "short-tag"  # MAC of 64 bits or fewer: forgeries by brute force
    DSA = "dsa"  # ssh-dss: fixed 1024-bit DSA, removed from OpenSSH 10


@dataclass(frozen=True, slots=True)
class Algorithm:
    kind: Kind
    name: str
    level: Level
    why: tuple[Why, ...]


_W, _L = Level.WEAK, Level.LEGACY

TABLE: tuple[Algorithm, ...] = (
    # key exchange
    Algorithm(Kind.KEX, "diffie-hellman-group1-sha1", _W, (Why.SMALL_DH_GROUP, Why.SHA1)),
    Algorithm(Kind.KEX, "diffie-hellman-group14-sha1", _W, (Why.SHA1,)),
    Algorithm(Kind.KEX, "diffie-hellman-group-exchange-sha1", _W, (Why.SHA1,)),
    Algorithm(Kind.KEX, "rsa1024-sha1", _W, (Why.SMALL_KEY, Why.SHA1)),
    Algorithm(Kind.KEX, "gss-group1-sha1-toWM5Slw5Ew8Mqkay+al2g==", _W,
              (Why.SMALL_DH_GROUP, Why.SHA1)),
    Algorithm(Kind.KEX, "gss-gex-sha1-toWM5Slw5Ew8Mqkay+al2g==", _W, (Why.SHA1,)),
    # host keys
    Algorithm(Kind.HOST_KEY, "ssh-dss", _W, (Why.DSA, Why.SMALL_KEY, Why.SHA1)),
    Algorithm(Kind.HOST_KEY, "ssh-dss-cert-v01@openssh.com", _W,
              (Why.DSA, Why.SMALL_KEY, Why.SHA1)),
    Algorithm(Kind.HOST_KEY, "ssh-rsa", _W, (Why.SHA1,)),
    Algorithm(Kind.HOST_KEY, "ssh-rsa-cert-v01@openssh.com", _W, (Why.SHA1,)),
    Algorithm(Kind.HOST_KEY, "x509v3-sign-dss", _W, (Why.DSA, Why.SMALL_KEY, Why.SHA1)),
    Algorithm(Kind.HOST_KEY, "x509v3-sign-rsa", _W, (Why.SHA1,)),
    # ciphers
    Algorithm(Kind.CIPHER, "none", _W, (Why.NO_ENCRYPTION,)),
    Algorithm(Kind.CIPHER, "des-cbc", _W, (Why.SMALL_KEY, Why.BLOCK_64, Why.CBC_MODE)),
    Algorithm(Kind.CIPHER, "3des-cbc", _W, (Why.BLOCK_64, Why.CBC_MODE)),
    Algorithm(Kind.CIPHER, "blowfish-cbc", _W, (Why.BLOCK_64, Why.CBC_MODE)),
    Algorithm(Kind.CIPHER, "cast128-cbc", _W, (Why.BLOCK_64, Why.CBC_MODE)),
    Algorithm(Kind.CIPHER, "idea-cbc", _W, (Why.BLOCK_64, Why.CBC_MODE)),
    Algorithm(Kind.CIPHER, "arcfour", _W, (Why.RC4,)),
    Algorithm(Kind.CIPHER, "arcfour128", _W, (Why.RC4,)),
    Algorithm(Kind.CIPHER, "arcfour256", _W, (Why.RC4,)),
    Algorithm(Kind.CIPHER, "aes128-cbc", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "aes192-cbc", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "aes256-cbc", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "rijndael-cbc@lysator.liu.se", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "twofish-cbc", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "twofish128-cbc", _W, (Why.CBC_MODE,)),
    Algorithm(Kind.CIPHER, "twofish256-cbc", _W, (Why.CBC_MODE,)),
    # MACs
    Algorithm(Kind.MAC, "none", _W, (Why.NO_INTEGRITY,)),
    Algorithm(Kind.MAC, "hmac-md5", _W, (Why.MD5,)),
    Algorithm(Kind.MAC, "hmac-md5-96", _W, (Why.MD5,)),
    Algorithm(Kind.MAC, "hmac-md5-etm@openssh.com", _W, (Why.MD5,)),
    Algorithm(Kind.MAC, "hmac-md5-96-etm@openssh.com", _W, (Why.MD5,)),
    Algorithm(Kind.MAC, "umac-32@openssh.com", _W, (Why.SHORT_TAG,)),
    # Still offered by OpenSSH by default; HMAC-SHA1 is not broken as a MAC, only retired.
    Algorithm(Kind.MAC, "hmac-sha1", _L, (Why.SHA1,)),
    Algorithm(Kind.MAC, "hmac-sha1-etm@openssh.com", _L, (Why.SHA1,)),
    Algorithm(Kind.MAC, "hmac-sha1-96", _L, (Why.SHA1,)),
    Algorithm(Kind.MAC, "hmac-sha1-96-etm@openssh.com", _L, (Why.SHA1,)),
    Algorithm(Kind.MAC, "umac-64@openssh.com", _L, (Why.SHORT_TAG,)),
    Algorithm(Kind.MAC, "umac-64-etm@openssh.com", _L, (Why.SHORT_TAG,)),
)

_BY_KEY = {(a.kind, a.name): a for a in TABLE}


def lookup(kind: Kind, name: str) -> Algorithm | None:
    """The table's entry for ``name`` of this kind, or None when it is not known to be weak."""
    return _BY_KEY.get((kind, name))
