"""Admin password hashes: scrypt (hashlib), salted, compared in constant time.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (what ``mamori serve --hash-password``
prints and the settings' ``admin_users`` hold). Plain passwords are never accepted there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P, DKLEN = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024
_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=R, p=P, dklen=DKLEN,
                            maxmem=_MAXMEM)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if n < 2**10 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return None
    try:
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if len(salt) < 8 or len(digest) < 16:
        return None
    return n, r, p, salt, digest


def is_password_hash(stored: str) -> bool:
    return _parse(stored) is not None


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``. An unknown user (None) costs the same time."""
    parsed = _parse(stored or _DUMMY) or _parse(_DUMMY)
    assert parsed is not None
    n, r, p, salt, digest = parsed
    got = hashlib.scrypt(password.encode("utf-8", "replace"), salt=salt, n=n, r=r, p=p,
                         dklen=len(digest), maxmem=_MAXMEM)
    return hmac.compare_digest(got, digest) and stored is not None
