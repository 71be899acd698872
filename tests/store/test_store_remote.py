"""The store in a child process (store/remote.py): `mamori scan` never imports SQLAlchemy in its
own process, stores the run under its own pid, and a store process that fails or dies is a
StoreError, never a hang. Targets: listeners on 127.0.112.1; PostgreSQL on 127.0.112.30."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import ROOT

from mamori.store import Store, StoreError, StoreUsageError
from mamori.store.remote import RemoteStore

ADDR = "127.0.112.1"
PG_HOST = "127.0.112.30"


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ADDR, 0))
    s.listen(8)
    yield int(s.getsockname()[1])
    s.close()


def _scan(db: str, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *extra, "-m", "mamori", "scan", ADDR, "-p", str(port), "--no-identify",
         "-f", "json", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MAMORI_DB"})


def test_scan_stores_through_a_child_and_never_imports_sqlalchemy(
    tmp_path: Path, listener: int
) -> None:
    db = tmp_path / "m.db"
    proc = _scan(str(db), listener, "-X", "importtime")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    imported = [line.rsplit("|", 1)[-1].strip() for line in err.splitlines()
                if line.startswith("import time:")]
    assert "mamori.scan.job" in imported  # the run went through the job
    assert not [m for m in imported if m.split(".")[0] in ("sqlalchemy", "alembic")]
    report = json.loads(out)
    assert report["scan"]["status"] == "done"
    assert [e["port"] for h in report["hosts"] for e in h["endpoints"]
            if e["state"] == "open"] == [listener]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select status, pid from scans").fetchall()
        ports = [p for (p,) in conn.execute("select port from endpoints")]
    assert rows == [("done", proc.pid)]  # the command's pid, not the store process's
    assert ports == [listener]


@pytest.mark.parametrize("command", ["scan", "check"])
def test_bad_usage_creates_no_database_though_the_store_process_started(
    tmp_path: Path, command: str
) -> None:
    """`scan`/`check` start their store process before parsing; a refused command line leaves
    no file behind (the child opens nothing before the first call)."""
    db = tmp_path / "m.db"
    args = [ADDR, "-p", "99999"] if command == "scan" else ["--probe-bound", "--nonsense"]
    proc = subprocess.run(
        [sys.executable, "-m", "mamori", command, *args, "--db", str(db)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("mamori: error: ")
    time.sleep(0.5)  # time enough for a child that wrongly opened the store to create it
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_ctrl_c_to_the_whole_group_still_stores_the_run_interrupted(tmp_path: Path) -> None:
    """The terminal's SIGINT reaches the store process too: it ignores it, and the scan
    process finishes the run through it."""
    db = tmp_path / "m.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "scan", ADDR, "-p", "1-4000", "--rate", "50",
         "--no-identify", "-f", "json", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("select count(*) from scans").fetchone() == (1,):
                    break
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out)["scan"]["status"] == "interrupted"
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from scans").fetchall() == [("interrupted",)]


def test_every_record_survives_the_trip_through_the_child(tmp_path: Path) -> None:
    """The sample scan and check run (services, check results with their texts, listeners:
    frozen mappings included) written through the child read back as written directly."""
    from store_fixtures import store_check_scan, store_sample_scan

    remote = RemoteStore.start()
    try:
        remote.open(str(tmp_path / "remote.db"))
        ids = [store_sample_scan(remote), store_check_scan(remote)]  # type: ignore[arg-type]
        via_child = [remote.get_scan(i) for i in ids]
    finally:
        remote.close()
    with Store.open(str(tmp_path / "direct.db")) as store:
        direct = [store.get_scan(i) for i in (store_sample_scan(store), store_check_scan(store))]
    assert via_child[0] is not None and via_child[0].checks and via_child[1].listeners
    strip = ("started_at", "finished_at")
    assert [{k: v for k, v in vars_of(r).items() if k not in strip} for r in via_child] == \
        [{k: v for k, v in vars_of(r).items() if k not in strip} for r in direct]


def vars_of(record: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


def test_a_store_process_that_dies_is_a_store_error(tmp_path: Path) -> None:
    store = RemoteStore.start()
    try:
        store.open(str(tmp_path / "m.db"))
        assert store.sqlite_path == str(tmp_path / "m.db")
        store._proc.kill()
        store._proc.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(StoreError, match="store process"):
            store.call("list_scans")
        assert time.monotonic() - started < 5
    finally:
        store.close()


def test_errors_come_back_with_their_kind_and_message(tmp_path: Path) -> None:
    store = RemoteStore.start()
    try:
        with pytest.raises(StoreUsageError, match="unsupported database type"):
            store.open("nosuchdb://x")
        with pytest.raises(StoreError, match="is a directory"):
            store.open(str(tmp_path))
        with pytest.raises(StoreError, match="not open"):
            store.call("list_scans")
        store.open(str(tmp_path / "m.db"))
        with pytest.raises(StoreError, match="AttributeError"):
            store.call("no_such_method")
        assert store.call("list_scans") == []  # still answering after the errors
        assert store.call("acceptances") == []
    finally:
        store.close()


@pytest.mark.daemon
def test_scan_into_postgresql_through_the_child(tmp_path: Path, listener: int) -> None:
    pytest.importorskip("psycopg", reason="not tested: psycopg is not installed")
    from store_fixtures import create_pg_database, running_postgres

    with running_postgres(host=PG_HOST) as base:
        url = create_pg_database(base, "mamori_remote", host=PG_HOST)
        proc = _scan(url, listener)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["scan"]["status"] == "done"
        store = RemoteStore.start()
        try:
            store.open(url)
            assert store.sqlite_path is None
            [summary] = store.call("list_scans")
            assert summary.status.value == "done" and summary.open_ports == 1
        finally:
            store.close()
