"""The store's side of ``mamori watch``: events and incidents, written in batches, read back
with filters.

Writes go through :func:`write_batch`: the incidents touched since the last batch are inserted
or updated, then every event of the batch is inserted with one multi-row INSERT, all in one
transaction (a crash loses the batch in flight, never half of it). Text that came off the
wire is stored with NUL escaped (PostgreSQL text cannot hold it); ``fields`` and
``signatures`` are stored as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Select, bindparam, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import EventRow, IncidentRow
from mamori.store.store import Store

__all__ = [
    "EventQuery",
    "IncidentStatus",
    "StoredEvent",
    "StoredIncident",
    "add_events",
    "count_events",
    "iter_events",
    "list_events",
    "list_incidents",
    "save_incidents",
    "write_batch",
]

IncidentStatus = Literal["open", "closed"]
# Examples and lists an incident keeps are bounded by the grouper; this is the store's backstop.
_MAX_LIST = 64
_MAX_TEXT = 4096


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back: its row id and the incident it was folded into (if any)."""

    id: int
    event: Event
    incident_id: int | None


@dataclass(frozen=True, slots=True)
class StoredIncident:
    incident: Incident  # ``incident.id`` is set
    status: IncidentStatus


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters shared by ``list_events`` and ``list_incidents``.

    ``types``: exact type codes (events) or kinds (incidents); a code ending in ``*`` matches
    by prefix (``decoy.*``). ``since``: events at or after; incidents last seen at or after.
    ``limit``: the newest ``limit`` rows, returned oldest first.
    """

    since: datetime | None = None
    types: tuple[str, ...] = ()
    src: str | None = None
    min_danger: Danger | None = None
    limit: int | None = None
    incident_id: int | None = None  # events only


def _no_nul(value: str) -> str:
    return value.replace("\x00", "\\x00")


def _opt(value: str | None) -> str | None:
    return None if value is None else _no_nul(value)


def _event_values(event: Event, incident_id: int | None) -> dict[str, Any]:
    return {
        "time": event.time,
        "type": str(event.type),
        "source": _no_nul(event.source),
        "src": _opt(event.src),
        "src_port": event.src_port,
        "dst": _opt(event.dst),
        "dst_port": event.dst_port,
        "proto": _opt(event.proto),
        "danger": str(event.danger),
        # json.dumps escapes NUL and control characters, so the text is always storable.
        "signatures": json.dumps(list(event.signatures)),
        "fields": json.dumps({str(k): str(v) for k, v in event.fields.items()}),
        "excerpt": _no_nul(event.excerpt),
        "incident_id": incident_id,
    }


def _bounded(items: Sequence[str]) -> list[str]:
    return [_no_nul(str(s))[:_MAX_TEXT] for s in list(items)[:_MAX_LIST]]


def _incident_values(incident: Incident, status: IncidentStatus) -> dict[str, Any]:
    return {
        "src": _no_nul(incident.src),
        "kind": _no_nul(incident.kind),
        "danger": str(incident.danger),
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "count": incident.count,
        "types": _bounded(incident.types),
        "signatures": _bounded(incident.signatures),
        "examples": _bounded(incident.examples),
        "status": status,
    }


@contextmanager
def _tx(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


@contextmanager
def _read(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def _save_incidents(
    conn: Connection, incidents: Sequence[tuple[Incident, IncidentStatus]]
) -> list[int]:
    """Insert the new incidents and update the known ones, each group in one statement
    (many rows); returns the ids in the order given."""
    ids: list[int | None] = [inc.id for inc, _ in incidents]
    new = [i for i, (inc, _) in enumerate(incidents) if inc.id is None]
    if new:
        rows = [_incident_values(*incidents[i]) for i in new]
        adding = insert(IncidentRow).returning(IncidentRow.id, sort_by_parameter_order=True)
        got = [int(row[0]) for row in conn.execute(adding, rows)]
        if len(got) != len(new):
            raise StoreError("the database did not return the new incidents' ids")
        for i, number in zip(new, got, strict=True):
            ids[i] = number
    known = [(inc, status) for inc, status in incidents if inc.id is not None]
    if known:
        changing = (
            update(IncidentRow)
            .where(IncidentRow.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _INCIDENT_COLUMNS})
        )
        params = []
        for inc, status in known:
            values = _incident_values(inc, status)
            params.append({"b_id": inc.id, **{f"b_{k}": v for k, v in values.items()}})
        done = conn.execute(changing, params)
        if done.rowcount != len(known):
            missing = _missing_ids(conn, [inc.id for inc, _ in known if inc.id is not None])
            raise StoreError(f"no incident with id {', '.join(map(str, missing))} to update")
    return [int(i) for i in ids if i is not None]


_INCIDENT_COLUMNS = ("src", "kind", "danger", "first_seen", "last_seen", "count", "types",
                     "signatures", "examples", "status")


def _missing_ids(conn: Connection, wanted: list[int]) -> list[int]:
    found = set(conn.execute(select(IncidentRow.id).where(IncidentRow.id.in_(wanted))).scalars())
    return [i for i in wanted if i not in found]


def write_batch(
    store: Store,
    incidents: Sequence[tuple[Incident, IncidentStatus]],
    events: Sequence[tuple[Event, int | None]],
) -> list[int]:
    """Insert or update ``incidents`` (an ``Incident`` without ``id`` is new), then insert
    ``events``, all in one transaction. Each event comes with the position in ``incidents`` of
    the incident it belongs to (or None). Returns the incidents' ids, in order.

    Raises ``StoreError`` when the write fails; then nothing of the batch is stored.
    """
    with _tx(store) as conn:
        ids = _save_incidents(conn, incidents)
        rows = []
        for event, ref in events:
            if ref is not None and not 0 <= ref < len(ids):
                raise StoreError(f"event refers to incident #{ref} not in the batch")
            rows.append(_event_values(event, None if ref is None else ids[ref]))
        if rows:
            conn.execute(insert(EventRow), rows)
    return ids


def add_events(
    store: Store, events: Sequence[Event], incident_ids: Sequence[int | None] | None = None
) -> int:
    """Insert ``events`` (optionally each with an incident id) in one transaction; returns how
    many were stored. Raises ``StoreError`` when the write fails (then none is stored)."""
    if incident_ids is not None and len(incident_ids) != len(events):
        raise ValueError("incident_ids must match events one to one")
    ids = incident_ids if incident_ids is not None else [None] * len(events)
    if not events:
        return 0
    with _tx(store) as conn:
        rows = [_event_values(e, i) for e, i in zip(events, ids, strict=True)]
        conn.execute(insert(EventRow), rows)
    return len(events)


def save_incidents(
    store: Store, incidents: Sequence[tuple[Incident, IncidentStatus]]
) -> list[int]:
    """Insert new incidents (``id`` None) and update known ones; returns their ids in order."""
    with _tx(store) as conn:
        return _save_incidents(conn, incidents)


def _danger_at_least(minimum: Danger) -> list[str]:
    return [d.value for d in Danger if d.rank >= minimum.rank]


def _type_clause(column: Any, types: Sequence[str]) -> Any:
    from sqlalchemy import or_

    exact = [t for t in types if not t.endswith("*")]
    clauses = [column.in_(exact)] if exact else []
    clauses += [column.startswith(t[:-1], autoescape=True) for t in types if t.endswith("*")]
    return or_(*clauses)


def _event_filters(query: Select[Any], q: EventQuery) -> Select[Any]:
    if q.since is not None:
        query = query.where(EventRow.time >= q.since)
    if q.types:
        query = query.where(_type_clause(EventRow.type, q.types))
    if q.src is not None:
        query = query.where(EventRow.src == q.src)
    if q.min_danger is not None:
        query = query.where(EventRow.danger.in_(_danger_at_least(q.min_danger)))
    if q.incident_id is not None:
        query = query.where(EventRow.incident_id == q.incident_id)
    return query


def _event_from_row(row: Any) -> StoredEvent:
    fields = json.loads(row.fields) if row.fields else {}
    return StoredEvent(
        id=int(row.id),
        incident_id=row.incident_id,
        event=Event(
            time=row.time,
            type=EventType(row.type),
            source=row.source,
            src=row.src,
            src_port=row.src_port,
            dst=row.dst,
            dst_port=row.dst_port,
            proto=row.proto,
            danger=Danger(row.danger),
            signatures=tuple(json.loads(row.signatures) if row.signatures else ()),
            fields={str(k): str(v) for k, v in fields.items()},
            excerpt=row.excerpt,
        ),
    )


def list_events(store: Store, q: EventQuery = EventQuery()) -> list[StoredEvent]:
    """Events matching ``q``: the newest ``q.limit`` of them, oldest first.

    Raises ``StoreError`` on database failure.
    """
    query = _event_filters(select(EventRow), q).order_by(EventRow.time.desc(), EventRow.id.desc())
    if q.limit is not None:
        query = query.limit(q.limit)
    with _read(store) as conn:
        rows = conn.execute(query).all()
    return [_event_from_row(r) for r in reversed(rows)]


def iter_events(store: Store, q: EventQuery = EventQuery(), page: int = 5000
                ) -> Iterator[StoredEvent]:
    """Every event matching ``q`` (``q.limit`` ignored), oldest first, read ``page`` rows at a
    time (bounded memory however many there are). Raises ``StoreError``."""
    after: tuple[datetime, int] | None = None
    while True:
        query = _event_filters(select(EventRow), q)
        if after is not None:
            when, last_id = after
            query = query.where(
                (EventRow.time > when) | ((EventRow.time == when) & (EventRow.id > last_id))
            )
        query = query.order_by(EventRow.time, EventRow.id).limit(page)
        with _read(store) as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield _event_from_row(row)
        if len(rows) < page:
            return
        after = (rows[-1].time, int(rows[-1].id))


def count_events(store: Store, q: EventQuery = EventQuery()) -> int:
    """How many events match ``q`` (``q.limit`` ignored)."""
    query = _event_filters(select(func.count()).select_from(EventRow), q)
    with _read(store) as conn:
        return int(conn.execute(query).scalar_one())


def _incident_from_row(row: Any) -> StoredIncident:
    status: IncidentStatus = "closed" if row.status == "closed" else "open"
    return StoredIncident(
        incident=Incident(
            id=int(row.id),
            src=row.src,
            kind=row.kind,
            danger=Danger(row.danger),
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            count=int(row.count),
            types=tuple(row.types or ()),
            signatures=tuple(row.signatures or ()),
            examples=tuple(row.examples or ()),
        ),
        status=status,
    )


def list_incidents(store: Store, q: EventQuery = EventQuery()) -> list[StoredIncident]:
    """Incidents matching ``q`` (``types`` filters the kind; ``since`` the last sighting): the
    ``q.limit`` most recently active, least recent first. Raises ``StoreError``."""
    query = select(IncidentRow)
    if q.since is not None:
        query = query.where(IncidentRow.last_seen >= q.since)
    if q.types:
        query = query.where(_type_clause(IncidentRow.kind, q.types))
    if q.src is not None:
        query = query.where(IncidentRow.src == q.src)
    if q.min_danger is not None:
        query = query.where(IncidentRow.danger.in_(_danger_at_least(q.min_danger)))
    query = query.order_by(IncidentRow.last_seen.desc(), IncidentRow.id.desc())
    if q.limit is not None:
        query = query.limit(q.limit)
    with _read(store) as conn:
        rows = conn.execute(query).all()
    return [_incident_from_row(r) for r in reversed(rows)]
