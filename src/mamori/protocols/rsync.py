"""rsync daemon protocol: greeting, module list, module access, and a protocol-29 file list.

The client side of "rsync rsync://host/module/" as far as listing goes. We announce protocol
29 on purpose: every daemon since rsync 2.6.4 still speaks it, and its file list has a fixed
layout (no varints, no negotiated checksum strings), so a small parser reads it exactly.
Pure: bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text
from mamori.protocols.md4 import md4

CLIENT_PROTOCOL = 29
_GREETING = re.compile(rb"^@RSYNCD: (\d{1,3})\.(\d{1,3})([^\n]*)\n")
_MAX_MODULES = 64
_MPLEX_BASE = 7
_MSG_DATA = 0

# File-list flags for protocol 29 (rsync flist.c / rsync.h).
_XMIT_TOP_DIR = 1 << 0
_XMIT_SAME_MODE = 1 << 1
_XMIT_EXTENDED_FLAGS = 1 << 2
_XMIT_SAME_NAME = 1 << 5
_XMIT_LONG_NAME = 1 << 6
_XMIT_SAME_TIME = 1 << 7
_MAX_NAME = 4096


@dataclass(frozen=True, slots=True)
class Greeting:
    major: int
    minor: int
    digests: tuple[str, ...]  # what protocol >= 31 daemons offer after the version
    size: int  # bytes of the greeting line


def parse_greeting(data: bytes) -> Greeting | None:
    """The daemon's first line "@RSYNCD: 31.0 sha512 ...\\n", or None. Never raises."""
    m = _GREETING.match(data)
    if m is None:
        return None
    digests = tuple(text(d, 32) for d in m.group(3).split()[:16])
    return Greeting(int(m.group(1)), int(m.group(2)), digests, m.end())


def build_hello() -> bytes:
    return f"@RSYNCD: {CLIENT_PROTOCOL}.0\n".encode()


def build_module_request(module: str) -> bytes:
    """The line that asks for one module (or "#list" for the module list)."""
    if any(ch in module for ch in "\r\n\0") or not module:
        raise ValueError("module name must be one non-empty line")
    return module.encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    comment: str


def parse_module_list(data: bytes) -> list[Module] | None:
    """Modules from the reply to "#list" (name, tab or spaces, comment), up to the line
    "@RSYNCD: EXIT". Returns None unless that terminating line arrived. Never raises."""
    modules: list[Module] = []
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line == b"@RSYNCD: EXIT":
            return modules
        if not line or line.startswith((b"@RSYNCD:", b"@ERROR")):
            continue
        if len(modules) >= _MAX_MODULES:
            continue
        name, _, comment = line.partition(b"\t")
        name = name.strip()
        if name and b" " not in name and len(name) <= 256:
            modules.append(Module(text(name), text(comment.strip())))
    return None


def module_list_complete(buf: bytes) -> bool:
    return b"@RSYNCD: EXIT\n" in buf or (b"@ERROR" in buf and buf.endswith(b"\n"))


@dataclass(frozen=True, slots=True)
class ModuleReply:
    status: str  # "ok", "auth-required", "error"
    detail: str  # the daemon's words after the status (error text, never the challenge)
    size: int  # bytes of the reply line


def parse_module_reply(data: bytes) -> ModuleReply | None:
    """The daemon's answer to a module request: "@RSYNCD: OK", "@RSYNCD: AUTHREQD <challenge>"
    or "@ERROR: ...". Leading MOTD lines are skipped. None until one of these arrives."""
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return None
        line = data[pos:end].rstrip(b"\r")
        pos = end + 1
        if line == b"@RSYNCD: OK":
            return ModuleReply("ok", "", pos)
        if line.startswith(b"@RSYNCD: AUTHREQD"):
            return ModuleReply("auth-required", "", pos)
        if line.startswith((b"@ERROR", b"@RSYNCD: EXIT")):
            return ModuleReply("error", text(line), pos)


def module_reply_complete(buf: bytes) -> bool:
    return parse_module_reply(buf) is not None


def build_list_request(module: str) -> bytes:
    """Server arguments for a non-recursive listing of the module's top directory (what
    "rsync --list-only rsync://host/module/" sends at protocol 29), then an empty filter
    list. "-d" keeps the daemon from walking the whole tree for us."""
    build_module_request(module)  # validates the name
    args = ["--server", "--sender", "-d", ".", f"{module}/"]
    return "".join(a + "\n" for a in args).encode() + b"\n" + b"\x00\x00\x00\x00"


def demultiplex(data: bytes) -> tuple[bytes, list[str], bool]:
    """Split the daemon's multiplexed stream (after the 4-byte checksum seed) into the data
    bytes, the daemon's messages (errors, warnings) and whether the last frame was whole."""
    out = bytearray()
    messages: list[str] = []
    r = Reader(data)
    try:
        while r.remaining:
            header = r.u32le()
            tag, length = (header >> 24) - _MPLEX_BASE, header & 0xFFFFFF
            if tag < 0:
                return bytes(out), messages, False
            body = r.take(length)
            if tag == _MSG_DATA:
                out += body
            elif len(messages) < 16:
                messages.append(text(body, 256).strip())
    except Truncated:
        return bytes(out), messages, False
    return bytes(out), messages, True


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    size: int
    mode: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000


@dataclass(frozen=True, slots=True)
class FileList:
    entries: tuple[FileEntry, ...]
    complete: bool  # the end-of-list marker arrived


def _read_longint(r: Reader) -> int:
    value = r.u32le()
    if value != 0xFFFFFFFF:
        return value
    lo, hi = r.u32le(), r.u32le()
    return lo | (hi << 32)


def parse_file_list(data: bytes, limit: int = 200) -> FileList | None:
    """Entries of a protocol-29 file list (demultiplexed data, after the checksum seed),
    as sent for a listing without -l/-D/-o/-g/-H (so no links, devices, owners or hard-link
    data follow a name). Stops at ``limit`` entries. Returns None when the bytes do not
    form a single valid entry. Never raises."""
    entries: list[FileEntry] = []
    r = Reader(data)
    last_name = b""
    mode = 0
    try:
        while len(entries) < limit:
            flags = r.u8()
            if flags == 0:
                return FileList(tuple(entries), True)
            if flags & _XMIT_EXTENDED_FLAGS:
                flags |= r.u8() << 8
            prefix = r.u8() if flags & _XMIT_SAME_NAME else 0
            suffix = r.u32le() if flags & _XMIT_LONG_NAME else r.u8()
            if prefix > len(last_name) or suffix > _MAX_NAME:
                raise Truncated("name compression out of range")
            name = last_name[:prefix] + r.take(suffix)
            size = _read_longint(r)
            if not flags & _XMIT_SAME_TIME:
                r.u32le()
            if not flags & _XMIT_SAME_MODE:
                mode = r.u32le()
            elif not entries:
                raise Truncated("first entry cannot reuse a mode")
            if not name or b"\0" in name or mode >> 16:
                raise Truncated("not a file-list entry")
            last_name = name
            entries.append(FileEntry(text(name, 256), size, mode))
    except Truncated:
        if not entries:
            return None
    return FileList(tuple(entries), False)


# --- upload (we are the sender, the daemon the receiver), protocol 29 ---------------------------

NDX_DONE = -1
_XMIT_SAME_UID = 1 << 3
_XMIT_SAME_GID = 1 << 4
ITEM_TRANSFER = 1 << 15
_ITEM_BASIS_TYPE_FOLLOWS = 1 << 11
_ITEM_XNAME_FOLLOWS = 1 << 12
_MAX_SUMS_BYTES = 1 << 20
_CHUNK = 32 * 1024
REGULAR_FILE = 0o100644


def build_receiver_args(module: str, *, delete_missing: bool = False) -> bytes:
    """Server arguments that make the daemon receive into the module's top directory, as
    "rsync FILE rsync://host/module/" sends them at protocol 29 (no -r, -l, -o, -g, -D: the
    file list then carries only name, size, time and mode). With ``delete_missing`` the
    daemon deletes each listed name that we mark missing (mode 0) and nothing else:
    "--delete-missing-args", the one rsync option whose deletions are limited to the names
    sent, unlike "--delete" which removes whatever a directory holds beyond the list."""
    build_module_request(module)  # validates the name
    args = ["--server"] + (["--delete-missing-args"] if delete_missing else []) + [
        ".", f"{module}/"]
    return "".join(a + "\n" for a in args).encode() + b"\n"


def build_file_list(name: str, size: int, mtime: int, mode: int) -> bytes:
    """A protocol-29 file list of one top-level entry, its end marker and the io_error word.
    ``mode`` 0 marks the name missing (with "--delete-missing-args": delete it)."""
    raw = name.encode()
    if not raw or len(raw) > 255 or b"/" in raw or b"\0" in raw or raw in (b".", b".."):
        raise ValueError("one plain file name of 1..255 bytes")
    if not 0 <= size < 1 << 31 or not 0 <= mtime < 1 << 31 or not 0 <= mode < 1 << 16:
        raise ValueError("size, time or mode out of range")
    return (bytes([_XMIT_SAME_UID | _XMIT_SAME_GID, len(raw)]) + raw
            + struct.pack("<iii", size, mtime, mode) + b"\x00" + struct.pack("<i", 0))


@dataclass(frozen=True, slots=True)
class Request:
    """What the daemon's generator sends the sender: a file index (or NDX_DONE at the end of a
    phase) with its item flags and block-checksum header, as the bytes the sender echoes."""

    ndx: int
    iflags: int
    echo: bytes  # index, flags, optional basis type / name, checksum header: sent back as is
    size: int  # bytes consumed from the data stream


def parse_request(data: bytes) -> Request | None:
    """The next generator request at the start of ``data`` (demultiplexed), or None until it
    is whole. Raises ValueError for what no rsync sends (a negative index other than
    NDX_DONE, a checksum header announcing more than 1 MiB of block sums)."""
    r = Reader(data)
    try:
        ndx = struct.unpack("<i", r.take(4))[0]
        if ndx == NDX_DONE:
            return Request(ndx, 0, data[:4], 4)
        if ndx < 0:
            raise ValueError(f"file index {ndx}")
        iflags = r.u16le()
        if iflags & _ITEM_BASIS_TYPE_FOLLOWS:
            r.u8()
        if iflags & _ITEM_XNAME_FOLLOWS:
            n = r.u8()
            if n & 0x80:
                n = (n & 0x7F) * 256 + r.u8()
            r.skip(n)
        count, _blength, s2length, _rem = struct.unpack("<iiii", r.take(16))
        if count < 0 or not 0 <= s2length <= 16 or count * (4 + s2length) > _MAX_SUMS_BYTES:
            raise ValueError(f"checksum header: {count} sums of {s2length} bytes")
        echo = data[:r.pos]
        r.skip(count * (4 + s2length))
    except Truncated:
        return None
    return Request(ndx, iflags, echo, r.pos)


def build_file_data(request: Request, payload: bytes, seed: int) -> bytes:
    """The sender's answer to a transfer request: the echoed request, ``payload`` as literal
    tokens, the end token, then the whole-file checksum (protocol 29: MD4 over the 4-byte
    little-endian checksum seed followed by the data)."""
    out = bytearray(request.echo)
    for off in range(0, len(payload), _CHUNK):
        chunk = payload[off:off + _CHUNK]
        out += struct.pack("<i", len(chunk)) + chunk
    out += struct.pack("<i", 0)
    out += md4(struct.pack("<I", seed & 0xFFFFFFFF) + payload)
    return bytes(out)


def build_done() -> bytes:
    return struct.pack("<i", NDX_DONE)


def parse_seed(data: bytes) -> int | None:
    """The 4-byte checksum seed the daemon sends after the server arguments (protocol < 30:
    no compatibility flags before it)."""
    return struct.unpack("<I", data[:4])[0] if len(data) >= 4 else None
