"""What every decoy persona is: a pure state machine from visitor bytes to replies and records.

A persona never touches a socket. The server hands it each chunk a visitor sends (already capped
by the per-connection read cap) and gets back a :class:`Step`: bytes to answer (always small and
fixed or bounded, never derived from running anything), records to turn into events, and whether
to close. ``finish`` is called once when the connection ends for any reason, so a request cut
short by a timeout, a reset or the read cap is still recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mamori.model.watch import EventType

__all__ = ["FIELD_LIMIT", "Persona", "Record", "Step", "clean"]

FIELD_LIMIT = 256  # characters a single recorded field keeps (usernames, paths, commands ...)


def clean(value: bytes | str, limit: int = FIELD_LIMIT) -> str:
    """A field value from visitor bytes: decoded leniently, control characters escaped, capped."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    out: list[str] = []
    size = 0
    for ch in text:
        piece = ch if ch.isprintable() else f"\\x{ord(ch) & 0xFF:02x}"
        if size + len(piece) > limit:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Record:
    """Something to record: the event type, its fields, and the raw bytes it came from."""

    type: EventType
    fields: Mapping[str, str] = field(default_factory=dict)
    data: bytes = b""


@dataclass(slots=True)
class Step:
    reply: bytes = b""
    records: list[Record] = field(default_factory=list)
    close: bool = False


class Persona:
    """Base class: keeps the first bytes a visitor sent so ``decoy.data`` is recorded once.

    Subclasses implement ``handle``; they call ``first_request`` when they have parsed the first
    request (with its fields) and may override ``greeting``.
    """

    name = "persona"
    FIRST_KEEP = 640  # bytes of the first request kept for its excerpt (512 characters)

    def __init__(self) -> None:
        self._first = bytearray()
        self._data_recorded = False

    def greeting(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> Step:
        """Take one chunk the visitor sent; what to answer, record, and whether to close."""
        self.keep(data)
        return self.handle(data)

    def handle(self, data: bytes) -> Step:  # pragma: no cover - every persona overrides it
        raise NotImplementedError

    def finish(self) -> list[Record]:
        """Records still owed when the connection ends (an unfinished first request)."""
        if not self._data_recorded and self._first:
            return [self.first_request({"complete": "no"})]
        return []

    def keep(self, data: bytes) -> None:
        """Remember the first bytes (until the first request is recorded)."""
        if not self._data_recorded and len(self._first) < self.FIRST_KEEP:
            self._first += data[: self.FIRST_KEEP - len(self._first)]

    def first_request(self, fields: Mapping[str, str], raw: bytes | None = None) -> Record:
        """The ``decoy.data`` record for the first request (once per connection)."""
        self._data_recorded = True
        body = bytes(self._first) if raw is None else raw
        return Record(EventType.DECOY_DATA, {"persona": self.name, **fields}, body)

    @property
    def data_recorded(self) -> bool:
        return self._data_recorded
