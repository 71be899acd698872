"""TFTP (RFC 1350) read requests, the packets that answer them, and the error that ends one.

The server answers a read request from a new port of its own (the transfer ID), with DATA
block 1 or an ERROR. We never acknowledge a block: one DATA packet (at most 512 bytes) is
proof the file is served, and an ERROR sent back ends the transfer. Pure; never raises on
untrusted input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OP_RRQ, OP_DATA, OP_ERROR = 1, 3, 5
ERROR_NAMES = {0: "not defined", 1: "file not found", 2: "access violation", 3: "disk full",
               4: "illegal operation", 5: "unknown transfer ID", 6: "file exists",
               7: "no such user", 8: "option refused"}


def build_read_request(filename: str) -> bytes:
    """RRQ in octet mode, no options; the name must be printable and NUL-free."""
    if not filename or any(ch in filename for ch in "\0\r\n") or len(filename) > 255:
        raise ValueError("TFTP file name must be one short line")
    return struct.pack(">H", OP_RRQ) + filename.encode() + b"\0octet\0"


def build_error(code: int, message: str) -> bytes:
    return struct.pack(">HH", OP_ERROR, code) + message.encode()[:100] + b"\0"


@dataclass(frozen=True, slots=True)
class Packet:
    opcode: int
    number: int  # DATA block number, or ERROR code
    payload: bytes  # DATA bytes, or ERROR message (without its NUL)

    @property
    def error_text(self) -> str:
        text = self.payload.decode("utf-8", "replace")[:200]
        return f"{ERROR_NAMES.get(self.number, f'error {self.number}')}: {text}".rstrip(": ")


def parse_packet(data: bytes) -> Packet | None:
    """A DATA or ERROR packet (what answers a read request), or None."""
    if len(data) < 4:
        return None
    opcode, number = struct.unpack(">HH", data[:4])
    if opcode == OP_DATA and len(data) <= 4 + 512:
        return Packet(opcode, number, data[4:])
    if opcode == OP_ERROR and data.endswith(b"\0") and len(data) <= 4 + 512:
        return Packet(opcode, number, data[4:-1])
    return None
