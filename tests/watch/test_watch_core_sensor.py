"""The sensor in-process: real decoys and log followers, a real SQLite store, a recording
publisher in place of the alert router. Floods, a failing store and read-once logs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.store import Store
from mamori.store.watch import EventQuery, count_events, list_events, list_incidents
from mamori.watch.sensor import Sensor, SensorOptions
from mamori.watch.settings import LogSettings, WatchSettings
from mamori.watch.signatures import load

HOST = "127.0.140.30"
VISITOR = "127.0.140.31"
PORTS = [23050, 23051, 23052, 23053, 23054]


class Recorder:
    """Stands in for the alert router: keeps what is published."""

    def __init__(self) -> None:
        self.items: list[tuple[Event | Incident, bool]] = []
        self.closed = False

    async def start(self) -> None:
        pass

    def publish(self, item: Event | Incident, *, opened: bool = False) -> None:
        self.items.append((item, opened))

    async def aclose(self, deadline: float = 5.0) -> None:
        self.closed = True

    def incidents(self) -> list[tuple[Incident, bool]]:
        return [(i, o) for i, o in self.items if isinstance(i, Incident)]


def connect(port: int, data: bytes = b"") -> None:
    with socket.create_connection((HOST, port), timeout=5, source_address=(VISITOR, 0)) as s:
        if data:
            s.sendall(data)
            s.settimeout(2)
            try:
                s.recv(4096)
            except OSError:
                pass


async def run_sensor(sensor: Sensor, visit: Callable[[], Awaitable[None]]) -> int:
    task = asyncio.create_task(sensor.run())
    end = time.monotonic() + 10
    while not sensor.running and not task.done() and time.monotonic() < end:
        await asyncio.sleep(0.01)
    await visit()
    sensor.stop()
    return await asyncio.wait_for(task, 30)


def test_decoy_visits_are_stored_grouped_and_announced_with_ids(tmp_path: Path) -> None:
    decoys = (*(f"{HOST}:{p}" for p in PORTS), f"{HOST}:23055=http")
    # knocks=False: the decoys' own events are counted exactly here (knocks on closed ports,
    # on by default, have their own tests: test_watch_knock*.py)
    settings = WatchSettings(decoys=decoys, alerts=(), knocks=False)
    recorder = Recorder()
    said: list[str] = []
    with Store.open(str(tmp_path / "w.db")) as store:
        sensor = Sensor(settings, store, recorder, signatures=load(), say=said.append)

        async def visit() -> None:
            for port in PORTS:
                await asyncio.to_thread(connect, port)
            await asyncio.to_thread(connect, 23055, b"GET /.git/config HTTP/1.0\r\n\r\n")
            await asyncio.sleep(0.3)

        ran = asyncio.run(run_sensor(sensor, visit))
        assert ran == 6 and recorder.closed
        stats = sensor.stats
        assert stats.received >= 7 and stats.derived == 1
        assert stats.stored == stats.received + stats.derived and stats.dropped_queue == 0
        assert count_events(store) == stats.stored
        (stored,) = list_incidents(store)
        inc = stored.incident
        assert inc.src == VISITOR and stored.status == "closed"
        # The scan is the headline (scans outrank probes); the probe's danger counts.
        assert inc.kind == "scan.ports" and "probe-git" in inc.signatures
        assert inc.danger is Danger.MEDIUM
        assert inc.count == stats.stored
        (scan,) = list_events(store, EventQuery(types=("scan.ports",)))
        assert scan.incident_id == inc.id
        assert scan.event.fields["ports"] == ",".join(f"{p}/tcp" for p in [*PORTS, 23055][:5])
    published = recorder.incidents()
    # Announced once when opened (with the store's id), then only when it got worse.
    assert published[0][1] is True and published[0][0].id == inc.id
    assert all(not opened for _, opened in published[1:])
    assert {i.id for i, _ in published} == {inc.id}
    assert published[-1][0].kind == "scan.ports"
    assert any(isinstance(i, Event) and i.type is EventType.SCAN_PORTS for i, _ in recorder.items)
    assert said[0].startswith("mamori watch: watching decoy:tcp/127.0.140.30:23050")


def test_a_flood_beyond_the_queue_is_counted_and_recorded(tmp_path: Path) -> None:
    settings = WatchSettings(decoys=(f"{HOST}:23056",), alerts=())
    said: list[str] = []
    with Store.open(str(tmp_path / "w.db")) as store:
        sensor = Sensor(settings, store, None, SensorOptions(queue_size=50), say=said.append)

        async def flood() -> None:
            now = datetime.now(UTC)
            for i in range(10_000):  # synchronously: the consumer cannot run in between
                sensor.emit(Event(time=now, type=EventType.DECOY_CONNECT, source="test",
                                  src=f"10.9.{i >> 8}.{i & 255}", dst=HOST, dst_port=1))

        asyncio.run(run_sensor(sensor, flood))
        s = sensor.stats
        assert s.dropped_queue == 10_000 - 50
        assert s.stored == s.received - s.dropped_queue + s.derived
        (limit,) = list_events(store, EventQuery(types=("sensor.limit",)))
        assert limit.event.fields["dropped"] == str(10_000 - 50)
        assert count_events(store, EventQuery(types=("decoy.connect",))) == 50
    assert any("9950 event(s) dropped" in line for line in said)


def test_a_failing_store_loses_counted_events_and_never_hangs(tmp_path: Path) -> None:
    settings = WatchSettings(decoys=(f"{HOST}:23057",), alerts=())
    said: list[str] = []
    with Store.open(str(tmp_path / "w.db")) as store:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE events"))  # every batch will now fail
        sensor = Sensor(settings, store, None,
                        SensorOptions(batch_interval=0.05, stop_deadline=2.0), say=said.append)

        async def visit() -> None:
            for _ in range(3):
                await asyncio.to_thread(connect, 23057)
            await asyncio.sleep(0.5)

        started = time.monotonic()
        asyncio.run(run_sensor(sensor, visit))
        assert time.monotonic() - started < 15
    s = sensor.stats
    assert s.store_errors >= 1 and s.stored == 0
    assert s.lost_store == s.received + s.derived  # every event is accounted for
    assert any("cannot store events" in line and "events" in line for line in said)


def test_a_source_that_cannot_start_is_an_error_event_and_the_rest_runs(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind((HOST, 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    settings = WatchSettings(decoys=(f"{HOST}:{taken}", f"{HOST}:23058"), alerts=(),
                             knocks=False)  # the busy decoy and the free one, nothing else
    said: list[str] = []
    try:
        with Store.open(str(tmp_path / "w.db")) as store:
            sensor = Sensor(settings, store, None, say=said.append)

            async def visit() -> None:
                await asyncio.to_thread(connect, 23058)
                await asyncio.sleep(0.2)

            assert asyncio.run(run_sensor(sensor, visit)) == 1
            (err,) = list_events(store, EventQuery(types=("sensor.error",)))
            assert err.event.source == f"decoy:tcp/{HOST}:{taken}"
            assert "in use" in err.event.fields["reason"]
            assert count_events(store, EventQuery(types=("decoy.connect",))) == 1
    finally:
        blocker.close()
    assert any(f"{HOST}:{taken}" in line and "in use" in line for line in said)
    assert sensor.stats.sources_failed == 1


def test_read_once_replays_a_log_and_stops_by_itself(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    lines = [f"Mar  3 10:15:{i:02d} host sshd[{900 + i}]: Failed password for root from "
             f"192.168.7.7 port {40000 + i} ssh2" for i in range(12)]
    log.write_text("\n".join(lines) + "\n")
    settings = WatchSettings(logs=(LogSettings(kind="auth", path=log, follow=False),),
                             alerts=())
    with Store.open(str(tmp_path / "w.db")) as store:
        sensor = Sensor(settings, store, None, SensorOptions(read_once=True),
                        say=lambda _line: None)
        ran = asyncio.run(asyncio.wait_for(sensor.run(), 30))
        assert ran == 1
        (stored,) = list_incidents(store)
        # A LAN address is not whitelisted: brute force from it is an incident.
        assert (stored.incident.src, stored.incident.kind) == ("192.168.7.7", "bruteforce")
        assert count_events(store, EventQuery(types=("auth.failure",))) == 12
        (brute,) = list_events(store, EventQuery(types=("bruteforce",)))
        assert brute.event.fields["service"] == "ssh" and brute.event.fields["failures"] == "5"


def test_read_once_of_a_missing_log_runs_nothing(tmp_path: Path) -> None:
    settings = WatchSettings(
        logs=(LogSettings(kind="access", path=tmp_path / "nope.log", follow=False),), alerts=())
    said: list[str] = []
    with Store.open(str(tmp_path / "w.db")) as store:
        sensor = Sensor(settings, store, None, SensorOptions(read_once=True), say=said.append)
        assert asyncio.run(asyncio.wait_for(sensor.run(), 30)) == 0
        (err,) = list_events(store, EventQuery(types=("sensor.error",)))
        assert "nope.log" in err.event.fields["reason"]
    assert any("nope.log" in line for line in said)




def test_a_replayed_firewall_log_names_syn_and_xmas_scans(tmp_path: Path) -> None:
    # Kernel nf_log lines as nftables writes them for `nmap -sS` and `nmap -sX` (one per port).
    def line(i: int, src: str, port: int, flags: str) -> str:
        return (f"Mar  3 10:30:{i:02d} gw kernel: [86400.{i:06d}] nft-drop: IN=eth0 OUT= "
                f"MAC=52:54:00:12:34:56:52:54:00:ab:cd:ef:08:00 SRC={src} DST=198.51.100.2 "
                f"LEN=44 TOS=0x00 PREC=0x00 TTL=43 ID={1000 + i} PROTO=TCP SPT=61000 "
                f"DPT={port} WINDOW=1024 RES=0x00 {flags}URGP=0")

    lines = [line(i, "203.0.113.70", 20 + i, "SYN ") for i in range(30)]
    lines += [line(i, "203.0.113.71", 1000 + i, "URG PSH FIN ") for i in range(8)]
    log = tmp_path / "kern.log"
    log.write_text("\n".join(lines) + "\n")
    settings = WatchSettings(logs=(LogSettings(kind="firewall", path=log, follow=False),),
                             alerts=())
    with Store.open(str(tmp_path / "w.db")) as store:
        sensor = Sensor(settings, store, None, SensorOptions(read_once=True),
                        say=lambda _line: None)
        assert asyncio.run(asyncio.wait_for(sensor.run(), 30)) == 1
        incidents = {i.incident.src: i.incident for i in list_incidents(store)}
        assert {src: (i.kind, i.count) for src, i in incidents.items()} == {
            "203.0.113.70": ("scan.ports", 31), "203.0.113.71": ("scan.ports", 9)}
        assert incidents["203.0.113.71"].danger is Danger.MEDIUM  # crafted flags
        scans = {e.event.src: e.event.fields["technique"]
                 for e in list_events(store, EventQuery(types=("scan.ports",)))}
        assert scans == {"203.0.113.70": "syn", "203.0.113.71": "xmas"}


def test_decoy_limits_from_the_settings_bound_a_noisy_visitor(tmp_path: Path) -> None:
    """[watch.decoy_limits] reaches the decoys: with a burst of 2 events and a slow refill, a
    visitor's eight connections leave at most a few events and one sensor.limit report naming
    it; the same visits under the defaults are all recorded."""
    import pytest
    from pydantic import ValidationError

    from mamori.watch.settings import DecoyLimitSettings

    def visits(limits: DecoyLimitSettings, db: str, port: int) -> list[Event]:
        settings = WatchSettings(decoys=(f"{HOST}:{port}",), alerts=(), tcp_knock=False,
                                 knocks=False, decoy_limits=limits)  # the decoys' limits only
        with Store.open(str(tmp_path / db)) as store:
            sensor = Sensor(settings, store, Recorder(), signatures=load(), say=lambda _: None)

            async def visit() -> None:
                for _ in range(8):
                    await asyncio.to_thread(connect, port, b"hello\r\n")
                await asyncio.sleep(0.2)

            asyncio.run(run_sensor(sensor, visit))
            return [s.event for s in list_events(store, EventQuery())]

    tight = visits(DecoyLimitSettings(events_per_second=0.01, event_burst=2), "tight.db", 23060)
    from_visitor = [e for e in tight if e.src == VISITOR and e.type is not EventType.SENSOR_LIMIT]
    limits = [e for e in tight if e.type is EventType.SENSOR_LIMIT]
    assert len(from_visitor) <= 3
    assert len(limits) == 1 and limits[0].src == VISITOR
    assert int(limits[0].fields["suppressed_events"]) >= 8

    loose = visits(DecoyLimitSettings(), "loose.db", 23061)
    assert sum(e.type is EventType.DECOY_CONNECT for e in loose) == 8
    assert not any(e.type is EventType.SENSOR_LIMIT for e in loose)

    with pytest.raises(ValidationError, match="event_burst"):
        DecoyLimitSettings(event_burst=0)
