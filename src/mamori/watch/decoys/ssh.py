"""SSH decoy: an OpenSSH-like banner; records the client's version string and the size (and
key-exchange list) of its first KEXINIT packet, then closes. No cryptography at all."""

from __future__ import annotations

import struct

from mamori.watch.decoys.session import Persona, Record, Step, clean

__all__ = ["SshPersona", "parse_kexinit"]

BANNER = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n"
_MAX_IDENT = 255  # RFC 4253 4.2: the identification line is at most 255 bytes
_KEX_LOOK = 2048  # bytes of the first packet we wait for (enough for its first name-list)
_MSG_KEXINIT = 20


def parse_kexinit(packet: bytes) -> tuple[int, str] | None:
    """``(packet_length, first name-list)`` of an SSH binary packet carrying KEXINIT.

    ``packet`` starts at the 4-byte length; it may be cut short, in which case the name-list
    is whatever fits. Returns None when the bytes do not look like an SSH packet. Never raises.
    """
    if len(packet) < 6:
        return None
    length, padding = struct.unpack(">IB", packet[:5])
    if length < 12 or length > 35000 or padding >= length:
        return None
    if packet[5] != _MSG_KEXINIT:
        return length, ""
    pos = 6 + 16  # message byte, cookie
    if len(packet) < pos + 4:
        return length, ""
    (size,) = struct.unpack(">I", packet[pos : pos + 4])
    names = packet[pos + 4 : pos + 4 + min(size, length)]
    return length, clean(names)


class SshPersona(Persona):
    name = "ssh"

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._version: bytes | None = None

    def greeting(self) -> bytes:
        return BANNER

    def handle(self, data: bytes) -> Step:
        if self.data_recorded:
            return Step(close=True)
        self._buf += data[: _MAX_IDENT + _KEX_LOOK - len(self._buf)]
        if self._version is None:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) >= _MAX_IDENT:
                    return self._done({"note": "identification line too long"})
                return Step()
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if not line.startswith(b"SSH-"):
                return self._done({"client_version": clean(line), "note": "not ssh"})
            self._version = line
        if len(self._buf) < 5:
            return Step()
        (length,) = struct.unpack(">I", bytes(self._buf[:4]))
        if len(self._buf) < min(length + 4, _KEX_LOOK):
            return Step()
        return self._done({})

    def _done(self, fields: dict[str, str]) -> Step:
        return Step(records=[self.first_request(self._fields(fields))], close=True)

    def _fields(self, extra: dict[str, str]) -> dict[str, str]:
        fields: dict[str, str] = {}
        if self._version is not None:
            fields["client_version"] = clean(self._version)
        kex = parse_kexinit(bytes(self._buf))
        if kex is not None:
            fields["kex_size"] = str(kex[0])
            if kex[1]:
                fields["kex_algorithms"] = kex[1]
        fields.update(extra)
        return fields

    def finish(self) -> list[Record]:
        if self.data_recorded or not (self._version or self._buf):
            return super().finish()
        return [self.first_request(self._fields({"complete": "no"}))]
