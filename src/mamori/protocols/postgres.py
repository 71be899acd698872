"""PostgreSQL frontend/backend protocol v3: a StartupMessage, the server's first reply, and the
whole login exchange (authentication request, parameters, ReadyForQuery)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text

PROTOCOL_3 = 196608


def build_startup(user: str = "mamori", database: str = "mamori",
                  application_name: str = "mamori") -> bytes:
    """A v3 StartupMessage; the server answers with an auth request or an error."""
    params = b""
    for key, value in (("user", user), ("database", database),
                       ("application_name", application_name)):
        params += key.encode() + b"\0" + value.encode() + b"\0"
    body = struct.pack(">I", PROTOCOL_3) + params + b"\0"
    return struct.pack(">I", len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class BackendReply:
    kind: str  # "error", "notice" or "auth"
    fields: dict[str, str]  # error fields by code letter (S, C, M, R, ...), or {"auth": "10"}


def reply_complete(buf: bytes) -> bool:
    """True when the first backend message is whole, or the bytes cannot start one."""
    if not buf:
        return False
    if buf[:1] not in (b"E", b"R", b"N"):
        return True
    if len(buf) < 5:
        return False
    length = int.from_bytes(buf[1:5], "big")
    return length < 4 or length > 65536 or len(buf) >= 1 + length


def parse_reply(data: bytes) -> BackendReply | None:
    """Parse the first message a server sends after a StartupMessage.

    Returns an ErrorResponse/NoticeResponse with its fields, or an Authentication request;
    None for anything else. Never raises.
    """
    try:
        r = Reader(data)
        kind = r.take(1)
        length = r.u32be()
        if length < 4 or length > 65536:
            return None
        body = Reader(r.take(length - 4))
        if kind == b"R":
            auth = body.u32be()
            return BackendReply("auth", {"auth": str(auth)}) if auth <= 12 else None
        if kind not in (b"E", b"N"):
            return None
        fields: dict[str, str] = {}
        while True:
            code_byte = body.take(1)
            if code_byte == b"\0":
                break
            fields[code_byte.decode("latin-1")] = body.cstring(1024).decode("utf-8", "replace")
    except Truncated:
        return None
    code = fields.get("C", "")
    if "S" not in fields or "M" not in fields or len(code) != 5 or not code.isalnum():
        return None
    return BackendReply("error" if kind == b"E" else "notice", fields)


# --- the whole login exchange, for checks ----------------------------------------------------
AUTH_NAMES = {
    0: "ok", 2: "kerberos", 3: "cleartext", 5: "md5", 6: "scm", 7: "gss", 9: "sspi",
    10: "sasl",
}
_MAX_MESSAGES = 64  # ParameterStatus messages after a login number about fifteen


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # one letter: "R", "S", "K", "Z", "E", "N", ...
    body: bytes


def split_messages(data: bytes, limit: int = _MAX_MESSAGES) -> tuple[list[Message], bool]:
    """The whole backend messages at the start of ``data`` (at most ``limit``) and whether
    the bytes broke the framing (a length below 4 or above 64 KiB). Never raises."""
    out: list[Message] = []
    pos = 0
    while len(out) < limit and len(data) - pos >= 5:
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if length < 4 or length > 65536:
            return out, True
        if len(data) - pos < 1 + length:
            break
        out.append(Message(data[pos : pos + 1].decode("latin-1"), data[pos + 5 : pos + 1 + length]))
        pos += 1 + length
    return out, False


def login_settled(buf: bytes) -> bool:
    """True when a login exchange has reached its verdict: ReadyForQuery, an error, an
    authentication request other than Ok, or bytes that break the framing."""
    if buf and buf[:1] not in (b"E", b"R", b"N"):
        return True
    messages, broken = split_messages(buf)
    if broken or len(messages) >= _MAX_MESSAGES:
        return True
    for msg in messages:
        if msg.kind in ("Z", "E"):
            return True
        if msg.kind == "R" and msg.body[:4] != b"\0\0\0\0":
            return True
    return False


@dataclass(frozen=True, slots=True)
class LoginReply:
    """What the server said to a StartupMessage, in order of appearance.

    ``auth``: the first authentication request by name ("ok", "md5", "sasl", ...; "" when
    none came); ``mechanisms``: SASL mechanisms offered; ``parameters``: ParameterStatus
    values (server_version, is_superuser, ...) a server sends only after a successful login;
    ``error``: ErrorResponse fields by code letter; ``ready``: ReadyForQuery arrived.
    """

    auth: str
    mechanisms: tuple[str, ...]
    parameters: dict[str, str]
    error: dict[str, str]
    ready: bool


def _error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    r = Reader(body)
    while r.remaining and len(fields) < 32:
        code = r.take(1)
        if code == b"\0":
            break
        fields[code.decode("latin-1")] = r.cstring(1024).decode("utf-8", "replace")
    return fields


def parse_login(data: bytes) -> LoginReply | None:
    """Fold the backend messages that answer a StartupMessage into a ``LoginReply``.

    Returns None when the first message is not an authentication request or an error (not
    PostgreSQL), or a message breaks its own layout. Never raises.
    """
    messages, broken = split_messages(data)
    if broken or not messages or messages[0].kind not in ("R", "E"):
        return None
    auth, ready = "", False
    mechanisms: tuple[str, ...] = ()
    params: dict[str, str] = {}
    error: dict[str, str] = {}
    try:
        for msg in messages:
            if msg.kind == "R" and not auth:
                code = Reader(msg.body).u32be()
                auth = AUTH_NAMES.get(code, f"code-{code}")
                if code == 10:
                    names = msg.body[4:].split(b"\0")
                    mechanisms = tuple(text(n, 64) for n in names if n)[:8]
            elif msg.kind == "S" and len(params) < 32:
                r = Reader(msg.body)
                key = r.cstring(64).decode("utf-8", "replace")
                params[key] = r.cstring(256).decode("utf-8", "replace")
            elif msg.kind == "E" and not error:
                error = _error_fields(msg.body)
            elif msg.kind == "Z":
                ready = True
    except Truncated:
        return None
    return LoginReply(auth, mechanisms, params, error, ready)


def build_terminate() -> bytes:
    """The Terminate message: a polite goodbye after a login that succeeded."""
    return b"X\0\0\0\x04"
