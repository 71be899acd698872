"""Line assembly for the line-based personas (telnet, FTP): bounded, CR/LF/NUL tolerant."""

from __future__ import annotations

__all__ = ["LineBuffer"]


class LineBuffer:
    """Collects typed bytes into lines. Accepts ``\\r\\n``, ``\\r\\0``, ``\\r`` or ``\\n`` as the
    end of a line, applies backspace/DEL, and cuts a line at ``max_line`` bytes (the rest of an
    over-long line is dropped until its end arrives)."""

    __slots__ = ("_buf", "_last_cr", "_max")

    def __init__(self, max_line: int = 512) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._last_cr = False

    def push(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        for byte in data:
            if self._last_cr and byte in (0x0A, 0x00):
                self._last_cr = False
                continue  # the second half of CR LF / CR NUL
            self._last_cr = byte == 0x0D
            if byte in (0x0D, 0x0A):
                lines.append(bytes(self._buf))
                self._buf.clear()
            elif byte in (0x08, 0x7F):
                if self._buf:
                    del self._buf[-1]
            elif len(self._buf) < self._max:
                self._buf.append(byte)
            # else: past max_line, dropped until the line ends
        return lines

    @property
    def pending(self) -> bytes:
        """A line typed but not ended yet."""
        return bytes(self._buf)
