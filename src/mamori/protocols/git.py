"""git:// (git daemon) request and the upload-pack reference advertisement (protocol v0).

Everything is pkt-lines: four hex digits giving the length (itself included), then the
payload; "0000" is a flush. We ask for ``git-upload-pack <path>`` and read only the
advertisement (the list of refs a clone would fetch from); a refused path comes back as one
"ERR ..." line. Pure: bytes in, records out; never raises on untrusted input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAX_REFS = 256
_REF = re.compile(rb"^([0-9a-f]{40}|[0-9a-f]{64}) ([^\x00\n]{1,1024})")


def pkt_line(payload: bytes) -> bytes:
    if len(payload) > 65516:
        raise ValueError("pkt-line payload too long")
    return f"{len(payload) + 4:04x}".encode() + payload



def build_upload_pack_request(path: str, host: str) -> bytes:
    """The daemon request for ``path`` (must start with "/" and hold no NUL or newline)."""
    if not path.startswith("/") or any(ch in path for ch in "\0\n"):
        raise ValueError("repository path must start with / and be one line")
    return pkt_line(b"git-upload-pack " + path.encode() + b"\0host=" + host.encode() + b"\0")


@dataclass(frozen=True, slots=True)
class Advertisement:
    refs: tuple[tuple[str, str], ...]  # (object id, ref name), capped at _MAX_REFS
    capabilities: tuple[str, ...]
    error: str | None  # the ERR line's text, when the daemon refused
    complete: bool  # the flush after the refs (or the ERR line) was seen
    ref_count: int  # refs seen, may exceed len(refs)


def _lines(data: bytes) -> tuple[list[bytes | None], bool] | None:
    """Split pkt-lines: payloads (None for a flush) and whether a flush ended them."""
    out: list[bytes | None] = []
    pos = 0
    while pos + 4 <= len(data):
        head = data[pos:pos + 4]
        if not re.fullmatch(rb"[0-9a-f]{4}", head):
            return None
        length = int(head, 16)
        if length == 0:
            out.append(None)
            return out, True
        if length < 4:
            return None
        if pos + length > len(data):
            break
        out.append(data[pos + 4:pos + length])
        pos += length
    return out, False


def parse_advertisement(data: bytes) -> Advertisement | None:
    """Read the daemon's answer; None when it is not pkt-lines of refs or an ERR."""
    split = _lines(data)
    if split is None:
        return None
    lines, flushed = split
    refs: list[tuple[str, str]] = []
    caps: tuple[str, ...] = ()
    count = 0
    for i, line in enumerate(lines):
        if line is None:
            break
        if i == 0 and line.startswith(b"ERR "):
            return Advertisement((), (), line[4:].decode("utf-8", "replace").strip()[:200],
                                 True, 0)
        if i == 0 and line.startswith(b"version "):
            continue
        head, _, tail = line.partition(b"\0")
        m = _REF.match(head)
        if m is None:
            return None
        if tail and not caps:
            caps = tuple(c.decode("ascii", "replace") for c in tail.split()[:64])
        name = m.group(2).decode("utf-8", "replace").strip()
        if name == "capabilities^{}":
            continue
        count += 1
        if len(refs) < _MAX_REFS:
            refs.append((m.group(1).decode(), name))
    if not lines:
        return None
    return Advertisement(tuple(refs), caps, None, flushed, count)


def advertisement_complete(data: bytes) -> bool:
    """True once the answer is whole (flush or ERR) or is not pkt-lines at all."""
    adv = parse_advertisement(data)
    if adv is not None:
        return adv.complete
    return len(data) >= 4 and _lines(data) is None
