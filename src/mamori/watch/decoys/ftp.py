"""FTP decoy: a vsftpd-like greeting, USER/PASS recorded, every login refused."""

from __future__ import annotations

from mamori.model.watch import EventType
from mamori.watch.decoys.lines import LineBuffer
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["FtpPersona"]


class FtpPersona(Persona):
    name = "ftp"

    def __init__(self, max_commands: int = 8) -> None:
        super().__init__()
        self._lines = LineBuffer()
        self._username: bytes | None = None
        self._commands = 0
        self._max_commands = max_commands

    def greeting(self) -> bytes:
        return b"220 (vsFTPd 3.0.3)\r\n"

    def handle(self, data: bytes) -> Step:
        step = Step()
        for line in self._lines.push(data):
            self._line(line, step)
            if step.close:
                break
        return step

    def _line(self, line: bytes, step: Step) -> None:
        if not self.data_recorded:
            step.records.append(self.first_request({"line": clean(line)}))
        verb, _, arg = line.strip().partition(b" ")
        verb = verb.upper()
        self._commands += 1
        if verb == b"USER":
            self._username = arg
            step.reply += b"331 Please specify the password.\r\n"
        elif verb == b"PASS" and self._username is not None:
            step.records.append(Record(EventType.DECOY_LOGIN, {
                "persona": self.name, "username": clean(self._username),
                "password": clean(arg), "outcome": "refused",
            }, b"USER " + self._username + b"\nPASS " + arg))
            self._username = None
            step.reply += b"530 Login incorrect.\r\n"
        elif verb == b"QUIT":
            step.reply += b"221 Goodbye.\r\n"
            step.close = True
            return
        elif verb:
            step.records.append(Record(EventType.DECOY_COMMAND, {
                "persona": self.name, "command": clean(line.strip()),
            }, line))
            step.reply += b"530 Please login with USER and PASS.\r\n"
        if self._commands >= self._max_commands:
            step.reply += b"421 Too many commands, closing control connection.\r\n"
            step.close = True
