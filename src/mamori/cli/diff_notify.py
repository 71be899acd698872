"""`mamori diff --notify SETTINGS`: tell the owner about a change through the alert sinks of
the settings file's ``[[watch.alerts]]`` (webhook, e-mail, syslog, JSON lines, stdout).

Only a change is told: something new, fixed, changed, opened or closed, or a service whose
product or version changed. Findings or ports the newer run did not cover ("not compared")
and new findings an accepted risk covers alone are no change: the machine did not show
anything different, the runs only looked at different things.

The message is one router notice (``mamori.notice/1``, kind ``diff``): notices pass every
sink's type filter and rate limit, so one change is one message per sink.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mamori.model.watch import Danger

if TYPE_CHECKING:
    from mamori.model import CheckResult, Endpoint
    from mamori.report.diff import ScanDiff
    from mamori.watch.settings import WatchSettings

__all__ = ["DELIVERY_DEADLINE", "diff_notice_text", "is_change", "load_alert_settings",
           "notify_change"]

DELIVERY_DEADLINE = 90.0  # seconds for every sink to deliver (webhook retries, SMTP)
_TEXT_LIMIT = 1000
_LISTED = 5  # items named per kind; the rest are counted


def is_change(diff: ScanDiff) -> bool:
    """True when the newer run saw something different (see the module docstring)."""
    return bool(diff.new_findings or diff.fixed or diff.changed or diff.opened
                or diff.closed or diff.services)


def _port(e: Endpoint) -> str:
    host = f"[{e.address}]" if ":" in e.address else e.address
    return f"{e.proto.value} {host}:{e.port}"


def _finding(c: CheckResult) -> str:
    host = f"[{c.address}]" if ":" in c.address else c.address
    return f"{c.check_id} on {host}:{c.port}"


def _part(label: str, items: list[str]) -> str | None:
    if not items:
        return None
    shown = ", ".join(items[:_LISTED])
    more = f" (+{len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{len(items)} {label}: {shown}{more}"


def diff_notice_text(diff: ScanDiff) -> str:
    """One line: which runs, worse or not, and what changed (bounded in length)."""
    parts = [
        _part("new finding(s)", [_finding(c) for c in diff.new_findings]),
        _part("port(s) opened", [_port(e) for e in diff.opened]),
        _part("finding(s) changed", [
            f"{_finding(c.new)} {c.old.severity.value}->{c.new.severity.value}"
            for c in diff.changed]),
        _part("service(s) changed", [_port(s.new) for s in diff.services]),
        _part("fixed", [_finding(c) for c in diff.fixed]),
        _part("port(s) closed", [_port(e) for e in diff.closed]),
    ]
    targets = ", ".join(diff.new.targets) or "-"
    head = (f"mamori {diff.new.kind} of {targets}: "
            f"{'WORSE' if diff.worse else 'changed'} since run {diff.old.id} (run {diff.new.id})")
    text = "; ".join([head, *(p for p in parts if p)])
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT - 3] + "..."


def load_alert_settings(path: Path) -> WatchSettings:
    """The settings file's ``[watch]`` section, its sinks built once to check them (an e-mail
    sink's password variable must be set). Raises SettingsError (one line)."""
    from mamori.watch.settings import load_watch_settings
    from mamori.watch.sinks import build_sink

    settings = load_watch_settings(path)
    for entry in settings.alerts:
        build_sink(entry.name or entry.type, entry)
    return settings


async def _deliver(settings: WatchSettings, text: str, danger: Danger,
                   deadline: float) -> list[str]:
    from mamori.watch.sinks import Alert, AlertRouter, Notice, Route, build_sink

    # Routes built here, not by AlertRouter.from_settings: a diff never blocks anybody.
    routes = [Route(build_sink(entry.name or f"{entry.type}#{i}", entry), entry)
              for i, entry in enumerate(settings.alerts, 1)]
    router = AlertRouter(routes)
    await router.start()
    notice = Notice(datetime.now(UTC), "diff", text, danger=danger)
    for route in router.routes:
        route.offer(Alert(notice))
    await router.aclose(deadline)
    return [f"{name}: {s.failed + s.dropped + s.lost_at_close} not delivered"
            for name, s in router.stats().items() if s.failed or s.dropped or s.lost_at_close]


def notify_change(settings: WatchSettings, diff: ScanDiff,
                  deadline: float = DELIVERY_DEADLINE) -> list[str]:
    """Send the change notice to every sink; returns the sinks that could not deliver it
    (empty: all delivered)."""
    danger = Danger.HIGH if diff.worse else Danger.INFO
    return asyncio.run(_deliver(settings, diff_notice_text(diff), danger, deadline))
