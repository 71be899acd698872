"""The alert router: filters, rate limits and one bounded queue + worker task per sink.

``publish`` is called on the event loop thread for every event and incident; it never
blocks and never awaits: per sink it checks the type filter and minimum danger, asks the
sink's rate limits, and puts the alert in the sink's queue — or counts it as dropped when
the queue is full. Each sink's worker sends from its queue; a failing or slow sink loses only
its own alerts, counted in :class:`RouteStats` and reported (to stderr through logging, and
to the sink itself as a notice once it keeps up again). Incidents at or above the blocking
danger go to the :class:`~mamori.watch.block.Blocker` when blocking is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mamori.model.watch import Danger, Event, Incident
from mamori.watch.settings import AlertSink, WatchSettings
from mamori.watch.sinks.alert import Alert, Notice, alert_type
from mamori.watch.sinks.base import Sink, SinkError
from mamori.watch.sinks.limits import Limiter, Suppressed

if TYPE_CHECKING:
    from mamori.watch.block import Blocker, BlockResult

__all__ = ["AlertRouter", "Route", "RouteStats", "build_sink"]

log = logging.getLogger("mamori.watch.alerts")

TICK = 1.0  # seconds between looks for suppressed counts to report
MAX_BLOCKS_IN_FLIGHT = 32
CLOSE_DEADLINE = 5.0


@dataclass
class RouteStats:
    published: int = 0  # alerts offered to this sink
    filtered: int = 0  # not for this sink (type or danger)
    suppressed: int = 0  # held back by a rate limit (summarised later)
    dropped: int = 0  # the queue was full
    sent: int = 0
    failed: int = 0  # the sink gave up on them
    lost_at_close: int = 0  # still queued when the close deadline passed


def build_sink(name: str, settings: AlertSink) -> Sink:
    """The sink for one ``[[watch.alerts]]`` entry (an explicit table, no names from files)."""
    from mamori.watch.sinks.files import JsonlSink, StdoutSink
    from mamori.watch.sinks.mail import EmailSink
    from mamori.watch.sinks.syslog import SyslogSink
    from mamori.watch.sinks.webhook import WebhookSink

    if settings.type == "stdout":
        return StdoutSink(name, settings)
    if settings.type == "jsonl":
        return JsonlSink(name, settings)
    if settings.type == "syslog":
        return SyslogSink(name, settings)
    if settings.type == "webhook":
        return WebhookSink(name, settings)
    if settings.type == "apprise":
        from mamori.watch.sinks.notify import AppriseSink

        return AppriseSink(name, settings)
    return EmailSink(name, settings)


def _matches(words: tuple[str, ...], kind: str) -> bool:
    if not words:
        return True
    family = kind.split(".", 1)[0] + ".*"
    return kind in words or family in words


class Route:
    """One sink with its filter, limits, queue, worker and counters."""

    def __init__(self, sink: Sink, settings: AlertSink, *, clock: Any = time.monotonic) -> None:
        self.sink = sink
        self.settings = settings
        self.name = sink.name
        self.stats = RouteStats()
        self.limiter = Limiter(settings.per_source, settings.global_)
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=settings.queue)
        self._unreported_drops = 0
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._failures_logged = 0

    def wants(self, item: Event | Incident | Notice) -> bool:
        kind = alert_type(item)
        if isinstance(item, Notice) and kind == "notice":
            return True  # the router's word about this sink's own alerts
        if kind == "block":
            words = self.settings.types
            return not words or "block" in words or "incident" in words
        return _matches(self.settings.types, kind) and (
            item.danger.rank >= self.settings.min_danger.rank)

    def offer(self, alert: Alert) -> None:
        self.stats.published += 1
        if not self.wants(alert.item):
            self.stats.filtered += 1
            return
        if isinstance(alert.item, Notice):
            self._put(alert)  # notices are never rate limited (they summarise the limits)
            return
        ok, summaries = self.limiter.admit(alert.item.src, self._clock())
        if not ok:
            self.stats.suppressed += 1
            return
        for summary in summaries:
            self._put(Alert(_suppressed_notice(summary)))
        self._put(alert)

    def report_due(self, *, final: bool = False) -> None:
        for summary in self.limiter.due(self._clock(), final=final):
            self._put(Alert(_suppressed_notice(summary)))

    def _put(self, alert: Alert) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if self._unreported_drops == 0:
                log.warning("alert sink %s cannot keep up: queue of %d full, dropping alerts",
                            self.name, self.settings.queue)
            self._unreported_drops += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name=f"mamori-alerts-{self.name}")

    async def _deliver(self, alert: Alert) -> None:
        try:
            await self.sink.send(alert)
        except (SinkError, OSError) as exc:
            self.stats.failed += 1
            self._failures_logged += 1
            if self._failures_logged <= 5 or self._failures_logged % 100 == 0:
                log.warning("alert sink %s: %s (%d failed so far)", self.name, exc,
                            self.stats.failed)
        else:
            self.stats.sent += 1

    async def _work(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self._deliver(alert)
                if self._unreported_drops and self.queue.qsize() < self.settings.queue // 2:
                    count, self._unreported_drops = self._unreported_drops, 0
                    text = (f"{count} alert(s) dropped: the {self.name} sink could not keep up "
                            f"(queue of {self.settings.queue} full)")
                    log.warning("%s", text)
                    await self._deliver(Alert(Notice(datetime.now(UTC), "dropped", text,
                                                     count=count, danger=Danger.MEDIUM)))
            finally:
                self.queue.task_done()

    async def drain(self, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for the queue to empty, then stop the worker."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), max(0.0, deadline - time.monotonic()))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.stats.lost_at_close += self.queue.qsize()
        if self._unreported_drops:
            log.warning("alert sink %s dropped %d alert(s) (queue full)", self.name,
                        self._unreported_drops)
        with contextlib.suppress(SinkError, OSError):
            await self.sink.aclose()


def _suppressed_notice(summary: Suppressed) -> Notice:
    return Notice(datetime.now(UTC), "suppressed", summary.text(), src=summary.src,
                  count=summary.count)


class AlertRouter:
    """Routes events and incidents to the configured sinks (see module docstring)."""

    def __init__(self, routes: list[Route], blocker: Blocker | None = None,
                 block_min: Danger = Danger.HIGH) -> None:
        self.routes = routes
        self.blocker = blocker
        self.block_min = block_min
        self.block_results: list[BlockResult] = []  # the last ones (bounded)
        self._blocking: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.blocks_skipped = 0  # too many block calls in flight

    @classmethod
    def from_settings(cls, settings: WatchSettings, *, blocker: Blocker | None = None
                      ) -> AlertRouter:
        """Sinks from ``settings.alerts``; a Blocker from ``settings.block`` when enabled
        (unless one is given). Raises SettingsError when a sink cannot be set up (e.g. the
        password variable of an e-mail sink is not set)."""
        used: dict[str, int] = {}
        routes = []
        for entry in settings.alerts:
            name = entry.name
            if name is None:
                used[entry.type] = used.get(entry.type, 0) + 1
                name = entry.type if used[entry.type] == 1 else f"{entry.type}#{used[entry.type]}"
            routes.append(Route(build_sink(name, entry), entry))
        if blocker is None and settings.block.enabled:
            from mamori.watch.block import Blocker

            blocker = Blocker(settings.block)
        return cls(routes, blocker, settings.block.min_danger)

    async def start(self) -> None:
        """Open every sink (a sink that cannot start is reported and retried per alert)."""
        for route in self.routes:
            try:
                await route.sink.start()
            except (SinkError, OSError) as exc:
                log.warning("alert sink %s: %s", route.name, exc)
            route.start()
        self._ticker = asyncio.create_task(self._tick(), name="mamori-alerts-tick")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            for route in self.routes:
                route.report_due()

    def publish(self, item: Event | Incident, *, opened: bool = False) -> None:
        """Offer one event or incident to every sink. Never blocks (loop thread only)."""
        alert = Alert(item, opened)
        for route in self.routes:
            route.offer(alert)
        if (isinstance(item, Incident) and self.blocker is not None
                and item.danger.rank >= self.block_min.rank):
            self._block(item)

    def _notify(self, notice: Notice) -> None:
        for route in self.routes:
            route.offer(Alert(notice))

    def _block(self, incident: Incident) -> None:
        assert self.blocker is not None
        if self.blocker.is_blocked(incident.src):
            return
        if len(self._blocking) >= MAX_BLOCKS_IN_FLIGHT:
            self.blocks_skipped += 1
            return
        task = asyncio.create_task(self._run_block(incident))
        self._blocking.add(task)
        task.add_done_callback(self._blocking.discard)

    async def _run_block(self, incident: Incident) -> None:
        assert self.blocker is not None
        result = await self.blocker.block(incident.src, f"{incident.kind} ({incident.danger})",
                                          incident.id)
        self.block_results = [*self.block_results[-99:], result]
        if result.skipped:
            return  # not an error: allowlisted, loopback, already blocked
        kind = "blocked" if result.ok else "block_failed"
        self._notify(Notice(datetime.now(UTC), kind, result.text(), src=incident.src,
                            danger=incident.danger if result.ok else Danger.HIGH))

    def stats(self) -> dict[str, RouteStats]:
        return {route.name: route.stats for route in self.routes}

    async def aclose(self, deadline: float = CLOSE_DEADLINE) -> None:
        """Report what the limits still hold back, deliver what is queued (within
        ``deadline`` seconds in all), close the sinks."""
        end = time.monotonic() + deadline
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._blocking:
            await asyncio.wait(set(self._blocking), timeout=max(0.0, end - time.monotonic()))
        for route in self.routes:
            route.report_due(final=True)
        await asyncio.gather(*(route.drain(end) for route in self.routes))
        for name, s in self.stats().items():
            if s.dropped or s.failed or s.lost_at_close:
                log.warning("alert sink %s: %d sent, %d dropped (queue full), %d failed, "
                            "%d lost at close", name, s.sent, s.dropped, s.failed,
                            s.lost_at_close)
