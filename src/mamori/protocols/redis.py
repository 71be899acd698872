"""Redis RESP2: build commands, parse one reply (bounded depth and size), read INFO fields."""

from __future__ import annotations

from mamori.protocols._wire import Truncated

RespValue = str | int | bytes | None | list["RespValue"]

_MAX_DEPTH = 4
_MAX_ITEMS = 1024
_MAX_BULK = 1 << 20


class RespError(str):
    """An error reply ("-ERR ..."), kept apart from simple strings."""

    __slots__ = ()


def build_command(*args: str) -> bytes:
    """A RESP array of bulk strings, as redis-cli sends commands."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\r\n", pos, pos + 65536)
    if end < 0:
        raise Truncated("no CRLF")
    return data[pos:end], end + 2


def _int(raw: bytes) -> int:
    body = raw[1:] if raw[:1] == b"-" else raw
    if not body.isdigit() or len(body) > 19:
        raise Truncated("bad integer")
    return int(raw)


def _value(data: bytes, pos: int, depth: int) -> tuple[RespValue, int]:
    if pos >= len(data):
        raise Truncated("empty")
    kind = data[pos : pos + 1]
    line, nxt = _line(data, pos + 1)
    if kind == b"+":
        return line.decode("utf-8", "replace"), nxt
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), nxt
    if kind == b":":
        return _int(line), nxt
    if kind == b"$":
        size = _int(line)
        if size == -1:
            return None, nxt
        if size < 0 or size > _MAX_BULK or data[nxt + size : nxt + size + 2] != b"\r\n":
            raise Truncated("bad bulk string")
        return data[nxt : nxt + size], nxt + size + 2
    if kind == b"*":
        count = _int(line)
        if count == -1:
            return None, nxt
        if count < 0 or count > _MAX_ITEMS or depth >= _MAX_DEPTH:
            raise Truncated("bad array")
        items: list[RespValue] = []
        for _ in range(count):
            item, nxt = _value(data, nxt, depth + 1)
            items.append(item)
        return items, nxt
    raise Truncated("unknown type byte")


def parse_reply(data: bytes) -> tuple[RespValue, int] | None:
    """Parse one RESP2 reply at the start of ``data``.

    Returns (value, bytes consumed); error replies come back as ``RespError``. Returns None
    when the bytes are not a complete, well-formed reply. Never raises.
    """
    try:
        return _value(data, 0, 0)
    except (Truncated, ValueError):
        return None


def reply_complete(buf: bytes) -> bool:
    """True once one whole reply is in, or when the first byte cannot start a RESP reply."""
    if not buf:
        return False
    if buf[:1] not in (b"+", b"-", b":", b"$", b"*"):
        return True
    return parse_reply(buf) is not None


def info_fields(info: bytes) -> dict[str, str]:
    """The ``key:value`` lines of an INFO reply (sections and comments skipped)."""
    out: dict[str, str] = {}
    for line in info.splitlines()[:512]:
        if line.startswith(b"#") or b":" not in line:
            continue
        key, _, value = line.partition(b":")
        out[key.decode("ascii", "replace")[:64]] = value.decode("utf-8", "replace")[:256]
    return out
