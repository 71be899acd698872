"""Generic decoy: sends a configurable banner line, records the first bytes, closes."""

from __future__ import annotations

from mamori.watch.decoys.session import Persona, Step

__all__ = ["BannerPersona"]

_FIRST = 512


class BannerPersona(Persona):
    name = "banner"

    def __init__(self, banner: str = "") -> None:
        super().__init__()
        self._banner = banner
        self._size = 0

    def greeting(self) -> bytes:
        if not self._banner:
            return b""
        return self._banner.encode("utf-8", "replace")[:512] + b"\r\n"

    def handle(self, data: bytes) -> Step:
        self._size += len(data)
        if b"\n" in self._first or self._size >= _FIRST:
            return Step(records=[self.first_request({"size": str(self._size)})], close=True)
        return Step()
