"""The watch tables (events, incidents): batched writes and filtered reads, on SQLite and on a
real PostgreSQL server (started by store_fixtures, bound to loopback only)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from types import MappingProxyType

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.store import Store, StoreError
from mamori.store.migrate import alembic_config
from mamori.store.models import Base
from mamori.store.watch import (
    EventQuery,
    add_events,
    count_events,
    list_events,
    list_incidents,
    save_incidents,
    write_batch,
)
from store_fixtures import create_pg_database, running_postgres, store_sample_scan

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def ev(t: float, type_: EventType, src: str | None, danger: Danger = Danger.INFO,
       **kw: object) -> Event:
    return Event(time=T0 + timedelta(seconds=t), type=type_, source="decoy:tcp/127.0.140.1:23",
                 src=src, danger=danger, **kw)  # type: ignore[arg-type]


HOSTILE = ev(
    3, EventType.DECOY_LOGIN, "203.0.113.5", Danger.MEDIUM, src_port=51234, dst="127.0.140.1",
    dst_port=23, proto="tcp", signatures=("telnet-default-creds",),
    fields=MappingProxyType({"username": "root\x00", "password": "x\x1b[31m守り", "k\x00": "v"}),
    excerpt="root\\r\\n\x00admin",
)


def roundtrip(url: str) -> None:
    with Store.open(url) as store:
        scan = Incident(src="203.0.113.5", kind="decoy.contact", danger=Danger.INFO,
                        first_seen=T0, last_seen=T0, count=1, types=("decoy.connect",))
        other = Incident(src="198.51.100.9", kind="probe.env", danger=Danger.MEDIUM,
                         first_seen=T0, last_seen=T0 + timedelta(seconds=50), count=1,
                         types=("http.request",), signatures=("env-file",),
                         examples=("GET /.env\x00 守り",))
        ids = write_batch(store, [(scan, "open"), (other, "closed")], [
            (ev(0, EventType.DECOY_CONNECT, "203.0.113.5", dst_port=23, proto="tcp"), 0),
            (ev(50, EventType.HTTP_REQUEST, "198.51.100.9", Danger.MEDIUM,
                signatures=("env-file",)), 1),
            (ev(60, EventType.SENSOR_ERROR, None, fields={"reason": "port in use"}), None),
        ])
        assert len(ids) == 2 and ids[0] != ids[1]
        # The next batch updates the first incident (now a scan) and adds events to it.
        grown = replace(scan, id=ids[0], kind="scan.ports", danger=Danger.LOW, count=3,
                        last_seen=T0 + timedelta(seconds=3),
                        types=("decoy.connect", "decoy.login", "scan.ports"))
        assert write_batch(store, [(grown, "open")], [
            (HOSTILE, 0),
            (ev(2, EventType.SCAN_PORTS, "203.0.113.5", Danger.LOW,
                fields={"ports": "21/tcp,23/tcp"}), 0),
        ]) == [ids[0]]

        every = list_events(store)
        assert [e.event.time for e in every] == sorted(e.event.time for e in every)
        assert count_events(store) == len(every) == 5
        (login,) = [e for e in every if e.event.type is EventType.DECOY_LOGIN]
        assert login.incident_id == ids[0]
        got = login.event
        assert (got.src, got.src_port, got.dst, got.dst_port, got.proto) == (
            "203.0.113.5", 51234, "127.0.140.1", 23, "tcp")
        assert got.time == HOSTILE.time and got.time.tzinfo is not None
        # NUL survives inside JSON fields as itself; in plain text columns it is escaped.
        assert dict(got.fields) == dict(HOSTILE.fields)
        assert got.excerpt == "root\\r\\n\\x00admin"
        assert got.signatures == ("telnet-default-creds",) and got.danger is Danger.MEDIUM
        (err,) = [e for e in every if e.event.src is None]
        assert err.incident_id is None and err.event.fields == {"reason": "port in use"}

        # Filters: since, exact type, type prefix, source, minimum danger, limit.
        assert [e.event.type for e in list_events(store, EventQuery(
            since=T0 + timedelta(seconds=3)))] == [
            EventType.DECOY_LOGIN, EventType.HTTP_REQUEST, EventType.SENSOR_ERROR]
        assert {e.event.type for e in list_events(store, EventQuery(types=("decoy.*",)))} == {
            EventType.DECOY_CONNECT, EventType.DECOY_LOGIN}
        assert len(list_events(store, EventQuery(types=("scan.ports", "sensor.error")))) == 2
        assert len(list_events(store, EventQuery(types=("decoy_*",)))) == 0  # _ is literal
        assert {e.event.src for e in list_events(store, EventQuery(src="198.51.100.9"))} == {
            "198.51.100.9"}
        assert [e.event.danger for e in list_events(store, EventQuery(
            min_danger=Danger.LOW))] == [Danger.LOW, Danger.MEDIUM, Danger.MEDIUM]
        newest = list_events(store, EventQuery(limit=2))
        assert [e.event.type for e in newest] == [EventType.HTTP_REQUEST,
                                                   EventType.SENSOR_ERROR]
        assert count_events(store, EventQuery(incident_id=ids[0])) == 3

        incs = list_incidents(store)
        assert [(i.incident.id, i.status) for i in incs] == [(ids[0], "open"),
                                                            (ids[1], "closed")]
        first = incs[0].incident
        assert (first.kind, first.danger, first.count) == ("scan.ports", Danger.LOW, 3)
        assert first.types == ("decoy.connect", "decoy.login", "scan.ports")
        assert incs[1].incident.examples == ("GET /.env\\x00 守り",)
        assert incs[1].incident.signatures == ("env-file",)
        assert [i.incident.id for i in list_incidents(store, EventQuery(types=("probe.*",)))] == [
            ids[1]]
        assert [i.incident.id for i in list_incidents(store, EventQuery(
            min_danger=Danger.MEDIUM))] == [ids[1]]
        assert [i.incident.id for i in list_incidents(store, EventQuery(
            since=T0 + timedelta(seconds=10)))] == [ids[1]]
        assert [i.incident.id for i in list_incidents(store, EventQuery(limit=1))] == [ids[1]]

        # A batch that cannot be written leaves nothing behind.
        with pytest.raises(StoreError):
            write_batch(store, [(replace(first, id=99_999), "open")],
                        [(ev(70, EventType.DECOY_CONNECT, "10.0.0.1"), 0)])
        with pytest.raises(StoreError):
            write_batch(store, [], [(ev(70, EventType.DECOY_CONNECT, "10.0.0.1"), 0)])
        assert count_events(store) == 5 and len(list_incidents(store)) == 2
        assert add_events(store, [ev(80, EventType.ICMP_ECHO, "10.0.0.2")], [ids[1]]) == 1
        assert save_incidents(store, [(replace(first, count=4), "closed")]) == [ids[0]]
        assert list_incidents(store, EventQuery(src="203.0.113.5"))[0].status == "closed"


def test_watch_tables_roundtrip_on_sqlite(db_url: str) -> None:
    roundtrip(db_url)


def test_batches_are_fast_and_lose_nothing(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        events = [ev(i / 1000, EventType.DECOY_CONNECT, f"10.0.{i >> 8 & 255}.{i & 255}",
                     dst_port=1000 + i % 100, proto="tcp", excerpt="x" * 64)
                  for i in range(20_000)]
        started = time.perf_counter()
        for i in range(0, len(events), 500):
            write_batch(store, [], [(e, None) for e in events[i:i + 500]])
        took = time.perf_counter() - started
        assert count_events(store) == 20_000
    # ~0.5 s here; a per-row commit would take minutes. Generous for a busy 2-core machine.
    assert took < 8, took


def test_upgrade_from_0003_and_back_keeps_scans(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0003")
        assert "events" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    with Store.open(str(db)) as store:
        store_sample_scan(store)
        write_batch(store, [], [(ev(0, EventType.ICMP_ECHO, "10.0.0.3"), None)])
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        names = set(inspect(store.engine).get_table_names())
        assert "events" not in names and "incidents" not in names
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scans")).scalar() == 1


# -- PostgreSQL -----------------------------------------------------------------------------------

_names = count()
PG_HOST, PG_PORT = "127.0.141.30", 55441


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    # On core's own address: never collides with test_store_postgres's server.
    with running_postgres(host=PG_HOST, port=PG_PORT) as base_url:
        yield base_url


def test_watch_tables_roundtrip_on_postgres(pg_server: str) -> None:
    url = create_pg_database(pg_server, f"mamori_watch_{next(_names)}", PG_HOST, PG_PORT)
    roundtrip(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
