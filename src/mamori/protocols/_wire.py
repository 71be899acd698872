"""Byte-reading helpers shared by the protocol parsers.

Parsers use ``Reader`` and let ``Truncated`` signal "these bytes end too early or break a
length rule"; each public parse function catches exactly that and returns None, so callers
see one outcome for malformed input instead of IndexError/struct.error surprises.
"""

from __future__ import annotations

import struct


class Truncated(ValueError):
    """The input ended before a field it announced, or a field broke its length rules."""


class Reader:
    """A cursor over bytes whose reads raise ``Truncated`` instead of running off the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Truncated(f"need {n} bytes at {self.pos}, have {self.remaining}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        self.take(n)

    def u8(self) -> int:
        return self.take(1)[0]

    def u16be(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u16le(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u24be(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def u24le(self) -> int:
        return int.from_bytes(self.take(3), "little")

    def u32be(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u32le(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def i32le(self) -> int:
        return int(struct.unpack("<i", self.take(4))[0])

    def cstring(self, limit: int = 4096) -> bytes:
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            raise Truncated("unterminated string")
        out = self.data[self.pos : end]
        self.pos = end + 1
        return out


def text(raw: bytes, limit: int = 256) -> str:
    """Printable text from untrusted bytes: undecodable bytes replaced, capped in length."""
    return raw[:limit].decode("utf-8", "replace").replace("\x00", "")
