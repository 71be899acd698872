"""Signed tokens: CSRF form tokens bound to the visitor cookie, and admin sessions.

Pure (the clock is an argument). A token is ``base64url(JSON list of parts).base64url(HMAC-
SHA256(key, purpose || payload))``; the purpose keeps a CSRF token from ever passing as a
session and the other way round. Verification is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

CSRF_MAX_AGE = 2 * 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def visitor_hash(visitor: str) -> str:
    """What is stored about a visitor cookie (proof of ownership, never the cookie itself)."""
    return hashlib.sha256(b"mamori-visitor\x00" + visitor.encode("utf-8", "replace")).hexdigest()


def new_visitor_id() -> str:
    return secrets.token_urlsafe(32)


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the signing key needs at least 32 bytes")
        self._key = key

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()

    def sign(self, purpose: str, *parts: str) -> str:
        payload = json.dumps(list(parts), separators=(",", ":")).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._mac(purpose, payload))}"

    def verify(self, purpose: str, token: str) -> list[str] | None:
        """The parts of a genuine token for ``purpose``, else None."""
        if len(token) > 4096 or token.count(".") != 1:
            return None
        body, _, mac = token.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(given, self._mac(purpose, payload)):
            return None
        try:
            parts = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            return None
        return parts

    # -- CSRF: a form token bound to the visitor cookie, valid for a while ---------------------

    def csrf_token(self, visitor: str, now: float) -> str:
        return self.sign("csrf", visitor_hash(visitor), str(int(now)))

    def csrf_valid(self, token: str | None, visitor: str | None, now: float,
                   max_age: float = CSRF_MAX_AGE) -> bool:
        if not token or not visitor:
            return False
        parts = self.verify("csrf", token)
        if parts is None or len(parts) != 2 or not parts[1].isdigit():
            return False
        if not hmac.compare_digest(parts[0], visitor_hash(visitor)):
            return False
        return 0 <= now - int(parts[1]) <= max_age

    # -- admin sessions --------------------------------------------------------------------

    def session(self, user: str, now: float, lifetime: float) -> str:
        return self.sign("admin-session", user, str(int(now + lifetime)), secrets.token_hex(8))

    def session_user(self, token: str | None, now: float) -> str | None:
        if not token:
            return None
        parts = self.verify("admin-session", token)
        if parts is None or len(parts) != 3 or not parts[1].isdigit():
            return None
        return parts[0] if now < int(parts[1]) else None
