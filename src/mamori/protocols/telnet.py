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
