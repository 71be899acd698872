"""The sensor: runs every source and carries what they see to the store and the owner.

Flow (all on one asyncio loop; only the store writes run in a worker thread)::

    decoys, ICMP, log followers --emit--> bounded queue --> classify (signatures)
        --> detectors (scan.ports, bruteforce, scan.ping_sweep) --> incident grouper
        --> batch --> store (one transaction per batch, in the writer thread)
        --> router (events as they come; incidents opened/escalated once written, with ids)

``emit`` never blocks: a full queue drops the event and counts it (reported as a
``sensor.limit`` event). A batch is written every ``batch_interval`` seconds or as soon as it
holds ``batch_size`` events, one batch at a time; while one is written the next one fills.
A source that cannot start (port in use, missing log, no raw socket) becomes a
``sensor.error`` event and a line on stderr; the others keep running. ``stop()`` (SIGTERM,
SIGINT) stops the sources, drains the queue, closes open incidents, writes the last batch and
closes the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from mamori.model.watch import Danger, Event, EventType, Incident, excerpt
from mamori.store.errors import StoreError
from mamori.watch.detect import DetectConfig, Detectors
from mamori.watch.incidents import IncidentGrouper

if TYPE_CHECKING:
    from mamori.store import Store
    from mamori.store.watch import IncidentStatus
    from mamori.watch.settings import LogSettings, WatchSettings
    from mamori.watch.signatures import SignatureSet

__all__ = ["Publisher", "Sensor", "SensorOptions", "SensorStats", "detect_config"]

log = logging.getLogger("mamori.watch.sensor")

# Events whose text the signatures look at.
_CLASSIFIED = frozenset({
    EventType.HTTP_REQUEST, EventType.DECOY_DATA, EventType.DECOY_COMMAND,
    EventType.DECOY_LOGIN, EventType.DECOY_UDP,
})
TICK = 5.0  # seconds between detector pruning / incident expiry / drop reports
MAX_TRIES = 5  # writes of one batch before its events are given up


class Publisher(Protocol):
    """What the sensor needs of the alert router."""

    async def start(self) -> None: ...
    def publish(self, item: Event | Incident, *, opened: bool = False) -> None: ...
    async def aclose(self, deadline: float = ...) -> None: ...


class _Source(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SensorOptions:
    """How the sensor runs (not what it watches: that is ``WatchSettings``)."""

    read_once: bool = False  # logs from the start; stop when every log is read
    queue_size: int = 100_000  # events waiting to be processed
    batch_size: int = 500
    batch_interval: float = 0.2
    max_pending: int = 200_000  # events held for the store while it is slow or failing
    stop_deadline: float = 10.0  # seconds to flush the store and the alerts at the end


@dataclass(slots=True)
class SensorStats:
    received: int = 0  # events emitted by sources (incl. the sensor's own)
    dropped_queue: int = 0  # lost: the queue was full
    derived: int = 0  # events made by the detectors
    stored: int = 0
    lost_store: int = 0  # could not be written (store failing for too long)
    lost_incidents: int = 0  # final states of closed incidents that could not be written
    store_errors: int = 0
    batches: int = 0
    incidents_opened: int = 0
    sources_started: int = 0
    sources_failed: int = 0
    internal_errors: int = 0  # a detector, the grouper or the router raised (logged)
    errors: list[str] = field(default_factory=list)  # one line per source that failed


def detect_config(settings: WatchSettings) -> DetectConfig:
    """Detector thresholds: the settings file's, else the built-in defaults."""
    d = settings.detect
    base = DetectConfig()
    return DetectConfig(
        scan_ports=d.portscan_ports or base.scan_ports,
        scan_window=d.portscan_window or base.scan_window,
        brute_failures=d.bruteforce_failures or base.brute_failures,
        brute_window=d.bruteforce_window or base.brute_window,
        sweep_hosts=d.ping_sweep_targets or base.sweep_hosts,
        sweep_window=d.ping_sweep_window or base.sweep_window,
    )


@dataclass(slots=True)
class _Batch:
    events: list[tuple[Event, int | None]] = field(default_factory=list)
    # grouper key -> (final state, status); None: take the open incident's state at write time
    incidents: dict[int, tuple[Incident | None, IncidentStatus]] = field(default_factory=dict)
    announce: dict[int, bool] = field(default_factory=dict)  # key -> opened in this batch
    tries: int = 0


class Sensor:
    """See the module docstring. ``store`` None: nothing is stored (alerts only)."""

    def __init__(
        self,
        settings: WatchSettings,
        store: Store | None,
        router: Publisher | None,
        options: SensorOptions | None = None,
        *,
        signatures: SignatureSet | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.options = options or SensorOptions()
        self.stats = SensorStats()
        self.signatures = signatures
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        sig_kind = None
        if signatures is not None:
            def sig_kind(sig_id: str) -> str | None:
                found = signatures.get(sig_id)
                return None if found is None else found.kind
        self.detectors = Detectors(detect_config(settings))
        self.grouper = IncidentGrouper(
            settings.incident_window or 900.0, signature_kind=sig_kind)
        self._queue: asyncio.Queue[Event] | None = None
        self._batch = _Batch()
        self._ids: dict[int, int] = {}  # grouper key -> store id
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mamori-store")
        self._write_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._sources: list[_Source] = []
        self._readers: list[Any] = []  # read-once log followers to wait for
        self._unreported_drops = 0
        self.decoys: list[Any] = []
        self._guard: Any = None  # the decoys' shared per-source guard
        self._knock: Any = None  # the closed-port knock sensor, when it runs
        self.running: list[str] = []  # what started, in words

    # -- intake (loop thread, never blocks) --------------------------------------------------

    def emit(self, event: Event) -> None:
        """The callback every source calls."""
        self.stats.received += 1
        assert self._queue is not None
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats.dropped_queue += 1
            self._unreported_drops += 1

    def stop(self) -> None:
        """Ask the sensor to stop (signal handlers call this)."""
        self._stop.set()

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Start every source, process until ``stop()`` (or, reading once, until every log is
        read), then flush everything. Returns how many sources ran (0: nothing could run)."""
        self._queue = asyncio.Queue(maxsize=self.options.queue_size)
        if self.router is not None:
            await self.router.start()
        consumer = asyncio.create_task(self._consume(), name="mamori-watch-consume")
        ticker = asyncio.create_task(self._tick(), name="mamori-watch-tick")
        try:
            await self._start_sources()
            if self.stats.sources_started:
                self._say(f"mamori watch: watching {', '.join(self.running)}")
                if self.options.read_once:
                    await self._wait_readers()
                    # A log that could not be read at all did not run.
                    failed = [r for r in self._readers
                              if r.stats.errors and not r.stats.lines]
                    self.stats.sources_started -= len(failed)
                    self.stats.sources_failed += len(failed)
                else:
                    await self._stop.wait()
        finally:
            await self._shutdown(consumer, ticker)
        return self.stats.sources_started

    async def _start_sources(self) -> None:
        s = self.settings
        if s.decoys:
            await self._start_decoys(s.decoys)
            if s.tcp_knock:
                await self._start_tcp_knock()
        if s.icmp:
            await self._start_icmp()
        if s.knocks and not self.options.read_once:  # a replay of old logs is no live watch
            await self._start_knocks()
        for entry in s.log_settings():
            await self._start_log(entry)

    def _failed(self, what: str, reason: str) -> None:
        self.stats.sources_failed += 1
        self.stats.errors.append(f"{what}: {reason}")
        self.emit(Event(time=datetime.now(UTC), type=EventType.SENSOR_ERROR, source=what,
                        danger=Danger.LOW, fields=MappingProxyType({"reason": reason[:300]})))

    async def _start_decoys(self, specs: tuple[str, ...]) -> None:
        from mamori.watch.decoys import DecoyLimits, DecoyServer, DecoySpec, SourceGuard

        try:
            limits = DecoyLimits(**self.settings.decoy_limits.overrides())
        except ValueError as exc:  # e.g. idle_timeout of 0: no decoy can run sensibly
            for text in specs:
                self._failed(f"decoy {text}", f"decoy_limits: {exc}")
            return
        guard = SourceGuard(limits, self.emit, "decoys")  # per-source limits across decoys
        for text in specs:
            try:
                spec = DecoySpec.parse(text)
            except ValueError as exc:
                self._failed(f"decoy {text}", str(exc))
                continue
            server = DecoyServer(spec, self.emit, limits, guard=guard)
            try:
                await server.start()
            except OSError as exc:
                self._failed(spec.label, exc.strerror or str(exc))
                continue
            self.stats.sources_started += 1
            self._sources.append(server)
            self.decoys.append(server)
            where = spec.label.rsplit(":", 1)[0]  # the bound port (port 0: the kernel's pick)
            self.running.append(f"{where}:{server.port}={spec.persona}")
        self._guard = guard

    async def _start_icmp(self) -> None:
        from mamori.watch.icmp import IcmpSensor

        # With decoys, the pings that matter are those to the decoys' addresses (a raw socket
        # sees all the host's ICMP); without decoys, all of it.
        sensor = IcmpSensor(self.emit, addresses=sorted({d.spec.host for d in self.decoys}))
        try:
            ok = await sensor.start()
        except OSError as exc:
            self._failed("icmp", exc.strerror or str(exc))
            return
        if not ok:  # the sensor emitted its own sensor.error event (shown on stderr)
            self.stats.sources_failed += 1
            self.stats.errors.append("icmp: raw ICMP socket not available")
            return
        self.stats.sources_started += 1
        self._sources.append(sensor)
        self.running.append("icmp")

    async def _start_knocks(self) -> None:
        """Knocks on closed ports (after the decoys, whose ports are then open)."""
        from mamori.watch.knock import KnockSensor

        sensor = KnockSensor(self.emit)
        try:
            ok = await sensor.start()
        except OSError as exc:
            self._failed("knock", "knocks on closed ports not watched: "
                         + (exc.strerror or str(exc)))
            return
        if not ok:  # the sensor emitted one sensor.error event: not watched, and why (stderr)
            self.stats.sources_failed += 1
            self.stats.errors.append("knock: knocks on closed ports not watched")
            return
        self.stats.sources_started += 1
        self._sources.append(sensor)
        self._knock = sensor
        self.running.append("knocks on closed ports"
                            + ("" if sensor.use_bpf else " (no kernel filter)"))

    async def _start_tcp_knock(self) -> None:
        """Half-open scans of the TCP decoys (SYN/NULL/FIN/XMAS never reach accept()) seen by
        a raw TCP socket. An add-on of the decoys: not counted as a source of its own, and
        when raw sockets are not allowed the decoys run on (with one sensor.error event)."""
        from mamori.watch.rawtcp import TcpKnockSensor

        targets = [(d.spec.host, d.port) for d in self.decoys if d.spec.proto == "tcp"]
        if not targets:
            return
        sensor = TcpKnockSensor(self.emit, targets, guard=self._guard)
        try:
            ok = await sensor.start()
        except OSError as exc:
            ok = False
            self.emit(Event(time=datetime.now(UTC), type=EventType.SENSOR_ERROR,
                            source="tcp-knock", danger=Danger.LOW,
                            fields=MappingProxyType({"reason": exc.strerror or str(exc)})))
        if not ok:  # the sensor emitted its own sensor.error event (shown on stderr)
            self.stats.errors.append("tcp-knock: raw TCP socket not available")
            return
        self._sources.append(sensor)
        self.running.append("tcp-knock")

    async def _start_log(self, entry: LogSettings) -> None:
        from mamori.watch import logs

        what = f"log {entry.kind}" + (f" {entry.path}" if entry.path else "")
        follow = entry.follow and not self.options.read_once
        path = None if entry.path is None else str(entry.path)
        spec = logs.LogSpec(kind=entry.kind, path=path, follow=follow)
        follower = logs.LogFollower(spec, self.emit)
        try:
            await follower.start()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._failed(what, reason)
            return
        self.stats.sources_started += 1
        self._sources.append(follower)
        self.running.append(what)
        if not follow:
            self._readers.append(follower)

    async def _wait_readers(self) -> None:
        """Reading once: until every reader is done (or ``stop()``)."""
        waits = [asyncio.ensure_future(r.wait()) for r in self._readers if hasattr(r, "wait")]
        if not waits:
            return
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        everything: asyncio.Future[Any] = asyncio.gather(*waits)
        try:
            await asyncio.wait([everything, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            everything.cancel()

    async def _shutdown(self, consumer: asyncio.Task[None], ticker: asyncio.Task[None]) -> None:
        for source in reversed(self._sources):
            try:
                await asyncio.wait_for(source.close(), 5.0)
            except Exception as exc:  # one bad source must not stop the flush
                self._say(f"mamori watch: closing a source failed: {exc}")
        if self._guard is not None:
            self._guard.close()  # its pending sensor.limit reports
        if self._knock is not None:
            self._say(f"mamori watch: {self._knock.summary()}")
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        # Drain: everything the sources emitted is processed before the last write.
        self._process_pending_queue()
        self._report_drops()
        self._process_pending_queue()
        self.grouper.close_all()
        self._collect_closed()
        deadline = time.monotonic() + self.options.stop_deadline
        await self._flush(final=True, deadline=deadline)
        if self.router is not None:
            await self.router.aclose(max(1.0, deadline - time.monotonic()))
        self._writer.shutdown(wait=True)

    # -- processing --------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            event = await queue.get()
            self._process(event)
            # Take what else is waiting in one go (cheaper than one await per event).
            for _ in range(self.options.batch_size):
                try:
                    event = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                self._process(event)
            if len(self._batch.events) >= self.options.batch_size:
                self._start_write()
                if len(self._batch.events) >= self.options.max_pending:
                    # The store cannot keep up: wait for it (the queue absorbs, then drops).
                    if self._write_task is not None:
                        await asyncio.wait({self._write_task})
                    self._start_write()

    def _process_pending_queue(self) -> None:
        assert self._queue is not None
        while True:
            try:
                event = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._process(event)

    def _process(self, event: Event) -> None:
        if event.time.tzinfo is None:  # the store only takes aware times; never lose the event
            event = replace(event, time=event.time.replace(tzinfo=UTC))
        if event.src is not None and ":" in event.src:
            # One spelling per IPv6 address, or one visitor would make several incidents.
            with contextlib.suppress(ValueError):
                canonical = ipaddress.ip_address(event.src).compressed
                if canonical != event.src:
                    event = replace(event, src=canonical)
        if event.type is EventType.SENSOR_ERROR:
            reason = event.fields.get("reason") or event.excerpt
            self._say(f"mamori watch: {event.source}: {excerpt(reason, 300)}")
        if self.signatures is not None and event.type in _CLASSIFIED:
            try:
                event = self.signatures.classify(event)
            except Exception:  # a matcher bug must not lose the event
                log.exception("signature matching failed")
        self._fold(event)
        try:
            derived_events = self.detectors.feed(event)
        except Exception:  # a detector bug must not stop the sensor; the event is kept
            self.stats.internal_errors += 1
            log.exception("detector failed")
            return
        for derived in derived_events:
            self.stats.derived += 1
            self._fold(derived)

    def _fold(self, event: Event) -> None:
        try:
            fold = self.grouper.add(event)
        except Exception:  # a grouping bug must not lose the event: stored without incident
            self.stats.internal_errors += 1
            log.exception("incident grouping failed")
            fold = None
        key: int | None = None
        batch = self._batch
        if fold is not None:
            key = fold.key
            if key not in batch.incidents:
                batch.incidents[key] = (None, "open")
            if fold.opened or fold.escalated:
                batch.announce[key] = batch.announce.get(key, False) or fold.opened
            if fold.opened:
                self.stats.incidents_opened += 1
        batch.events.append((event, key))
        if self.router is not None:
            self._publish(event)

    def _publish(self, item: Event | Incident, opened: bool = False) -> None:
        assert self.router is not None
        try:
            self.router.publish(item, opened=opened)
        except Exception:  # alerts are best effort; recording goes on
            self.stats.internal_errors += 1
            log.exception("publishing an alert failed")

    def _collect_closed(self) -> None:
        for key, incident in self.grouper.drain_closed():
            self._batch.incidents[key] = (incident, "closed")

    def _report_drops(self) -> None:
        if not self._unreported_drops:
            return
        count, self._unreported_drops = self._unreported_drops, 0
        text = f"{count} event(s) dropped: the sensor's queue was full"
        self._say(f"mamori watch: {text}")
        event = Event(time=datetime.now(UTC), type=EventType.SENSOR_LIMIT, source="sensor",
                      danger=Danger.LOW,
                      fields=MappingProxyType({"dropped": str(count), "reason": text}))
        self.stats.received += 1
        self._process(event)

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.options.batch_interval)
            self._start_write()
            if time.monotonic() - last >= TICK:
                last = time.monotonic()
                self._report_drops()
                if not self.options.read_once:
                    now = datetime.now(UTC)
                    self.detectors.prune(now)
                    self.grouper.expire(now)
                    self._collect_closed()

    # -- writing -----------------------------------------------------------------------------

    def _start_write(self) -> None:
        """Hand the current batch to the writer thread unless a write is in flight."""
        if self._write_task is not None and not self._write_task.done():
            return
        self._collect_closed()
        batch = self._batch
        if not batch.events and not batch.incidents:
            return
        self._batch = _Batch()
        # The open incidents' state now, on the loop thread (the grouper is not thread-safe).
        for key, (held, status) in list(batch.incidents.items()):
            if held is None:
                now = self.grouper.snapshot(key)
                if now is None:
                    del batch.incidents[key]
                else:
                    batch.incidents[key] = (now, status)
        self._write_task = asyncio.create_task(self._write(batch))

    async def _write(self, batch: _Batch) -> None:
        ready = {k: (inc, status) for k, (inc, status) in batch.incidents.items()
                 if inc is not None}
        keys = list(ready)
        position = {k: i for i, k in enumerate(keys)}
        incidents = [(replace(inc, id=self._ids.get(k)), status)
                     for k, (inc, status) in ready.items()]
        events = [(e, position.get(k) if k is not None else None) for e, k in batch.events]
        ids: list[int] | None = None
        if self.store is None:
            ids = [0] * len(keys)
        else:
            loop = asyncio.get_running_loop()
            from mamori.store.watch import write_batch

            try:
                ids = await loop.run_in_executor(
                    self._writer, write_batch, self.store, incidents, events)
            except Exception as exc:  # StoreError, or a bug: never lose the batch silently
                self.stats.store_errors += 1
                if not isinstance(exc, StoreError):
                    log.exception("writing a batch failed")
                if self.stats.store_errors <= 5 or self.stats.store_errors % 100 == 0:
                    self._say(f"mamori watch: cannot store events: {exc}")
                self._requeue(batch)
                return
        self.stats.batches += 1
        self.stats.stored += len(events)
        for key, (incident, status) in ready.items():
            number = ids[position[key]]
            if status == "closed":
                self._ids.pop(key, None)
            elif self.store is not None:
                self._ids[key] = number
            opened = batch.announce.get(key)
            if opened is not None and self.router is not None:
                self._publish(replace(incident, id=number or None), opened)

    def _requeue(self, failed: _Batch) -> None:
        """Keep a batch that could not be written for the next try (bounded)."""
        current = self._batch
        if failed.tries >= MAX_TRIES:
            # The same events failed again and again (the store refuses them): give them up,
            # counted, rather than block everything that comes after them.
            closed = {k for k, (_, status) in failed.incidents.items() if status == "closed"}
            self.stats.lost_store += len(failed.events)
            self.stats.lost_incidents += len(closed)
            self._say(f"mamori watch: gave up storing {len(failed.events)} event(s) and "
                      f"{len(closed)} closed incident(s)")
            for key in closed:
                self._ids.pop(key, None)
            failed = _Batch(incidents={k: v for k, v in failed.incidents.items()
                                       if k not in closed},
                            announce=failed.announce, tries=0)
        # Open incidents are written as they are at the next try, not as they were.
        failed.incidents = {k: (None if status == "open" else inc, status)
                            for k, (inc, status) in failed.incidents.items()}
        merged = _Batch(events=failed.events + current.events,
                        incidents={**failed.incidents, **current.incidents},
                        announce={**failed.announce, **current.announce},
                        tries=failed.tries + 1)
        excess = len(merged.events) - self.options.max_pending
        if excess > 0:
            self.stats.lost_store += excess
            merged.events = merged.events[excess:]
        self._batch = merged

    async def _flush(self, *, final: bool, deadline: float) -> None:
        """Write until nothing is pending (or the deadline passes)."""
        while True:
            if self._write_task is not None:
                await asyncio.wait({self._write_task},
                                   timeout=max(0.0, deadline - time.monotonic()))
                if not self._write_task.done():
                    break
            if not self._batch.events and not self._batch.incidents:
                return
            if time.monotonic() > deadline:
                break
            self._write_task = None
            self._start_write()
        left = len(self._batch.events)
        if left and final:
            self.stats.lost_store += left
            self._say(f"mamori watch: {left} event(s) could not be stored before the deadline")

    def summary_line(self) -> str:
        s = self.stats
        parts = [f"{s.received} event(s) received", f"{s.derived} derived",
                 f"{s.stored} stored", f"{s.incidents_opened} incident(s)"]
        if s.dropped_queue:
            parts.append(f"{s.dropped_queue} dropped (queue full)")
        if s.lost_store:
            parts.append(f"{s.lost_store} not stored")
        if s.lost_incidents:
            parts.append(f"{s.lost_incidents} incident update(s) not stored")
        if s.internal_errors:
            parts.append(f"{s.internal_errors} internal error(s) (see above)")
        return "mamori watch: stopped: " + ", ".join(parts)
