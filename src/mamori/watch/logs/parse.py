"""``parse_line``: one log line of a given kind → an event or None (pure)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from mamori.model.watch import Event
from mamori.watch.logs import access, auth, firewall, journald, macos, pflog
from mamori.watch.logs.spec import JOURNALD_KINDS, LOG_KINDS

_Parser = Callable[..., Event | None]
PARSERS: dict[str, _Parser] = {
    "auth": auth.parse,
    "access": access.parse,
    "firewall": firewall.parse,
    "pflog": pflog.parse,
    "macos-unified": macos.parse,
}


def parse_line(
    kind: str,
    line: str,
    *,
    year: int | None = None,
    now: datetime | None = None,
    source: str | None = None,
) -> Event | None:
    """Parse one line of a ``kind`` log (see ``LOG_KINDS``); None when the line is not one
    the watcher cares about. ``year`` completes syslog times that carry none; ``now`` is
    the time given to lines without one; ``source`` becomes ``Event.source``."""
    parser = PARSERS.get(kind)
    if parser is not None:
        return parser(line, source=source or f"log:{kind}", year=year, now=now)
    if kind in JOURNALD_KINDS:
        return journald.parse(line, kind, source=source or f"log:{kind}", now=now)
    raise ValueError(f"unknown log kind {kind!r} (one of {', '.join(LOG_KINDS)})")


def line_parser(
    kind: str, *, source: str, year: int | None = None
) -> Callable[[str], Event | None]:
    """``parse_line`` with everything but the line fixed, for a reader that parses many
    lines of one log (the lookup and keyword handling are done once)."""
    parser = PARSERS.get(kind)
    if parser is None:
        if kind in JOURNALD_KINDS:
            return lambda line: journald.parse(line, kind, source=source)
        raise ValueError(f"unknown log kind {kind!r} (one of {', '.join(LOG_KINDS)})")

    return functools.partial(parser, source=source, year=year, now=None)
