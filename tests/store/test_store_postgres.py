"""The store on a real PostgreSQL server (started here, bound to 127.0.30.1:55432 only)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from mamori.model import ScanStatus
from mamori.store import Store
from mamori.store.migrate import SCHEMA_HEAD, alembic_config
from mamori.store.models import Base
from store_fixtures import (
    GIT_EXPOSED,
    SAMPLE_LISTENERS_ORDERED,
    create_pg_database,
    exercise_roundtrip,
    listener_roundtrip,
    nul_check_roundtrip,
    running_postgres,
    store_check_scan,
    store_sample_scan,
)

psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")

_names = count()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with running_postgres() as base_url:
        yield base_url


@pytest.fixture
def pg_url(pg_server: str) -> str:
    return create_pg_database(pg_server, f"mamori_test_{next(_names)}")


def test_roundtrip_postgres(pg_url: str) -> None:
    exercise_roundtrip(pg_url)


def test_check_text_with_nul_is_stored_on_postgres(pg_url: str) -> None:
    nul_check_roundtrip(pg_url)


def test_listeners_roundtrip_on_postgres(pg_url: str) -> None:
    listener_roundtrip(pg_url)


def test_path_report_with_nul_roundtrips_on_postgres(pg_url: str) -> None:
    from mamori.model import Proto
    from mamori.model.path import PathReport, PathVerdict, PortMapping, Reach, RouterView

    mapping = PortMapping(2222, Proto.TCP, "192.168.77.10", 22, "ssh\x00 forward", 0)
    report = PathReport(
        verdicts=(PathVerdict(Proto.TCP, "0.0.0.0", 22, 4, Reach.LAN, notes=("n",)),),
        router=RouterView(True, "upnp-igd1", mappings=(mapping,)))
    with Store.open(pg_url) as store:
        sid = store_check_scan(store)
        store.set_path_report(sid, report)
        rec = store.get_scan(sid)
    assert rec is not None and rec.paths is not None and rec.paths.router is not None
    assert rec.paths.router.mappings[0].description == "ssh\\x00 forward"
    assert rec.paths.verdicts == report.verdicts


def test_upgrade_from_0002_adds_listeners_on_postgres(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        assert "listeners" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    with Store.open(pg_url) as store:
        sid = store_check_scan(store)
        rec = store.get_scan(sid)
        assert rec is not None and list(rec.listeners) == SAMPLE_LISTENERS_ORDERED
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert "listeners" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM check_results")).scalar() == 5


def test_upgrade_from_0001_on_postgres(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(
                text(
                    "INSERT INTO scans (kind, status, started_at, targets, options,"
                    " mamori_version) VALUES ('scan', 'done', now(), '[]', '{}', '0.1.0')"
                )
            )
    finally:
        engine.dispose()
    with Store.open(pg_url) as store:
        (old,) = store.list_scans()
        store.add_check_result(old.id, GIT_EXPOSED)
        rec = store.get_scan(old.id)
        assert rec is not None and rec.checks == (GIT_EXPOSED,)
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_timestamps_are_timestamptz_and_utc(pg_url: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with Store.open(pg_url) as store:
        sid = store_sample_scan(store)
        with store.engine.connect() as conn:
            conn.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
            kind = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns"
                    " WHERE table_name = 'scans' AND column_name = 'started_at'"
                )
            ).scalar()
        assert kind == "timestamp with time zone"
        rec = store.get_scan(sid)
    assert rec is not None
    assert rec.started_at.utcoffset() == timedelta(0)
    assert before <= rec.started_at <= datetime.now(UTC)


def test_models_and_migrations_agree_on_postgres(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        store_sample_scan(store)
        store_check_scan(store)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_stale_scan_from_dead_process_marked_interrupted_on_postgres(pg_url: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store.open(pg_url) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE scans SET pid = :p WHERE id = :i"), {"p": dead.pid, "i": sid})
    with Store.open(pg_url) as store:
        rec = store.get_scan(sid)
        assert rec is not None and rec.status is ScanStatus.INTERRUPTED
        assert [s.status for s in store.list_scans()] == [ScanStatus.INTERRUPTED]
