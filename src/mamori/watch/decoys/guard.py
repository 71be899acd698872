"""Per-source bookkeeping shared by decoys (and the ICMP sensor): concurrent connections,
event rate, and the ``sensor.limit`` reports that replace events beyond the rate.

Everything here runs on the event-loop thread. Memory is bounded by ``max_sources``: when the
table is full, idle sources are forgotten, and if none is idle, new sources share one overflow
bucket (so a flood from spoofed UDP sources cannot grow it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from mamori.model.watch import Event, EventType
from mamori.watch.decoys.spec import DecoyLimits

__all__ = ["OVERFLOW", "SourceGuard"]

OVERFLOW = "*"  # the bucket key shared by sources beyond max_sources


@dataclass(slots=True)
class _Source:
    tokens: float
    stamp: float
    connections: int = 0


@dataclass(slots=True)
class _Pending:
    suppressed_events: int = 0
    dropped_connections: int = 0  # per-source concurrency cap
    dropped_global: int = 0  # global connection cap
    first: float = field(default_factory=time.monotonic)


class SourceGuard:
    """Admission control per source address; see the module doc."""

    def __init__(self, limits: DecoyLimits, emit: Callable[[Event], None],
                 label: str = "decoys") -> None:
        self.limits = limits
        self._emit = emit
        self.label = label
        self._sources: dict[str, _Source] = {}
        self._pending: dict[str, _Pending] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_forget = -1.0
        self.active = 0
        self.reports = 0

    # connections ---------------------------------------------------------------------------
    def open_connection(self, src: str) -> str | None:
        """Admit a new connection from ``src``: the key it is counted under (give it back to
        ``close_connection``), or None when over a cap (counted for the next report)."""
        if self.active >= self.limits.max_connections:
            self._note(src).dropped_global += 1
            return None
        key, entry = self._entry(src)
        if entry.connections >= self.limits.per_source_connections:
            self._note(src).dropped_connections += 1
            return None
        entry.connections += 1
        self.active += 1
        return key

    def close_connection(self, key: str) -> None:
        self.active -= 1
        entry = self._sources.get(key)
        if entry is not None and entry.connections > 0:
            entry.connections -= 1

    # events --------------------------------------------------------------------------------
    def allow_event(self, src: str | None) -> bool:
        """Take one event token for ``src``; False (and counted) when its rate is spent."""
        _, entry = self._entry(src or "")
        now = time.monotonic()
        rate, burst = self.limits.events_per_second, float(self.limits.event_burst)
        entry.tokens = min(burst, entry.tokens + (now - entry.stamp) * rate)
        entry.stamp = now
        if entry.tokens >= 1.0:
            entry.tokens -= 1.0
            return True
        self._note(src or "").suppressed_events += 1
        return False

    # reports -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Emit the pending ``sensor.limit`` reports now: one per source (at most
        ``max_limit_reports``) and one aggregate for the rest."""
        self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        ordered = sorted(pending.items(), key=lambda item: -(
            item[1].suppressed_events + item[1].dropped_connections + item[1].dropped_global))
        named, rest = ordered[: self.limits.max_limit_reports], ordered[
            self.limits.max_limit_reports :]
        for src, counts in named:
            self._report(None if src in ("", OVERFLOW) else src, counts,
                         {"overflow": "yes"} if src == OVERFLOW else {})
        if rest:
            total = _Pending()
            for _, counts in rest:
                total.suppressed_events += counts.suppressed_events
                total.dropped_connections += counts.dropped_connections
                total.dropped_global += counts.dropped_global
            self._report(None, total, {"sources": str(len(rest))})

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()

    def _report(self, src: str | None, counts: _Pending, extra: dict[str, str]) -> None:
        reasons = [name for name, value in (
            ("event-rate", counts.suppressed_events),
            ("per-source-connections", counts.dropped_connections),
            ("max-connections", counts.dropped_global)) if value]
        fields = {"reason": ",".join(reasons), "suppressed_events": str(counts.suppressed_events),
                  "dropped_connections": str(counts.dropped_connections + counts.dropped_global),
                  "seconds": f"{time.monotonic() - counts.first:.1f}", **extra}
        self.reports += 1
        self._emit(Event(time=datetime.now(UTC), type=EventType.SENSOR_LIMIT,
                         source=self.label, src=src, fields=MappingProxyType(fields)))

    # bookkeeping ---------------------------------------------------------------------------
    def _entry(self, src: str) -> tuple[str, _Source]:
        entry = self._sources.get(src)
        if entry is not None:
            return src, entry
        if len(self._sources) >= self.limits.max_sources:
            self._forget_idle()
        if len(self._sources) >= self.limits.max_sources:
            src = OVERFLOW
            entry = self._sources.get(src)
            if entry is not None:
                return src, entry
        entry = _Source(float(self.limits.event_burst), time.monotonic())
        self._sources[src] = entry
        return src, entry

    def _forget_idle(self) -> None:
        """Drop sources with no connection whose bucket has refilled (nothing to remember).
        At most once a second, so a stream of new sources cannot make every lookup a scan."""
        now = time.monotonic()
        if now - self._last_forget < 1.0:
            return
        self._last_forget = now
        refill = self.limits.event_burst / self.limits.events_per_second
        for key in [key for key, entry in self._sources.items()
                    if entry.connections == 0 and now - entry.stamp >= refill]:
            del self._sources[key]

    def _note(self, src: str) -> _Pending:
        if src not in self._pending and len(self._pending) >= self.limits.max_sources:
            src = OVERFLOW
        counts = self._pending.get(src)
        if counts is None:
            counts = self._pending[src] = _Pending()
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop (pure tests): reported at flush/close
                return counts
            self._timer = loop.call_later(self.limits.limit_report_interval, self.flush)
        return counts
