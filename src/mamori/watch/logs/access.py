"""nginx and Apache access logs in the combined (or common) format; a line that starts with
``{`` is a Caddy or Traefik JSON line (:mod:`mamori.watch.logs.jsonaccess`).

Pure. ``parse`` reads one line::

    203.0.113.9 - - [10/Oct/2024:13:55:36 +0900] "GET /a?b=1 HTTP/1.1" 200 612 "-" "curl/8.5.0"

into an ``http.request`` event. Quoted fields may hold escaped quotes (Apache ``\\"``) and
escaped bytes (nginx and Apache ``\\xHH``); they are unescaped, so signatures see what the
client really sent, and the excerpt escapes them again. Requests that are not
``METHOD target PROTOCOL`` (a TLS handshake sent to the HTTP port, ``\\x16\\x03\\x01...``) keep
the raw text in ``request`` with ``malformed=yes``. Apache's ``vhost_combined`` (a leading
``host:port``) is read too.

Fields: ``method``, ``url`` (the request target), ``path``, ``query``, ``protocol``,
``status``, ``bytes``, ``referer``, ``user_agent``, ``user``, ``vhost``, and for malformed
requests ``request`` (the raw text) with ``malformed=yes``. The excerpt is the request line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import MONTHS, fast_event
from mamori.watch.logs.jsonaccess import parse_json

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_LINE = re.compile(
    r"(?:(\S+:\d{1,5}) )?(\S+) \S+ (\S+|\"[^\"]*\") \[([^\]]{1,64})\] "
    + _QUOTED
    + r" (\d{3}|-) (\d+|-)(?: "
    + _QUOTED
    + " "
    + _QUOTED
    + r")?",
    re.S,
)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "b": "\b"}
_METHOD = re.compile(r"[A-Z][A-Z_-]{0,19}\Z")
_TIME_CACHE: dict[str, datetime | None] = {}
_TIME_CACHE_MAX = 4096


def _unescape_one(m: re.Match[str]) -> str:
    code = m.group(1)
    if code[0] == "x" and len(code) == 3:
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, code)


def unescape(text: str) -> str:
    """Undo the access-log escaping: ``\\xHH`` → that byte (as a latin-1 character),
    ``\\"`` → ``"``, ``\\\\`` → ``\\``, ``\\n``/``\\t``/``\\r`` → control characters."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(_unescape_one, text)


def clf_time(text: str) -> datetime | None:
    """``10/Oct/2024:13:55:36 +0900`` → aware UTC (cached: a busy log repeats each second)."""
    hit = _TIME_CACHE.get(text, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    result: datetime | None = None
    try:
        day, mon, rest = text.split("/", 2)
        year, hh, mm, tail = rest.split(":", 3)
        ss, _, zone = tail.partition(" ")
        month = MONTHS.get(mon)
        if month is not None:
            tz = UTC
            if len(zone) == 5 and zone[0] in "+-":
                offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
                tz = timezone(-offset if zone[0] == "-" else offset)
            result = datetime(
                int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz
            ).astimezone(UTC)
    except ValueError:
        result = None
    if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
        _TIME_CACHE.clear()
    _TIME_CACHE[text] = result
    return result


def split_request(request: str) -> tuple[str, str, str] | None:
    """``METHOD target PROTOCOL`` → its three parts (the target may hold spaces), or None."""
    method, sp, rest = request.partition(" ")
    if not sp or not (
        (method.isupper() and method.isalpha() and len(method) <= 20)
        or _METHOD.match(method) is not None
    ):
        return None
    target, sp2, protocol = rest.rpartition(" ")
    if not sp2 or not protocol.startswith("HTTP/"):
        # HTTP/0.9 style "GET /path" (no protocol)
        if " " in rest or not rest:
            return None
        return method, rest, ""
    if not target:
        return None
    return method, target, protocol


_Groups = tuple[str | None, str, str, str, str, str, str, str | None, str | None]


def _fast_split(line: str) -> _Groups | None:
    """The common case without a regex: no escaped quote, so splitting on ``"`` gives the
    fields directly (combined: 7 pieces, common: 3). None: let the regex decide."""
    parts = line.split('"')
    referer: str | None
    agent: str | None
    if len(parts) == 7:
        head, request, mid, referer, gap, agent, tail = parts
        if gap != " " or tail.strip():
            return None
    elif len(parts) == 3:
        head, request, mid = parts
        referer = agent = None
    else:
        return None
    if "\\" in head or request.endswith("\\") or not head.endswith("] "):
        return None
    who, bracket, when = head[:-2].partition(" [")
    if not bracket or "]" in when:
        return None
    words = who.split(" ")
    if len(words) == 3:
        vhost = None
        ip, _ident, user = words
    elif len(words) == 4 and ":" in words[0]:
        vhost, ip, _ident, user = words
    else:
        return None
    nums = mid.split()
    if len(nums) != 2 or mid[:1] != " " or not (nums[0].isdigit() or nums[0] == "-"):
        return None
    return vhost, ip, user, when, request, nums[0], nums[1], referer, agent


def parse(
    line: str, *, source: str, year: int | None = None, now: datetime | None = None
) -> Event | None:
    """One access-log line as an ``http.request`` event, or None if it is not one.

    The shape nearly every line has (combined format, ``METHOD target HTTP/x``, nothing
    escaped) is taken apart here with ``str.split`` alone; anything else goes to the general
    parser (regex, unescaping, malformed requests).
    """
    if line[:1] == "{":  # Caddy or Traefik JSON
        return parse_json(line, source=source, now=now)
    parts = line.split('"') if "\\" not in line else ()
    if len(parts) == 7:
        head, request, mid, referer, gap, agent, tail = parts
        req = request.split(" ")
        head_parts = head.split(" ", 3)
        nums = mid.split(" ")
        if (
            gap == " "
            and not tail
            and len(req) == 3
            and len(head_parts) == 4
            and len(nums) == 4
            and not nums[0]
            and not nums[3]
        ):
            method, target, protocol = req
            ip, _ident, user, when = head_parts
            status, size = nums[1], nums[2]
            if (
                when[:1] == "["
                and when[-2:] == "] "
                and method.isupper()
                and target
                and protocol.startswith("HTTP/")
                and status.isdigit()
                and (size.isdigit() or size == "-")
            ):
                when = when[1:-2]
                path, q, query = target.partition("?")
                fields = {"status": status, "method": method, "url": target, "path": path,
                          "protocol": protocol}
                if q:
                    fields["query"] = query
                if size != "-":
                    fields["bytes"] = size
                if user != "-":
                    fields["user"] = user
                if referer and referer != "-":
                    fields["referer"] = referer
                if agent and agent != "-":
                    fields["user_agent"] = agent
                time = _TIME_CACHE.get(when) or clf_time(when) or now or datetime.now(UTC)
                return fast_event(time, EventType.HTTP_REQUEST, source, ip, None, None, None,
                                  "tcp", fields, request)
    return _parse_general(line, source=source, now=now)


def _parse_general(line: str, *, source: str, now: datetime | None) -> Event | None:
    groups = _fast_split(line)
    if groups is None:
        m = _LINE.match(line)
        if m is None:
            return None
        groups = cast(_Groups, m.groups())
    vhost, ip, user, when, request, status, size, referer, agent = groups
    time = clf_time(when) or now or datetime.now(UTC)
    request = unescape(request)
    fields: dict[str, str] = {"status": status}
    if size != "-":
        fields["bytes"] = size
    if vhost:
        fields["vhost"] = vhost
    if user != "-":
        fields["user"] = user.strip('"')
    if referer and referer != "-":
        fields["referer"] = unescape(referer)
    if agent and agent != "-":
        fields["user_agent"] = unescape(agent)
    parts = split_request(request)
    if parts is None:  # the raw request is kept only when it is not METHOD target PROTOCOL
        fields["method"] = ""
        fields["malformed"] = "yes"
        fields["request"] = request
    else:
        method, target, protocol = parts
        fields["method"] = method
        fields["url"] = target
        path, q, query = target.partition("?")
        fields["path"] = path
        if q:
            fields["query"] = query
        if protocol:
            fields["protocol"] = protocol
    return fast_event(time, EventType.HTTP_REQUEST, source, ip, None, None, None, "tcp", fields,
                      request)
