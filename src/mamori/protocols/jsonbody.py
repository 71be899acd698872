"""JSON bodies of HTTP APIs (Elasticsearch, CouchDB, Docker): parsed without surprises.

Bodies are already capped by the read; these helpers add what ``json.loads`` lacks for
untrusted input: no exception escapes, nesting depth is bounded, and a JSON array cut off
by the byte cap still yields the elements that arrived whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MAX_DEPTH = 32
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _depth(raw: bytes) -> int:
    """The deepest bracket nesting outside strings (cheap, so ``json`` never recurses far)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _text(body: bytes) -> str | None:
    if _depth(body) > _MAX_DEPTH:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _skip(raw: str, pos: int) -> int:
    match = _SPACE.match(raw, pos)
    return match.end() if match else pos


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not exactly one. Never raises."""
    raw = _text(body)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def json_array_prefix(body: bytes, limit: int = 1000) -> tuple[list[Any], bool] | None:
    """The elements of a JSON array body that arrived whole, at most ``limit`` of them, and
    whether the array was complete (closed by ``]`` with nothing after it).

    None when the body does not start a JSON array. Never raises.
    """
    raw = _text(body)
    if raw is None:
        # A cap can cut a multi-byte character: keep the bytes that decode.
        raw = body.decode("utf-8", "ignore") if _depth(body) <= _MAX_DEPTH else None
        if raw is None:
            return None
    pos = _skip(raw, 0)
    if raw[pos : pos + 1] != "[":
        return None
    pos += 1
    items: list[Any] = []
    while len(items) < limit:
        pos = _skip(raw, pos)
        if raw[pos : pos + 1] == "]":
            return items, not raw[pos + 1 :].strip()
        try:
            value, pos = _DECODER.raw_decode(raw, pos)
        except (ValueError, RecursionError):
            return items, False
        items.append(value)
        pos = _skip(raw, pos)
        if raw[pos : pos + 1] == ",":
            pos += 1
        elif raw[pos : pos + 1] != "]":
            return items, False
    return items, False
