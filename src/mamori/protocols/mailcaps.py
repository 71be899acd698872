"""IMAP (RFC 9051/3501) and POP3 (RFC 1939/2449) greetings and capability lists, and what they
say about logging in with a password over a cleartext connection. Pure: no sockets here.

The judgement uses only what the server states about itself: IMAP's LOGINDISABLED (RFC 3501
6.2.3: a server that refuses LOGIN on this connection MUST advertise it), the SASL mechanisms
it offers (AUTH=PLAIN / AUTH=LOGIN carry the password as it is), POP3's USER (RFC 2449: listed
only when USER/PASS may be used) and SASL line. No login is ever attempted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import text

MAX_LINES = 64
_TAG = "M1"
_CLEAR_SASL = frozenset({"PLAIN", "LOGIN"})


@dataclass(frozen=True, slots=True)
class CapsVerdict:
    """What the capability list says about passwords sent in the clear on this connection."""

    clear_methods: tuple[str, ...]  # e.g. ("LOGIN command", "AUTH=PLAIN")
    starttls: bool
    login_disabled: bool  # IMAP LOGINDISABLED, or POP3 without USER and without clear SASL

    @property
    def grade(self) -> str:
        if not self.clear_methods:
            return "none"
        return "cleartext-allowed" if self.starttls else "cleartext-only"


def _lines(data: bytes) -> list[bytes] | None:
    """Complete CRLF/LF-terminated lines, or None when too many."""
    parts = data.split(b"\n")[:-1]  # the piece after the last newline is unfinished
    if len(parts) > MAX_LINES:
        return None
    return [p.rstrip(b"\r") for p in parts]


# --- IMAP -------------------------------------------------------------------------------------

_IMAP_GREETING = re.compile(rb"^\* (OK|PREAUTH|BYE)(?: \[([^\]]*)\])?(?: (.*))?$", re.I)


@dataclass(frozen=True, slots=True)
class ImapGreeting:
    status: str  # OK / PREAUTH / BYE
    capabilities: tuple[str, ...]  # from a [CAPABILITY ...] response code, when given
    text: str


def parse_imap_greeting(data: bytes) -> ImapGreeting | None:
    """The untagged greeting on the first line, or None when it is not one."""
    lines = _lines(data)
    if not lines:
        return None
    m = _IMAP_GREETING.match(lines[0])
    if m is None:
        return None
    code = text(m.group(2) or b"", 2048).split()
    caps = tuple(c.upper() for c in code[1:]) if code and code[0].upper() == "CAPABILITY" else ()
    return ImapGreeting(m.group(1).decode().upper(), caps[:256], text(m.group(3) or b"", 200))


def imap_capability_command() -> bytes:
    return f"{_TAG} CAPABILITY\r\n".encode()


def imap_logout_command() -> bytes:
    return b"M2 LOGOUT\r\n"


def imap_tagged_done(data: bytes) -> bool:
    """True when ``data`` holds our tagged completion, or cannot lead to one."""
    lines = _lines(data)
    if lines is None:
        return True
    return any(line.upper().startswith(f"{_TAG} ".encode()) for line in lines)


def parse_imap_capability(data: bytes) -> tuple[str, ...] | None:
    """The capabilities from "* CAPABILITY ..." lines followed by "M1 OK", else None.

    Any line that is neither an untagged response nor our tagged one makes it None: a peer
    that answers out of turn cannot be read as IMAP.
    """
    lines = _lines(data)
    if not lines:
        return None
    caps: list[str] = []
    for line in lines:
        upper = line.upper()
        if upper.startswith(b"* CAPABILITY "):
            caps.extend(text(line[13:], 4096).upper().split())
        elif upper.startswith(b"* "):
            continue
        elif upper.startswith(f"{_TAG} OK".encode()):
            return tuple(caps[:256]) if caps else None
        else:
            return None
    return None


def judge_imap(caps: tuple[str, ...]) -> CapsVerdict:
    """Which password methods the IMAP capability list allows in the clear."""
    login_disabled = "LOGINDISABLED" in caps
    methods = [] if login_disabled else ["LOGIN command"]
    methods += [c for c in caps if c.startswith("AUTH=") and c[5:] in _CLEAR_SASL]
    return CapsVerdict(tuple(methods), "STARTTLS" in caps, login_disabled)


def is_imap_capability_list(caps: tuple[str, ...]) -> bool:
    """A real IMAP capability list names its protocol revision."""
    return any(c in ("IMAP4REV1", "IMAP4REV2") for c in caps)


# --- POP3 -------------------------------------------------------------------------------------


def parse_pop3_greeting(data: bytes) -> str | None:
    """The greeting text after "+OK" on the first line, or None when it is not one."""
    lines = _lines(data)
    if not lines or not lines[0].startswith(b"+OK"):
        return None
    return text(lines[0][3:].strip(), 200)


def pop3_capa_command() -> bytes:
    return b"CAPA\r\n"


def pop3_quit_command() -> bytes:
    return b"QUIT\r\n"


def pop3_capa_done(data: bytes) -> bool:
    """True when ``data`` holds a whole CAPA answer ("-ERR" line, or "+OK" ... "."), or
    cannot become one."""
    lines = _lines(data)
    if lines is None:
        return True
    if not lines:
        return False
    if not lines[0].startswith(b"+OK"):
        return True
    return b"." in lines[1:]


def parse_pop3_capa(data: bytes) -> tuple[str, ...] | None:
    """The capability lines of a "+OK" CAPA answer (upper-cased), None for -ERR/garbage.

    Exactly one terminating "." line and nothing after it: a second status line means a
    peer that answers out of turn.
    """
    lines = _lines(data)
    if not lines or not lines[0].startswith(b"+OK") or b"." not in lines:
        return None
    end = lines.index(b".")
    if end != len(lines) - 1:
        return None
    caps = [text(line, 512).upper() for line in lines[1:end] if line.strip()]
    if any(c.startswith(("+OK", "-ERR")) for c in caps):
        return None
    return tuple(caps)


def judge_pop3(caps: tuple[str, ...]) -> CapsVerdict:
    """Which password methods the POP3 CAPA list allows in the clear."""
    words = [c.split() for c in caps]
    names = {w[0] for w in words if w}
    sasl = next((w[1:] for w in words if w and w[0] == "SASL"), [])
    methods = ["USER/PASS"] if "USER" in names else []
    methods += [f"SASL {m}" for m in sasl if m in _CLEAR_SASL]
    return CapsVerdict(tuple(methods), "STLS" in names, not methods)
