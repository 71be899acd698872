"""journald records as ``journalctl -o json`` prints them (one JSON object per line).

Pure. ``decode_record`` turns one line into a dict (None for anything that is not a JSON
object); ``parse_record`` picks the sshd or kernel message out of it and hands it to the
auth or firewall parser, with the record's own time (``__REALTIME_TIMESTAMP``, microseconds
since the epoch). journald stores non-UTF-8 messages as arrays of byte values; those are
decoded with replacement characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mamori.model.watch import Event
from mamori.watch.logs import auth, firewall

MAX_RECORD = 1 << 20  # characters of one JSON line that are looked at


def decode_record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{") or len(line) > MAX_RECORD:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def field_text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(v, int) and 0 <= v <= 255 for v in value):
            return bytes(value).decode("utf-8", "replace")
        first = value[0] if value else None  # a field set twice: journald lists both
        return first if isinstance(first, str) else None
    return None


def record_time(record: Mapping[str, Any], now: datetime) -> datetime:
    raw = field_text(record, "__REALTIME_TIMESTAMP") or field_text(
        record, "_SOURCE_REALTIME_TIMESTAMP"
    )
    if raw and raw.isdigit():
        try:
            return datetime.fromtimestamp(int(raw) / 1_000_000, UTC)
        except (OverflowError, OSError, ValueError):
            return now
    return now


def parse_record(
    record: Mapping[str, Any], kind: str, *, source: str, now: datetime | None = None
) -> Event | None:
    """``kind`` is ``journald-sshd`` or ``journald-kernel``."""
    now = now or datetime.now(UTC)
    message = field_text(record, "MESSAGE")
    if message is None:
        return None
    time = record_time(record, now)
    if kind == "journald-sshd":
        ident = field_text(record, "SYSLOG_IDENTIFIER") or field_text(record, "_COMM")
        if ident is not None and not auth.is_sshd(ident):
            return None
        pid = field_text(record, "SYSLOG_PID") or field_text(record, "_PID")
        return auth.parse_message(message, time=time, source=source, pid=pid)
    if kind == "journald-kernel":
        transport = field_text(record, "_TRANSPORT")
        ident = field_text(record, "SYSLOG_IDENTIFIER")
        if transport != "kernel" and ident != "kernel":
            return None
        return firewall.parse_message(message, time=time, source=source)
    raise ValueError(f"not a journald kind: {kind}")


def parse(
    line: str, kind: str, *, source: str, now: datetime | None = None
) -> Event | None:
    record = decode_record(line)
    if record is None:
        return None
    return parse_record(record, kind, source=source, now=now)
