"""rsync daemon protocol: greeting, module list, module access, and a protocol-29 file list.

The client side of "rsync rsync://host/module/" as far as listing goes. We announce protocol
29 on purpose: every daemon since rsync 2.6.4 still speaks it, and its file list has a fixed
layout (no varints, no negotiated checksum strings), so a small parser reads it exactly.
Pure: bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated, text

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


def build_push_request(module: str) -> bytes:
    """Server arguments for an upload into the module's top directory (what "rsync -r SRC
    rsync://host/module/" sends: the daemon becomes the receiver). Nothing follows them: a
    read-only module refuses right after its checksum seed, a writable one waits for a file
    list that we never send."""
    build_module_request(module)  # validates the name
    args = ["--server", "-r", ".", f"{module}/"]
    return "".join(a + "\n" for a in args).encode() + b"\n"
