"""SMB2 client messages for an unauthenticated share listing (MS-SMB2), NetBIOS-framed.

NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE (a named pipe), WRITE, READ: builders that
return whole frames, and parsers that return None for anything that is not the expected reply.
Signing is never attempted: anonymous and guest sessions have no key to sign with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, CLOSE, READ, WRITE = 0, 1, 3, 5, 6, 8, 9

STATUS_SUCCESS = 0x00000000
STATUS_PENDING = 0x00000103
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_NAMES = {
    0xC0000022: "access denied",
    0xC000006D: "logon failure",
    0xC00000CC: "bad network name",
    0xC0000034: "object name not found",
    0xC0000203: "user session deleted",
    0xC000015B: "logon type not granted",
    0xC0000072: "account disabled",
    0xC00000BB: "not supported",
}

SESSION_FLAG_IS_GUEST = 0x0001
SESSION_FLAG_IS_NULL = 0x0002
_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302)


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"0x{status:08x}")


def frame(message: bytes) -> bytes:
    """Prefix the NetBIOS session message header (type 0, 24-bit length)."""
    return b"\x00" + len(message).to_bytes(3, "big") + message


def frame_length(buf: bytes) -> int | None:
    """The total length of the first frame in ``buf`` (header included), or None while fewer
    than 4 bytes are in. A frame that is not a session message reads as length 4."""
    if len(buf) < 4:
        return None
    if buf[0] != 0:
        return 4
    return 4 + int.from_bytes(buf[1:4], "big")


def _header(command: int, message_id: int, session_id: int = 0, tree_id: int = 0) -> bytes:
    # CreditCharge 1, CreditRequest 64: plenty for the few requests of one probe.
    return (b"\xfeSMB" + struct.pack("<HHIHHIIQ", 64, 1, 0, command, 64, 0, 0, message_id)
            + struct.pack("<IIQ", 0xFEFF, tree_id, session_id) + b"\0" * 16)


def build_negotiate(message_id: int, client_guid: bytes) -> bytes:
    """NEGOTIATE offering 2.0.2 to 3.0.2 (no 3.1.1: its preauth hash buys nothing here)."""
    body = struct.pack("<HHHHI", 36, len(_DIALECTS), 1, 0, 0) + client_guid[:16].ljust(16, b"\0")
    body += b"\0" * 8 + b"".join(struct.pack("<H", d) for d in _DIALECTS)
    return frame(_header(NEGOTIATE, message_id) + body)


def build_session_setup(message_id: int, session_id: int, token: bytes) -> bytes:
    body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 64 + 24, len(token), 0) + token
    return frame(_header(SESSION_SETUP, message_id, session_id) + body)


def build_tree_connect(message_id: int, session_id: int, unc: str) -> bytes:
    path = unc.encode("utf-16-le")
    body = struct.pack("<HHHH", 9, 0, 64 + 8, len(path)) + path
    return frame(_header(TREE_CONNECT, message_id, session_id) + body)


def build_create_pipe(message_id: int, session_id: int, tree_id: int, name: str) -> bytes:
    """CREATE (open) the named pipe ``name`` on IPC$ for reading and writing."""
    raw = name.encode("utf-16-le")
    body = struct.pack(
        "<HBBIQQIIIIIHHII", 57, 0, 0, 2,  # impersonation
        0, 0, 0x0012019F,  # desired access: generic read/write on a pipe
        0, 7,  # attributes; share read|write|delete
        1, 0x40,  # FILE_OPEN; FILE_NON_DIRECTORY_FILE
        64 + 56, len(raw), 0, 0,
    ) + raw
    return frame(_header(CREATE, message_id, session_id, tree_id) + body)


def build_write(message_id: int, session_id: int, tree_id: int, file_id: bytes,
                data: bytes) -> bytes:
    body = struct.pack("<HHIQ", 49, 64 + 48, len(data), 0) + file_id
    body += struct.pack("<IIHHI", 0, 0, 0, 0, 0) + data
    return frame(_header(WRITE, message_id, session_id, tree_id) + body)


def build_read(message_id: int, session_id: int, tree_id: int, file_id: bytes,
               length: int) -> bytes:
    body = struct.pack("<HBBIQ", 49, 0, 0, length, 0) + file_id
    body += struct.pack("<IIIHH", 0, 0, 0, 0, 0) + b"\0"
    return frame(_header(READ, message_id, session_id, tree_id) + body)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMB2 reply: its header fields and the body after the 64-byte header."""

    command: int
    status: int
    flags: int
    message_id: int
    tree_id: int
    session_id: int
    body: bytes
    message: bytes  # the whole SMB2 message (offsets in bodies count from its start)


def parse_reply(data: bytes) -> Reply | None:
    """Parse one NetBIOS-framed SMB2 reply (sync or async header). None if it is not one."""
    try:
        r = Reader(data)
        if r.u8() != 0:
            return None
        msg = r.take(r.u24be())
        m = Reader(msg)
        if m.take(4) != b"\xfeSMB" or m.u16le() != 64:
            return None
        m.skip(2)
        status, command = m.u32le(), m.u16le()
        m.skip(2)
        flags = m.u32le()
        if not flags & 1:  # SMB2_FLAGS_SERVER_TO_REDIR: a request echoed back is no reply
            return None
        m.skip(4)
        message_id = m.take(8)
        if flags & 2:  # async: AsyncId in place of Reserved + TreeId
            m.skip(8)
            tree_id = 0
        else:
            m.skip(4)
            tree_id = m.u32le()
        session_id = m.take(8)
        m.skip(16)
        return Reply(command, status, flags, int.from_bytes(message_id, "little"), tree_id,
                     int.from_bytes(session_id, "little"), msg[64:], msg)
    except Truncated:
        return None


def _buffer(reply: Reply, offset: int, length: int) -> bytes:
    if offset + length > len(reply.message) or (offset < 64 and length):
        raise Truncated("buffer outside the message")
    return reply.message[offset : offset + length]


def negotiate_dialect(reply: Reply) -> str | None:
    """The dialect a NEGOTIATE reply chose ("2.1"), or None if it is not a valid one."""
    try:
        r = Reader(reply.body)
        if reply.command != NEGOTIATE or reply.status != 0 or r.u16le() != 65:
            return None
        r.skip(2)
        dialect = r.u16le()
    except Truncated:
        return None
    return {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2"}.get(dialect)


def session_setup_result(reply: Reply) -> tuple[int, bytes] | None:
    """(SessionFlags, security token) of a SESSION_SETUP reply; None if malformed."""
    try:
        r = Reader(reply.body)
        if reply.command != SESSION_SETUP or r.u16le() != 9:
            return None
        flags = r.u16le()
        offset, length = r.u16le(), r.u16le()
        return flags, _buffer(reply, offset, length)
    except Truncated:
        return None


def tree_connect_share_type(reply: Reply) -> int | None:
    """ShareType of a successful TREE_CONNECT reply (1 disk, 2 pipe, 3 print); else None."""
    try:
        r = Reader(reply.body)
        if reply.command != TREE_CONNECT or reply.status != 0 or r.u16le() != 16:
            return None
        return r.u8()
    except Truncated:
        return None


def create_file_id(reply: Reply) -> bytes | None:
    """The 16-byte FileId of a successful CREATE reply; else None."""
    try:
        r = Reader(reply.body)
        if reply.command != CREATE or reply.status != 0 or r.u16le() != 89:
            return None
        r.skip(62)
        return r.take(16)
    except Truncated:
        return None


def read_data(reply: Reply) -> bytes | None:
    """The data of a READ reply (success or buffer-overflow); else None."""
    try:
        r = Reader(reply.body)
        if reply.command != READ or reply.status not in (0, STATUS_BUFFER_OVERFLOW):
            return None
        if r.u16le() != 17:
            return None
        offset = r.u8()
        r.skip(1)
        length = r.u32le()
        return _buffer(reply, offset, length)
    except Truncated:
        return None
