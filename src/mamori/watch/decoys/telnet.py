"""Telnet decoy: a login prompt, a password prompt, a fake shell that records a few commands.

Option negotiation from the visitor is stripped and never answered except for the echo
switch a real login uses around the password. Any credentials are "accepted" so the commands a
bot types next are seen; nothing typed is ever run: every command gets the same prompt back.
"""

from __future__ import annotations

from mamori.model.watch import EventType
from mamori.protocols.telnet import split_stream
from mamori.watch.decoys.lines import LineBuffer
from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["TelnetPersona"]

IAC, WILL, WONT, ECHO = 0xFF, 0xFB, 0xFC, 0x01
HOSTNAME = b"srv01"


class TelnetPersona(Persona):
    name = "telnet"

    def __init__(self, max_commands: int = 8) -> None:
        super().__init__()
        self._lines = LineBuffer()
        self._rest = b""
        self._state = "user"
        self._username = b""
        self._commands = 0
        self._max_commands = max_commands

    def greeting(self) -> bytes:
        return b"\r\nDebian GNU/Linux 12\r\n\r\n" + HOSTNAME + b" login: "

    def handle(self, data: bytes) -> Step:
        chunk = split_stream(self._rest + data)
        self._rest = chunk.rest[:64]
        step = Step()
        for line in self._lines.push(chunk.text):
            self._line(line, step)
            if step.close:
                break
        return step

    def _line(self, line: bytes, step: Step) -> None:
        if not self.data_recorded:
            step.records.append(self.first_request({"line": clean(line)}))
        if self._state == "user":
            if not line.strip():
                step.reply += HOSTNAME + b" login: "
                return
            self._username = line.strip()
            self._state = "password"
            step.reply += bytes([IAC, WILL, ECHO]) + b"Password: "
        elif self._state == "password":
            step.records.append(Record(EventType.DECOY_LOGIN, {
                "persona": self.name, "username": clean(self._username),
                "password": clean(line), "outcome": "accepted",
            }, self._username + b"\n" + line))
            self._state = "shell"
            step.reply += bytes([IAC, WONT, ECHO]) + b"\r\n" + self._prompt()
        else:
            command = line.strip()
            if not command:
                step.reply += self._prompt()
                return
            self._commands += 1
            step.records.append(Record(EventType.DECOY_COMMAND, {
                "persona": self.name, "username": clean(self._username),
                "command": clean(command),
            }, command))
            if command in (b"exit", b"logout", b"quit") or self._commands >= self._max_commands:
                step.close = True
                return
            step.reply += self._prompt()

    def _prompt(self) -> bytes:
        return b"# " if self._username == b"root" else b"$ "
