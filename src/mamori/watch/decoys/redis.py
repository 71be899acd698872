"""Redis decoy: RESP (and inline) commands recorded; AUTH is a login; everything is refused
with the errors a password-protected server gives. Nothing is ever stored or run."""

from __future__ import annotations

from mamori.model.watch import EventType
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["BadCommand", "RedisPersona", "parse_command"]

MAX_ARGS = 64
MAX_ARG = 8192
_NOAUTH = b"-NOAUTH Authentication required.\r\n"
_WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


class BadCommand(ValueError):
    """The bytes cannot be a Redis command (or break the decoy's bounds)."""


def _line(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    end = buf.find(b"\r\n", pos, pos + 64)
    if end < 0:
        if len(buf) - pos >= 64:
            raise BadCommand("line too long")
        return None
    return buf[pos:end], end + 2


def _number(raw: bytes, limit: int) -> int:
    if not raw.isdigit() or int(raw) > limit:
        raise BadCommand(f"bad length {raw[:16]!r}")
    return int(raw)


def parse_command(buf: bytes) -> tuple[list[bytes], int] | None:
    """One command at the start of ``buf``: ``(args, bytes consumed)``, None when more bytes
    are needed. RESP arrays of bulk strings and inline commands are accepted; raises
    ``BadCommand`` otherwise. Pure and bounded (64 arguments of 8 KiB at most)."""
    if not buf:
        return None
    if buf[:1] != b"*":
        if (buf[0] < 0x20 and buf[0] not in b"\r\n\t") or buf[0] >= 0x7F:
            raise BadCommand("binary data")
        end = buf.find(b"\n", 0, MAX_ARG)
        if end < 0:
            if len(buf) >= MAX_ARG:
                raise BadCommand("inline command too long")
            return None
        return buf[:end].rstrip(b"\r").split()[:MAX_ARGS], end + 1
    head = _line(buf, 1)
    if head is None:
        return None
    count, pos = _number(head[0], MAX_ARGS), head[1]
    args: list[bytes] = []
    for _ in range(count):
        if pos >= len(buf):
            return None
        if buf[pos : pos + 1] != b"$":
            raise BadCommand("array item is not a bulk string")
        size_line = _line(buf, pos + 1)
        if size_line is None:
            return None
        size, pos = _number(size_line[0], MAX_ARG), size_line[1]
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise BadCommand("bulk string without CRLF")
        args.append(buf[pos : pos + size])
        pos += size + 2
    return args, pos


class RedisPersona(Persona):
    name = "redis"

    def __init__(self, max_commands: int = 16) -> None:
        super().__init__()
        self._buf = b""
        self._commands = 0
        self._max_commands = max_commands

    def handle(self, data: bytes) -> Step:
        self._buf += data
        step = Step()
        while not step.close:
            try:
                parsed = parse_command(self._buf)
            except BadCommand as exc:
                if not self.data_recorded:
                    step.records.append(self.first_request({"note": f"not redis: {exc}"}))
                step.close = True
                break
            if parsed is None:
                break
            args, used = parsed
            self._buf = self._buf[used:]
            if not args:
                continue
            self._command(args, step)
        return step

    def _command(self, args: list[bytes], step: Step) -> None:
        verb = args[0].upper()
        text = b" ".join(args)
        if not self.data_recorded:
            step.records.append(self.first_request({"verb": clean(verb, 32),
                                                    "command": clean(text)}))
        self._commands += 1
        creds: tuple[bytes, bytes] | None = None
        if verb == b"AUTH" and len(args) in (2, 3):
            creds = (args[1], args[2]) if len(args) == 3 else (b"", args[1])
        elif verb == b"HELLO" and len(args) >= 5 and args[2].upper() == b"AUTH":
            creds = (args[3], args[4])
        if creds is not None:
            step.records.append(Record(EventType.DECOY_LOGIN, {
                "persona": self.name, "username": clean(creds[0]),
                "password": clean(creds[1]), "outcome": "refused",
            }, text))
            step.reply += _WRONGPASS
        else:
            step.records.append(Record(EventType.DECOY_COMMAND, {
                "persona": self.name, "verb": clean(verb, 32), "command": clean(text),
            }, text))
            if verb == b"QUIT":
                step.reply += b"+OK\r\n"
                step.close = True
                return
            step.reply += _NOAUTH
        if self._commands >= self._max_commands:
            step.close = True
