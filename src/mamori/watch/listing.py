"""`mamori events` and `mamori incidents` as text: a table for people, or one JSON document
(``mamori.events/1``, ``mamori.incidents/1``; docs/schema/watch-*-v1.json). Pure rendering of
stored records; visitor-controlled text is escaped and bounded before it reaches a table."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mamori.model.watch import event_to_dict, excerpt
from mamori.watch.sinks.alert import incident_to_dict

if TYPE_CHECKING:
    from mamori.store.watch import StoredEvent, StoredIncident

EVENTS_SCHEMA = "mamori.events/1"
INCIDENTS_SCHEMA = "mamori.incidents/1"


def event_json(stored: StoredEvent) -> dict[str, Any]:
    """One stored event: the ``mamori.event/1`` shape with its ``id`` and ``incident_id``."""
    data = event_to_dict(stored.event, event_id=stored.id)
    data["incident_id"] = stored.incident_id
    return data


def incident_json(stored: StoredIncident) -> dict[str, Any]:
    """One stored incident: the ``mamori.incident/1`` alert shape (without ``opened``) and
    its ``status``."""
    data = incident_to_dict(stored.incident)
    data.pop("opened", None)
    data["status"] = stored.status
    return data


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clean(value: object, limit: int = 60) -> Any:
    return Text(excerpt(str(value), limit))


def _table(title: str, columns: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return empty
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False,
                  box=None, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None, markup=False,
            highlight=False).print(table)
    return out.getvalue()


def render_events(events: list[StoredEvent], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"schema": EVENTS_SCHEMA, "count": len(events),
                           "events": [event_json(e) for e in events]},
                          indent=2, ensure_ascii=False)
    rows = []
    for stored in events:
        e = stored.event
        detail = e.excerpt or " ".join(f"{k}={v}" for k, v in e.fields.items())
        rows.append([
            _clean(stored.id), _clean(_stamp(e.time)), _clean(e.type), _clean(e.danger),
            _clean(f"{e.src or '-'}" + (f":{e.src_port}" if e.src_port else "")),
            _clean(f"{e.dst_port}/{e.proto}" if e.dst_port is not None else (e.proto or "-")),
            _clean(",".join(e.signatures) or "-", 40), _clean(detail, 70),
        ])
    return _table(f"{len(events)} event(s)",
                  ["id", "time", "type", "danger", "from", "to", "signatures", "what"],
                  rows, "no events\n")


def render_incidents(incidents: list[StoredIncident], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"schema": INCIDENTS_SCHEMA, "count": len(incidents),
                           "incidents": [incident_json(i) for i in incidents]},
                          indent=2, ensure_ascii=False)
    rows = []
    for stored in incidents:
        i = stored.incident
        rows.append([
            _clean(i.id), _clean(i.kind, 30), _clean(i.danger), _clean(i.src, 40),
            _clean(_stamp(i.first_seen)), _clean(_stamp(i.last_seen)), _clean(i.count),
            _clean(stored.status), _clean(i.examples[0] if i.examples else "-", 60),
        ])
    return _table(f"{len(incidents)} incident(s)",
                  ["id", "kind", "danger", "from", "first seen", "last seen", "events",
                   "status", "example"], rows, "no incidents\n")


# -- mamori events / incidents ----------------------------------------------------------------
