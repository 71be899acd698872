"""Telnet (RFC 854): recognise the option negotiation a server opens with."""

from __future__ import annotations

from dataclasses import dataclass

IAC, SB, SE = 0xFF, 0xFA, 0xF0
_VERBS = {0xFB: "WILL", 0xFC: "WONT", 0xFD: "DO", 0xFE: "DONT"}


@dataclass(frozen=True, slots=True)
class Negotiation:
    options: tuple[tuple[str, int], ...]  # ("DO", 24) ...
    text: bytes  # what followed the negotiation (a login banner, often)


def parse_negotiation(data: bytes) -> Negotiation | None:
    """Parse the IAC commands at the start of a server's first bytes.

    Returns None unless ``data`` starts with at least one well-formed IAC option command.
    Never raises.
    """
    options: list[tuple[str, int]] = []
    pos = 0
    while pos + 1 < len(data) and data[pos] == IAC and len(options) < 64:
        verb = data[pos + 1]
        if verb in _VERBS:
            if pos + 2 >= len(data):
                break
            options.append((_VERBS[verb], data[pos + 2]))
            pos += 3
        elif verb == SB:
            end = data.find(bytes([IAC, SE]), pos + 2)
            if end < 0:
                break
            pos = end + 2
        elif 0xF1 <= verb <= 0xF9:
            pos += 2
        else:
            break
    if not options:
        return None
    return Negotiation(tuple(options), data[pos:])


_WILL, _WONT, _DO, _DONT = 0xFB, 0xFC, 0xFD, 0xFE
# Options a client may safely accept when the server offers them: echo and suppress-go-ahead
# are what every login session uses; everything else (authentication, encryption, terminal
# type, window size, environment) we decline, so the server goes straight to its login.
_ACCEPTED = {1, 3}


@dataclass(frozen=True, slots=True)
class Chunk:
    commands: tuple[tuple[str, int], ...]  # option commands in this chunk, ("DO", 24) ...
    text: bytes  # the data bytes with every IAC sequence taken out
    rest: bytes  # an IAC sequence cut at the end of the chunk: prepend to the next one


def split_stream(data: bytes) -> Chunk:
    """Separate option commands from data in a server's bytes (RFC 854/855). IAC IAC is a
    data byte 255; subnegotiations are dropped. Never raises; at most 256 commands kept."""
    commands: list[tuple[str, int]] = []
    out = bytearray()
    pos = 0
    while pos < len(data):
        byte = data[pos]
        if byte != IAC:
            out.append(byte)
            pos += 1
            continue
        if pos + 1 >= len(data):
            return Chunk(tuple(commands), bytes(out), data[pos:])
        verb = data[pos + 1]
        if verb == IAC:
            out.append(IAC)
            pos += 2
        elif verb in _VERBS:
            if pos + 2 >= len(data):
                return Chunk(tuple(commands), bytes(out), data[pos:])
            if len(commands) < 256:
                commands.append((_VERBS[verb], data[pos + 2]))
            pos += 3
        elif verb == SB:
            end = data.find(bytes([IAC, SE]), pos + 2)
            if end < 0:
                return Chunk(tuple(commands), bytes(out), data[pos:])
            pos = end + 2
        else:
            pos += 2  # NOP, GA, and the other two-byte commands carry no data
    return Chunk(tuple(commands), bytes(out), b"")


def refuse(commands: tuple[tuple[str, int], ...]) -> bytes:
    """Our answers to the server's option commands: DONT/WONT for everything but echo and
    suppress-go-ahead, which we accept. WONT/DONT need no answer (RFC 854: no loops)."""
    out = bytearray()
    for verb, option in commands:
        if verb == "DO":
            out += bytes([IAC, _WONT, option])
        elif verb == "WILL":
            out += bytes([IAC, _DO if option in _ACCEPTED else _DONT, option])
    return bytes(out)


def option_name(option: int) -> str:
    """A readable name for the options servers usually open with (RFC 1700 / IANA list)."""
    return _OPTION_NAMES.get(option, str(option))


_OPTION_NAMES = {
    0: "BINARY", 1: "ECHO", 3: "SGA", 5: "STATUS", 6: "TIMING-MARK", 24: "TERMINAL-TYPE",
    31: "NAWS", 32: "TERMINAL-SPEED", 33: "TOGGLE-FLOW-CONTROL", 34: "LINEMODE",
    35: "X-DISPLAY-LOCATION", 36: "ENVIRON", 37: "AUTHENTICATION", 38: "ENCRYPT",
    39: "NEW-ENVIRON",
}
