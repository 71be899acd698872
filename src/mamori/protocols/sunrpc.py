"""ONC RPC (RFC 5531) over TCP record marking: portmapper GETPORT/DUMP (RFC 1833) and the
MOUNT protocol's EXPORT procedure (RFC 1813 appendix I), all in XDR.

Builders return whole records; parsers return None for anything that is not the expected
reply and cap every list a server can grow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mamori.protocols._wire import Reader, Truncated

PORTMAP, PORTMAP_VERSION = 100000, 2
MOUNT = 100005
PMAPPROC_GETPORT, PMAPPROC_DUMP = 3, 4
MOUNTPROC_EXPORT = 5
IPPROTO_TCP, IPPROTO_UDP = 6, 17
_CALL, _REPLY = 0, 1
_MSG_ACCEPTED, _SUCCESS = 0, 0
MAX_RECORD = 1 << 16
MAX_EXPORTS = 256
MAX_GROUPS = 64
MAX_MAPPINGS = 256
_MAX_STRING = 1024

PROGRAM_NAMES = {100000: "portmapper", 100003: "nfs", 100005: "mountd", 100021: "nlockmgr",
                 100024: "status", 100227: "nfs_acl"}


def record(payload: bytes) -> bytes:
    """One record-marking fragment, marked last (RFC 5531 section 11)."""
    return struct.pack(">I", 0x80000000 | len(payload)) + payload


def build_call(xid: int, program: int, version: int, procedure: int, args: bytes = b"") -> bytes:
    """A CALL with AUTH_NULL credentials and verifier, framed for TCP."""
    head = struct.pack(">IIIIII", xid, _CALL, 2, program, version, procedure)
    return record(head + b"\0" * 16 + args)


def build_getport(xid: int, program: int, version: int, protocol: int = IPPROTO_TCP) -> bytes:
    return build_call(xid, PORTMAP, PORTMAP_VERSION, PMAPPROC_GETPORT,
                      struct.pack(">IIII", program, version, protocol, 0))


def build_dump(xid: int) -> bytes:
    """PMAPPROC_DUMP (portmapper v2): the list of every registered program."""
    return build_call(xid, PORTMAP, PORTMAP_VERSION, PMAPPROC_DUMP)


def build_export(xid: int, version: int = 3) -> bytes:
    return build_call(xid, MOUNT, version, MOUNTPROC_EXPORT)


def record_complete(buf: bytes) -> bool:
    """True once the first fragment is whole, or its header announces more than we accept
    (the parse then fails): a reply of several fragments is not one we ask for."""
    if len(buf) < 4:
        return False
    length = int.from_bytes(buf[:4], "big") & 0x7FFFFFFF
    return length > MAX_RECORD or len(buf) >= 4 + length


def parse_reply(data: bytes, xid: int) -> bytes | None:
    """The result bytes of an accepted, successful REPLY to ``xid`` in one TCP record.

    Returns None for anything else (another xid, a denied or failed call, not RPC at all).
    Never raises.
    """
    try:
        r = Reader(data)
        mark = r.u32be()
        length = mark & 0x7FFFFFFF
        if not mark & 0x80000000 or length > MAX_RECORD:
            return None
        body = Reader(r.take(length))
        if body.u32be() != xid or body.u32be() != _REPLY or body.u32be() != _MSG_ACCEPTED:
            return None
        body.skip(4)  # verifier flavor
        verf_len = body.u32be()
        if verf_len > 400:
            return None
        body.skip((verf_len + 3) & ~3)
        if body.u32be() != _SUCCESS:
            return None
        return body.data[body.pos :]
    except Truncated:
        return None


_ACCEPT_STATS = {1: "program unavailable", 2: "program version mismatch",
                 3: "procedure unavailable", 4: "garbage arguments", 5: "system error"}
_AUTH_STATS = {1: "bad credentials", 2: "rejected credentials", 3: "bad verifier",
               4: "rejected verifier", 5: "too weak", 6: "invalid response verifier",
               7: "failed"}


def parse_refusal(data: bytes, xid: int) -> str | None:
    """Why a REPLY to ``xid`` in one TCP record refused the call ("denied: authentication
    error (too weak)", "accepted: procedure unavailable"); None for a successful reply or
    anything that is not a reply to ``xid``. Never raises."""
    try:
        r = Reader(data)
        mark = r.u32be()
        length = mark & 0x7FFFFFFF
        if not mark & 0x80000000 or length > MAX_RECORD:
            return None
        body = Reader(r.take(length))
        if body.u32be() != xid or body.u32be() != _REPLY:
            return None
        if body.u32be() != _MSG_ACCEPTED:
            if body.u32be() == 0:
                return "denied: RPC version mismatch"
            stat = body.u32be()
            return f"denied: authentication error ({_AUTH_STATS.get(stat, str(stat))})"
        body.skip(4)
        verf_len = body.u32be()
        if verf_len > 400:
            return None
        body.skip((verf_len + 3) & ~3)
        stat = body.u32be()
    except Truncated:
        return None
    return None if stat == _SUCCESS else f"accepted: {_ACCEPT_STATS.get(stat, str(stat))}"


def parse_getport(result: bytes) -> int | None:
    """The port of a GETPORT result (0: not registered); None if malformed."""
    try:
        port = Reader(result).u32be()
    except Truncated:
        return None
    return port if port <= 65535 else None


@dataclass(frozen=True, slots=True)
class Mapping:
    program: int
    version: int
    protocol: int
    port: int

    @property
    def name(self) -> str:
        return PROGRAM_NAMES.get(self.program, str(self.program))


def parse_dump(result: bytes) -> list[Mapping] | None:
    """The registrations of a DUMP result; None if malformed or longer than the cap."""
    out: list[Mapping] = []
    try:
        r = Reader(result)
        while r.u32be() == 1:
            if len(out) >= MAX_MAPPINGS:
                return None
            out.append(Mapping(r.u32be(), r.u32be(), r.u32be(), r.u32be()))
    except Truncated:
        return None
    return out


def _string(r: Reader) -> str:
    n = r.u32be()
    if n > _MAX_STRING:
        raise Truncated("XDR string too long")
    raw = r.take(n)
    r.skip(-n % 4)
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Export:
    path: str
    groups: tuple[str, ...]  # hosts/networks allowed; empty means everyone

    @property
    def to_everyone(self) -> bool:
        return not self.groups or any(g in ("*", "(everyone)", "0.0.0.0/0") for g in self.groups)


def parse_exports(result: bytes) -> list[Export] | None:
    """The export list of a MOUNTPROC_EXPORT result; None if malformed or over the caps."""
    out: list[Export] = []
    try:
        r = Reader(result)
        while r.u32be() == 1:
            if len(out) >= MAX_EXPORTS:
                return None
            path = _string(r)
            groups: list[str] = []
            while r.u32be() == 1:
                if len(groups) >= MAX_GROUPS:
                    return None
                groups.append(_string(r))
            out.append(Export(path, tuple(groups)))
    except Truncated:
        return None
    return out


def build_exports_result(exports: list[Export]) -> bytes:
    """XDR of an exportlist (for servers in tests, and round-trip tests of the parser)."""
    def xdr_string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack(">I", len(raw)) + raw + b"\0" * (-len(raw) % 4)

    out = b""
    for e in exports:
        out += struct.pack(">I", 1) + xdr_string(e.path)
        for g in e.groups:
            out += struct.pack(">I", 1) + xdr_string(g)
        out += struct.pack(">I", 0)
    return out + struct.pack(">I", 0)
