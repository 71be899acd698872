"""SMTP (RFC 5321): parse replies, build commands and a test message, and the relay-test
address forms (the classic tricks nmap's smtp-open-relay tries). Pure: no sockets here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import text

MAX_REPLY_LINES = 64  # a multi-line reply longer than this is not one we need to read
_LINE = re.compile(rb"(\d{3})([ -])([^\r\n]*)\r?\n")
_PARTIAL = re.compile(rb"\d{0,2}|\d{3}(?:[ -][^\r\n]*)?\r?")  # an unfinished reply line
_ADDRESS_UNSAFE = re.compile(r"[\r\n<>\x00]")


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    lines: tuple[str, ...]  # the text after "250-" / "250 ", one per line

    @property
    def positive(self) -> bool:
        """2xx: the command was accepted."""
        return 200 <= self.code < 300

    @property
    def text(self) -> str:
        return " | ".join(self.lines)


def parse_reply(data: bytes) -> tuple[SmtpReply, int] | None:
    """Parse one (possibly multi-line) reply at the start of ``data``.

    Returns (reply, bytes consumed), or None when the bytes do not hold one complete,
    well-formed reply (every line "DDD-text" with the same code, the last "DDD text").
    Never raises.
    """
    pos = 0
    code: bytes | None = None
    lines: list[str] = []
    while len(lines) < MAX_REPLY_LINES:
        m = _LINE.match(data, pos)
        if m is None:
            return None
        if code is not None and m.group(1) != code:
            return None
        code = m.group(1)
        lines.append(text(m.group(3), 512))
        pos = m.end()
        if m.group(2) == b" ":
            return SmtpReply(int(code), tuple(lines)), pos
    return None


def reply_complete(buf: bytes) -> bool:
    """True when ``buf`` holds one whole reply, or cannot be the start of one.

    For ``BoundedStream.read_until``: stop reading as soon as judging is possible.
    """
    if parse_reply(buf) is not None:
        return True
    # Anything that is not a run of "DDD-..." lines ending in an unfinished line is not
    # SMTP; stop at once instead of waiting for the idle timeout.
    pos = 0
    while True:
        m = _LINE.match(buf, pos)
        if m is None:
            rest = buf[pos:]
            return b"\n" in rest or _PARTIAL.fullmatch(rest) is None
        if m.group(2) == b" ":
            return True
        pos = m.end()
        if pos > 65536:
            return True


def command(verb: str, argument: str = "") -> bytes:
    """One command line. Raises ValueError if a CR, LF or NUL would smuggle a second one."""
    line = f"{verb} {argument}" if argument else verb
    if any(ch in line for ch in "\r\n\x00"):
        raise ValueError("SMTP command contains a line break")
    return line.encode("utf-8") + b"\r\n"


def mail_from(address: str) -> bytes:
    return command("MAIL", f"FROM:<{_safe(address)}>")


def rcpt_to(address: str) -> bytes:
    return command("RCPT", f"TO:<{_safe(address)}>")


def _safe(address: str) -> str:
    if _ADDRESS_UNSAFE.search(address):
        raise ValueError(f"unsafe address {address!r}")
    return address


def ehlo_keywords(reply: SmtpReply) -> frozenset[str]:
    """The EHLO extension keywords (the first word of each line after the greeting)."""
    words = {line.split(" ", 1)[0].upper() for line in reply.lines[1:] if line.strip()}
    return frozenset(w[:64] for w in words)


def server_name(banner: SmtpReply) -> str | None:
    """The host name a 220 greeting starts with, when it looks like one."""
    first = banner.lines[0].split(" ", 1)[0] if banner.lines else ""
    return first if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", first) else None


@dataclass(frozen=True, slots=True)
class RelayForm:
    name: str  # "plain", "percent-hack", ... (what the form tries)
    address: str  # the RCPT TO address


def relay_forms(user: str, domain: str, target_ip: str) -> list[RelayForm]:
    """Recipient forms that ask the server to pass mail for ``user@domain`` on.

    The classic tricks from the open-relay test lists (and nmap's smtp-open-relay): the
    plain address, the percent hack, quoted local parts, a double "@", an RFC 821 source
    route and UUCP bang paths, each routed through the target's own address literal so a
    server that strips "its own" part hands the rest on.
    """
    ip = f"[IPv6:{target_ip}]" if ":" in target_ip else f"[{target_ip}]"
    return [
        RelayForm("plain", f"{user}@{domain}"),
        RelayForm("percent-hack", f"{user}%{domain}@{ip}"),
        RelayForm("quoted", f'"{user}@{domain}"'),
        RelayForm("quoted-percent", f'"{user}%{domain}"'),
        RelayForm("double-at", f"{user}@{domain}@{ip}"),
        RelayForm("quoted-at-ip", f'"{user}@{domain}"@{ip}'),
        RelayForm("source-route", f"@{ip}:{user}@{domain}"),
        RelayForm("bang-path", f"{domain}!{user}"),
        RelayForm("bang-path-at-ip", f"{domain}!{user}@{ip}"),
    ]


def build_message(*, sender: str, recipient: str, token: str, helo_name: str,
                  date: str) -> bytes:
    """The DATA payload: a short message that says what it is and carries ``token``,
    dot-stuffed and ended with "<CRLF>.<CRLF>". Raises ValueError if a field holds a line
    break (it would forge headers or end the message early)."""
    for value in (sender, recipient, token, helo_name, date):
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("message field contains a line break")
    body = [
        f"From: mamori open-relay test <{sender}>",
        f"To: <{recipient}>",
        f"Subject: mamori open-relay test {token}",
        f"Date: {date}",
        f"Message-ID: <{token}@{helo_name}>",
        f"X-Mamori-Token: {token}",
        "",
        "This message was sent by mamori, a security self-check, to test whether this mail",
        "server relays mail for anyone (an open relay). If you received it, the server",
        "that passed it on is an open relay and should be fixed. It needs no reply.",
        f"Token: {token}",
    ]
    lines = [("." + line if line.startswith(".") else line) for line in body]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n.\r\n"
