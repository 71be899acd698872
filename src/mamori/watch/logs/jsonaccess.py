"""JSON access logs: Caddy (``log { format json }``) and Traefik (``accessLog.format=json``).
Pure and bounded (one line, as the follower cut it).

Caddy writes one object per request: ``{"logger": "http.log.access…", "msg": "handled
request", "ts": 1733628000.1, "request": {"client_ip", "remote_ip", "remote_port", "proto",
"method", "host", "uri", "headers": {"User-Agent": [...]}}, "status": 404, "size": 0}``.
Traefik (its documentation's field names): ``ClientHost``, ``ClientPort``,
``ClientUsername``, ``RequestMethod``, ``RequestPath`` (with the query), ``RequestProtocol``,
``RequestHost``, ``DownstreamStatus``, ``DownstreamContentSize``, ``StartUTC``, and the
request headers it keeps as ``request_User-Agent`` / ``request_Referer``.

Both become the same ``http.request`` event as a combined-format line (fields ``method``,
``url``, ``path``, ``query``, ``protocol``, ``status``, ``bytes``, ``user_agent``,
``referer``, ``user``, ``vhost``), so the signatures and detectors see them alike; ``format``
says which log it was.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import fast_event, iso_time, port

__all__ = ["parse_json"]

MAX_FIELD = 8192


def _s(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        return value[:MAX_FIELD]
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0][:MAX_FIELD]  # Caddy keeps each header as a list of values
    return ""


def _event(*, time: datetime, source: str, src: str, sport: str, method: str, target: str,
           protocol: str, status: str, size: str, agent: str, referer: str, user: str,
           host: str, fmt: str) -> Event:
    fields: dict[str, str] = {"status": status, "method": method, "url": target,
                              "format": fmt}
    path, q, query = target.partition("?")
    fields["path"] = path
    if q:
        fields["query"] = query
    for key, value in (("protocol", protocol), ("bytes", size), ("user_agent", agent),
                       ("referer", referer), ("user", user), ("vhost", host)):
        if value and value != "-":
            fields[key] = value
    request = f"{method} {target} {protocol}".strip()
    return fast_event(time, EventType.HTTP_REQUEST, source, src, port(sport), None, None,
                      "tcp", fields, request)


def _caddy(d: dict[str, Any], *, source: str, now: datetime) -> Event | None:
    req = d.get("request")
    if not isinstance(req, dict):
        return None
    src = _s(req.get("client_ip")) or _s(req.get("remote_ip"))
    method = _s(req.get("method"))
    if not src or not method:
        return None
    ts = d.get("ts")
    time = now
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            time = datetime.fromtimestamp(ts, UTC)
        except (OverflowError, OSError, ValueError):
            time = now
    elif isinstance(ts, str):
        time = iso_time(ts) or now
    headers = req.get("headers") if isinstance(req.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    return _event(time=time, source=source, src=src, sport=_s(req.get("remote_port")),
                  method=method, target=_s(req.get("uri")), protocol=_s(req.get("proto")),
                  status=_s(d.get("status")), size=_s(d.get("size")),
                  agent=_s(headers.get("User-Agent")), referer=_s(headers.get("Referer")),
                  user=_s(d.get("user_id")), host=_s(req.get("host")), fmt="caddy")


def _traefik(d: dict[str, Any], *, source: str, now: datetime) -> Event | None:
    src = _s(d.get("ClientHost"))
    method = _s(d.get("RequestMethod"))
    if not src or not method:
        return None
    time = iso_time(_s(d.get("StartUTC"))) or iso_time(_s(d.get("time"))) or now
    return _event(time=time, source=source, src=src, sport=_s(d.get("ClientPort")),
                  method=method, target=_s(d.get("RequestPath")),
                  protocol=_s(d.get("RequestProtocol")), status=_s(d.get("DownstreamStatus")),
                  size=_s(d.get("DownstreamContentSize")),
                  agent=_s(d.get("request_User-Agent")), referer=_s(d.get("request_Referer")),
                  user=_s(d.get("ClientUsername")), host=_s(d.get("RequestHost")),
                  fmt="traefik")


def parse_json(line: str, *, source: str, now: datetime | None = None) -> Event | None:
    """One Caddy or Traefik JSON access-log line as an ``http.request`` event, or None."""
    try:
        d = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(d, dict):
        return None
    when = now or datetime.now(UTC)
    if "request" in d:
        return _caddy(d, source=source, now=when)
    if "ClientHost" in d or "RequestMethod" in d:
        return _traefik(d, source=source, now=when)
    return None
