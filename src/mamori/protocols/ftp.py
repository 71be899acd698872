"""FTP (RFC 959, RFC 2428 EPSV): control-connection replies and passive-mode answers.

Pure: the check primitives own the sockets. Everything here takes untrusted bytes and never
raises on them; malformed input gives None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import text

_MAX_LINES = 64  # lines kept from one multi-line reply; the rest only counts toward the cap
_FINAL = re.compile(rb"^(\d{3}) ")
_FIRST_MULTI = re.compile(rb"^(\d{3})-")
_PASV = re.compile(rb"\((\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\)")
_PASV_BARE = re.compile(rb"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV = re.compile(rb"\((.)\1\1(\d{1,5})\1\)")
_PWD = re.compile(r'^"((?:[^"]|"")*)"')


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # every line of the reply, code included, printable and capped
    size: int  # bytes the reply took from the buffer (CRLF included)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


def parse_reply(data: bytes) -> Reply | None:
    """The first complete reply in ``data``, skipping lines that are not FTP at all.

    A reply is "ddd text" on one line, or "ddd-" ... up to a line starting "ddd " with the
    same code (RFC 959 4.2). Lines before the first code (garbage a peer sent ahead) are
    skipped, so a peer that speaks several protocols at once cannot shift our replies.
    Returns None until a whole reply has arrived. Never raises.
    """
    pos = 0
    code: bytes | None = None
    lines: list[str] = []
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return None
        line = data[pos:end].rstrip(b"\r")
        pos = end + 1
        if code is None:
            final = _FINAL.match(line)
            if final:
                return Reply(int(final.group(1)), (text(line),), pos)
            multi = _FIRST_MULTI.match(line)
            if multi:
                code = multi.group(1)
                lines.append(text(line))
            continue
        if len(lines) < _MAX_LINES:
            lines.append(text(line))
        if line.startswith(code + b" "):
            return Reply(int(code), tuple(lines), pos)


def reply_complete(buf: bytes) -> bool:
    return parse_reply(buf) is not None


_GREETING_CAP = 4096


def greeting_and_reply_complete(buf: bytes) -> bool:
    """True once a 220 greeting and the reply to one command after it have both arrived.

    Also True at once when the first reply is not a greeting (the peer refused us: judge
    that), when binary bytes came (not a text protocol), or after 4 KiB (a flood is judged on
    what came). For identifying FTP and SMTP (RFC 959 / RFC 5321 reply grammar) on a fresh
    connection: the greeting comes first, the answer to our command after it.
    """
    if len(buf) >= _GREETING_CAP:
        return True
    if any(b < 0x09 or 0x0E <= b < 0x20 or b >= 0x7F for b in buf[:64]):
        return True
    first = parse_reply(buf)
    if first is None:
        return False
    if first.code != 220:
        return True
    return parse_reply(buf[first.size:]) is not None


def parse_pasv(reply: Reply) -> int | None:
    """The data port of a 227 reply (the address in it is ignored: we only ever connect to
    the server we probe, which also defeats a PASV reply that points elsewhere)."""
    if reply.code != 227:
        return None
    raw = reply.lines[0].encode()
    m = _PASV.search(raw) or _PASV_BARE.search(raw)
    if m is None:
        return None
    nums = [int(g) for g in m.groups()]
    if any(n > 255 for n in nums):
        return None
    port = nums[4] * 256 + nums[5]
    return port if port > 0 else None


def parse_epsv(reply: Reply) -> int | None:
    """The data port of a 229 reply "(|||port|)", or None."""
    if reply.code != 229:
        return None
    m = _EPSV.search(reply.lines[0].encode())
    if m is None:
        return None
    port = int(m.group(2))
    return port if 0 < port < 65536 else None


def parse_pwd(reply: Reply) -> str | None:
    """The quoted directory of a 257 reply (doubled quotes undone), or None."""
    if reply.code != 257:
        return None
    rest = reply.lines[0][4:]
    m = _PWD.match(rest)
    return m.group(1).replace('""', '"') if m else None


def parse_size(reply: Reply) -> int | None:
    """The size in a 213 reply to SIZE (RFC 3659), or None."""
    if reply.code != 213:
        return None
    parts = reply.lines[0][4:].strip().split()
    if len(parts) != 1 or not parts[0].isdigit() or len(parts[0]) > 18:
        return None
    return int(parts[0])


def command(verb: str, arg: str | None = None) -> bytes:
    """One command line. CR and LF in ``arg`` are refused: they would inject a command."""
    if arg is not None and ("\r" in arg or "\n" in arg):
        raise ValueError("FTP argument contains a line break")
    return (verb if arg is None else f"{verb} {arg}").encode() + b"\r\n"


_UNIX_LIST = re.compile(
    r"^([bcdlps-])[rwxsStT-]{9}[+.@]?\s+\d+\s+\S+\s+\S+\s+\d+\s+"
    r"(?:\w{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4}))\s+(.+)$"
)
_DOS_LIST = re.compile(
    r"^\d{2}-\d{2}-\d{2,4}\s+\d{1,2}:\d{2}(?:AM|PM)?\s+(?:<DIR>|\d+)\s+(.+)$", re.IGNORECASE
)


def parse_listing(data: bytes, limit: int = 50) -> list[str] | None:
    """Names in a LIST reply (Unix "ls -l" or DOS style), at most ``limit``.

    Returns [] for an empty listing, None when a non-empty listing has no line in either
    format (a peer that sends arbitrary text on the data connection). Never raises.
    """
    names: list[str] = []
    seen_lines = 0
    for raw in data.split(b"\n"):
        line = text(raw.rstrip(b"\r"), 512)
        if not line.strip() or line.startswith("total "):
            continue
        seen_lines += 1
        m = _UNIX_LIST.match(line)
        name = m.group(2) if m else None
        if name is None:
            d = _DOS_LIST.match(line)
            name = d.group(1) if d else None
        if name is not None and len(names) < limit:
            names.append(name.split(" -> ", 1)[0])
    if seen_lines and not names:
        return None
    return names
