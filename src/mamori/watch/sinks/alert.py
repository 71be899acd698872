"""What the router hands a sink, and the shapes sinks write (pure: no I/O).

An :class:`Alert` carries an :class:`~mamori.model.watch.Event`, an
:class:`~mamori.model.watch.Incident` (``opened``: a new incident, else an update), or a
:class:`Notice` — the router's own word (alerts suppressed by a rate limit, alerts dropped
because a sink could not keep up, a source blocked).

JSON shapes (one object per JSON line, also the webhook body):

* events: ``event_to_dict`` — schema ``mamori.event/1`` (see model/watch.py);
* incidents: :func:`incident_to_dict` — schema ``mamori.incident/1``;
* notices: :func:`notice_to_dict` — schema ``mamori.notice/1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mamori.model.watch import Danger, Event, Incident, event_to_dict, excerpt

__all__ = [
    "INCIDENT_SCHEMA",
    "NOTICE_SCHEMA",
    "Alert",
    "Notice",
    "alert_danger",
    "alert_headline",
    "alert_line",
    "alert_src",
    "alert_to_dict",
    "alert_type",
    "incident_to_dict",
    "notice_to_dict",
]

INCIDENT_SCHEMA = "mamori.incident/1"
NOTICE_SCHEMA = "mamori.notice/1"
_FIELD_LIMIT = 120  # characters of one field value in a one-line alert
_LINE_LIMIT = 400


@dataclass(frozen=True, slots=True)
class Notice:
    """The router's own message. ``kind``: ``suppressed`` (a rate limit held back ``count``
    alerts), ``dropped`` (a sink's queue was full), ``blocked`` / ``block_failed``."""

    time: datetime
    kind: str
    text: str
    src: str | None = None
    count: int = 0
    danger: Danger = Danger.INFO


@dataclass(frozen=True, slots=True)
class Alert:
    item: Event | Incident | Notice
    opened: bool = False  # incidents: True when this is the incident's first alert


def alert_type(item: Event | Incident | Notice) -> str:
    """The word a sink's ``types`` filter matches: the event type, ``incident`` or
    ``block`` (block notices); other notices are ``notice``."""
    if isinstance(item, Event):
        return str(item.type)
    if isinstance(item, Incident):
        return "incident"
    return "block" if item.kind.startswith("block") else "notice"


def alert_src(item: Event | Incident | Notice) -> str | None:
    return item.src


def alert_danger(item: Event | Incident | Notice) -> Danger:
    return item.danger


def alert_time(item: Event | Incident | Notice) -> datetime:
    return item.last_seen if isinstance(item, Incident) else item.time


def _clean(text: str, limit: int = _FIELD_LIMIT) -> str:
    # Field values came from the network: escape control bytes so they cannot drive a
    # terminal or split a syslog line, and keep them short.
    return excerpt(text, limit)


def _endpoint(host: str | None, port: int | None) -> str:
    if host is None:
        return "?"
    shown = f"[{host}]" if ":" in host and port is not None else host
    return f"{shown}:{port}" if port is not None else shown


def _event_detail(event: Event) -> str:
    f = event.fields
    parts: list[str] = []
    if "method" in f or "path" in f:
        parts.append(f"{f.get('method', '')} {f.get('path', '')}".strip())
        if "status" in f:
            parts.append(f"-> {f['status']}")
    if "username" in f:
        parts.append(f"user={f['username']}")
    if "password" in f:
        parts.append(f"password={f['password']}")
    if "command" in f:
        parts.append(f"command={f['command']}")
    for key in ("service", "failures", "ports", "technique", "flags", "reason", "dropped"):
        if key in f:
            parts.append(f"{key}={f[key]}")
    text = " ".join(_clean(p) for p in parts)
    if not text and event.excerpt:
        text = f'"{_clean(event.excerpt)}"'
    return text


def alert_headline(item: Event | Incident | Notice, *, opened: bool = False) -> str:
    """One short line without the time: what an e-mail subject or syslog MSG says."""
    if isinstance(item, Notice):
        return _clean(item.text, _LINE_LIMIT)
    if isinstance(item, Incident):
        state = "new incident" if opened else "incident update"
        span = f"{item.first_seen:%H:%M:%S}-{item.last_seen:%H:%M:%S}Z"
        line = (f"{item.danger.upper()} {state} {_clean(item.kind)} from {_clean(item.src)}: "
                f"{item.count} event(s) {span}")
        if item.signatures:
            line += f" [{', '.join(_clean(s) for s in item.signatures[:5])}]"
        if item.examples:
            line += f' e.g. "{_clean(item.examples[0], 80)}"'
        return line
    where = f"{_endpoint(item.src, item.src_port)} -> {_endpoint(item.dst, item.dst_port)}"
    line = f"{item.danger.upper()} {item.type} {where}"
    detail = _event_detail(item)
    if detail:
        line += f" {detail}"
    if item.signatures:
        line += f" [{', '.join(_clean(s) for s in item.signatures[:5])}]"
    return line[:_LINE_LIMIT]


def alert_line(alert: Alert) -> str:
    """One human line: ``2024-05-01 12:00:03Z HIGH http.request 198.51.100.7:4711 -> ...``."""
    stamp = alert_time(alert.item).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    label = "NOTICE " if isinstance(alert.item, Notice) else ""
    return f"{stamp} {label}{alert_headline(alert.item, opened=alert.opened)}"


def incident_to_dict(incident: Incident, *, opened: bool = False) -> dict[str, Any]:
    """The JSON shape of an incident alert (schema ``mamori.incident/1``)."""
    return {
        "schema": INCIDENT_SCHEMA,
        "id": incident.id,
        "opened": opened,
        "src": incident.src,
        "kind": incident.kind,
        "danger": str(incident.danger),
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "count": incident.count,
        "types": list(incident.types),
        "signatures": list(incident.signatures),
        "examples": list(incident.examples),
    }


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """The JSON shape of a router notice (schema ``mamori.notice/1``)."""
    return {
        "schema": NOTICE_SCHEMA,
        "kind": notice.kind,
        "time": notice.time.isoformat(),
        "text": notice.text,
        "src": notice.src,
        "count": notice.count,
        "danger": str(notice.danger),
    }


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    item = alert.item
    if isinstance(item, Event):
        return event_to_dict(item)
    if isinstance(item, Incident):
        return incident_to_dict(item, opened=alert.opened)
    return notice_to_dict(item)
