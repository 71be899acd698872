"""The store on SQLite: round trip, bad input, crash safety, migrations."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from mamori.model import CheckStatus, Endpoint, PortState, Proto, Reason, ScanStatus
from mamori.model.audit import Verdict
from mamori.store import Store, StoreError, default_db_url
from mamori.store.engine import normalize_url
from mamori.store.migrate import SCHEMA_HEAD, alembic_config
from mamori.store.models import Base
from store_fixtures import (
    GIT_EXPOSED,
    PG_LOOPBACK,
    REDIS_ALL,
    REDIS_OPEN,
    SAMPLE_CHECKS,
    SAMPLE_LISTENERS_ORDERED,
    exercise_roundtrip,
    listener_roundtrip,
    nul_check_roundtrip,
    sample_endpoints,
    store_check_scan,
    store_sample_scan,
    writer_command,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_roundtrip_sqlite_url(tmp_path: Path) -> None:
    exercise_roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_plain_path_becomes_sqlite_url_and_dirs_are_created(tmp_path: Path) -> None:
    assert normalize_url("/x/y.db").render_as_string() == "sqlite:////x/y.db"
    db = tmp_path / "deep" / "er" / "m.db"
    with Store.open(str(db)) as store:
        sid = store_sample_scan(store)
    assert db.is_file()
    with Store.open(str(db)) as store:
        rec = store.get_scan(sid)
    assert rec is not None and len(rec.hosts) == 2


def test_default_db_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAMORI_DB", "postgresql+psycopg://u@127.0.0.1/x")
    assert default_db_url() == "postgresql+psycopg://u@127.0.0.1/x"
    monkeypatch.delenv("MAMORI_DB")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_db_url() == f"sqlite:///{tmp_path / 'xdg' / 'mamori' / 'mamori.db'}"
        with Store.open() as store:  # default location works and is created on demand
            assert store.list_scans() == []
        assert (tmp_path / "xdg" / "mamori" / "mamori.db").is_file()
    else:
        assert default_db_url().endswith("mamori.db")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "postgresql://user@127.0.0.1:notaport/db",
        "nosuchdb://127.0.0.1/x",
        "://nothing",
    ],
)
def test_bad_url_is_a_one_line_store_error(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store.open(url)
    msg = str(info.value)
    assert msg and "\n" not in msg


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://user:s3cret@127.0.0.1:notaport/db")
    assert "s3cret" not in str(info.value)


def test_directory_path_is_refused_untouched(tmp_path: Path) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="directory") as info:
        Store.open(str(d))
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in d.iterdir()) == ["keep.txt"]


def test_non_database_file_is_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "notes.db"
    f.write_bytes(b"my precious notes, not a database\n" * 100)
    before = _digest(f)
    with pytest.raises(StoreError, match="not a SQLite database") as info:
        Store.open(str(f))
    assert "\n" not in str(info.value)
    assert _digest(f) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal / -shm


def test_corrupt_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    # Right magic, garbage after it: SQLite itself must reject it, and we report that.
    f = tmp_path / "corrupt.db"
    f.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = _digest(f)
    with pytest.raises(StoreError) as info:
        Store.open(str(f))
    assert "\n" not in str(info.value)
    assert _digest(f) == before


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "other.db"
    with sqlite3.connect(f) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT)")
        conn.execute("INSERT INTO recipes VALUES ('miso soup')")
    conn.close()
    before = _digest(f)
    with pytest.raises(StoreError, match="no mamori schema"):
        Store.open(str(f))
    assert _digest(f) == before
    with sqlite3.connect(f) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"recipes"}


def test_schema_from_newer_mamori_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(str(db)) as store:
        sid = store_sample_scan(store)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(str(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM scans WHERE id = ?", (sid,)).fetchone() == (1,)
    conn.close()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        busy_ms = conn.execute(text("PRAGMA busy_timeout")).scalar()
        assert busy_ms is not None and busy_ms >= 1000


def test_in_memory_database_works() -> None:
    with Store.open("sqlite:///:memory:") as store:
        sid = store_sample_scan(store)
        rec = store.get_scan(sid)
        assert rec is not None and rec.status is ScanStatus.DONE


def test_batch_is_atomic_and_foreign_keys_hold(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        with pytest.raises(StoreError):
            store.add_endpoints(4242, sample_endpoints())  # no such scan
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM endpoints")).scalar() == 0


def test_misuse_is_reported(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        ssh = sample_endpoints()[0].service
        assert ssh is not None
        with pytest.raises(StoreError, match="no endpoint"):
            store.set_service(sid, "127.0.0.1", Proto.TCP, 22, ssh)
        with pytest.raises(StoreError, match="no scan"):
            store.finish_scan(sid + 1, ScanStatus.DONE)
        with pytest.raises(StoreError, match="final status"):
            store.finish_scan(sid, ScanStatus.RUNNING)
        with pytest.raises(StoreError, match="JSON"):
            store.begin_scan("scan", ["127.0.0.1"], {"when": object()})
        # The failed calls left the first scan as it was.
        rec = store.get_scan(sid)
        assert rec is not None and rec.status is ScanStatus.RUNNING and rec.hosts == ()


def test_check_results_upsert_by_endpoint_and_check(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        other = store.begin_scan("scan", ["127.0.0.1"], {})
        store.add_check_result(sid, REDIS_OPEN)
        # Same key: replaced, whatever changed (status, evidence, text).
        passed = replace(
            REDIS_OPEN, status=CheckStatus.PASSED, confidence=None, evidence=None, summary="ok"
        )
        store.add_check_result(sid, passed)
        # Any part of the key differing makes a new result.
        store.add_check_result(sid, replace(REDIS_OPEN, port=6379))
        store.add_check_result(sid, replace(REDIS_OPEN, proto=Proto.UDP))
        store.add_check_result(sid, replace(REDIS_OPEN, address="::1"))
        store.add_check_result(sid, replace(REDIS_OPEN, check_id="redis-other"))
        store.add_check_result(other, REDIS_OPEN)  # another scan's results are its own
        rec = store.get_scan(sid)
        assert rec is not None
        assert len(rec.checks) == 5
        assert passed in rec.checks and REDIS_OPEN not in rec.checks
        assert [c.status for c in rec.checks].count(CheckStatus.FINDING) == 4
        rec_other = store.get_scan(other)
        assert rec_other is not None and rec_other.checks == (REDIS_OPEN,)


def test_check_result_for_unknown_scan_is_refused(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        with pytest.raises(StoreError):
            store.add_check_result(4242, GIT_EXPOSED)
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM check_results")).scalar() == 0


def test_check_text_with_nul_is_stored_escaped(tmp_path: Path) -> None:
    nul_check_roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_check_results_columns_and_cascade(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(str(db)) as store:
        sid = store_sample_scan(store)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        rows = conn.execute(
            "SELECT check_id, status, severity, layer, confidence, evidence, refs"
            " FROM check_results WHERE scan_id = ? AND check_id = 'dns-open-resolver'",
            (sid,),
        ).fetchall()
        assert rows == [
            ("dns-open-resolver", "not-tested", "high", "network", None, None, '["RFC 5358"]')
        ]
        # Plain columns a report or a hand-written query can filter on.
        assert conn.execute(
            "SELECT count(*) FROM check_results WHERE status = 'finding' AND severity = 'critical'"
        ).fetchone() == (1,)
        conn.execute("DELETE FROM scans WHERE id = ?", (sid,))
        assert conn.execute("SELECT count(*) FROM check_results").fetchone() == (0,)
    conn.close()


def test_upgrade_from_0001_keeps_scans_and_adds_check_results(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:  # a database as mamori with schema 0001 left it
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(
                text(
                    "INSERT INTO scans (kind, status, started_at, targets, options,"
                    " mamori_version) VALUES ('scan', 'done', '2025-01-01 00:00:00',"
                    " '[\"127.0.0.1\"]', '{}', '0.1.0')"
                )
            )
        assert "check_results" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    with Store.open(str(db)) as store:
        (old,) = store.list_scans()
        rec = store.get_scan(old.id)
        assert rec is not None and rec.status is ScanStatus.DONE and rec.checks == ()
        store.add_check_result(old.id, GIT_EXPOSED)
        rec = store.get_scan(old.id)
        assert rec is not None and rec.checks == (GIT_EXPOSED,)
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        # And back: a downgrade to 0001 drops only the new table, keeping the scans.
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        assert "check_results" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scans")).scalar() == 1


def test_listeners_roundtrip_sorted_by_exposure(tmp_path: Path) -> None:
    listener_roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_listener_upsert_by_proto_address_port(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("check", ["localhost"], {})
        store.add_listener(sid, REDIS_ALL)
        later = replace(REDIS_ALL, firewall=Verdict.BLOCKED, firewall_rule="tcp dport 6379 drop")
        store.add_listener(sid, later)  # same key: replaced
        store.add_listener(sid, replace(REDIS_ALL, proto=Proto.UDP))  # any key part differs:
        store.add_listener(sid, replace(REDIS_ALL, port=6380))  # a listener of its own
        store.add_listener(sid, replace(REDIS_ALL, address="::", firewall=None))
        rec = store.get_scan(sid)
    assert rec is not None
    assert len(rec.listeners) == 4
    assert later in rec.listeners and REDIS_ALL not in rec.listeners
    # Allowed first (tcp before udp), then not asked (ranked as undetermined), then blocked.
    assert [(r.address, r.proto, r.port) for r in rec.listeners] == [
        ("0.0.0.0", Proto.TCP, 6380),
        ("0.0.0.0", Proto.UDP, 6379),
        ("::", Proto.TCP, 6379),
        ("0.0.0.0", Proto.TCP, 6379),
    ]


def test_bad_listeners_are_refused_and_nothing_written(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("check", ["localhost"], {})
        with pytest.raises(StoreError):
            store.add_listener(sid + 99, PG_LOOPBACK)  # no such scan
        with pytest.raises(StoreError, match="65535"):
            store.add_listener(sid, replace(PG_LOOPBACK, port=70000))
        with pytest.raises(StoreError, match="everywhere"):
            store.add_listener(sid, replace(PG_LOOPBACK, scope="everywhere"))  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="maybe"):
            store.add_listener(sid, replace(PG_LOOPBACK, firewall="maybe"))  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="sctp"):
            store.add_listener(sid, replace(PG_LOOPBACK, proto="sctp"))  # type: ignore[arg-type]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM listeners")).scalar() == 0


def test_listeners_columns_and_cascade(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(str(db)) as store:
        sid = store_check_scan(store)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        rows = conn.execute(
            "SELECT proto, address, port, scope, pid, process, username, firewall,"
            " firewall_backend, firewall_rule, service, probe_address, not_probed"
            " FROM listeners WHERE scan_id = ? ORDER BY port",
            (sid,),
        ).fetchall()
        assert len(rows) == len(SAMPLE_LISTENERS_ORDERED)
        assert rows[0] == (
            "tcp", "::", 22, "all", 700, "sshd", "root", "allowed", "nftables",
            "tcp dport 22 accept", "ssh", "::1", None,
        )  # fmt: skip
        # Plain columns a hand-written query can filter on: what is reachable and let in?
        assert conn.execute(
            "SELECT count(*) FROM listeners WHERE scope != 'loopback'"
            " AND firewall IN ('allowed', 'no-firewall')"
        ).fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM listeners WHERE firewall IS NULL").fetchone() == (
            2,
        )
        conn.execute("DELETE FROM scans WHERE id = ?", (sid,))
        assert conn.execute("SELECT count(*) FROM listeners").fetchone() == (0,)
    conn.close()


def test_upgrade_from_0002_keeps_data_and_adds_listeners(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:  # a database as mamori with schema 0002 left it
            command.upgrade(alembic_config(conn), "0002")
        assert "listeners" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    # Writing scans with the current models needs the new table, so fill it through SQL.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO scans (kind, status, started_at, targets, options, mamori_version)"
            " VALUES ('scan', 'done', '2025-01-01 00:00:00', '[\"127.0.0.1\"]', '{}', '0.1.0')"
        )
    conn.close()
    with Store.open(str(db)) as store:
        (old,) = store.list_scans()
        rec = store.get_scan(old.id)
        assert rec is not None and rec.status is ScanStatus.DONE and rec.listeners == ()
        sid = store_check_scan(store)
        rec = store.get_scan(sid)
        assert rec is not None and list(rec.listeners) == SAMPLE_LISTENERS_ORDERED
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        # And back: a downgrade to 0002 drops only the listeners, keeping scans and checks.
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert "listeners" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scans")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM check_results")).scalar() == 5


def test_every_sample_check_is_stored_once(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    assert sorted(c.key for c in rec.checks) == sorted(c.key for c in SAMPLE_CHECKS)


def test_list_scans_newest_first_with_counts_and_limit(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        ids = [store_sample_scan(store) for _ in range(3)]
        empty = store.begin_scan("check", [], {})
        got = store.list_scans()
        assert [s.id for s in got] == [empty, *reversed(ids)]
        assert (got[0].open_ports, got[0].error_count, got[0].kind) == (0, 0, "check")
        assert all(s.open_ports == 4 and s.error_count == 3 for s in got[1:])
        assert [s.id for s in store.list_scans(limit=2)] == [empty, ids[-1]]


def test_stale_running_scans_are_judged_by_pid_and_host(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is gone
    with Store.open(str(db)) as store:
        s_dead = store.begin_scan("scan", ["127.0.0.1"], {})
        s_alive = store.begin_scan("scan", ["127.0.0.1"], {})
        s_other_host = store.begin_scan("scan", ["127.0.0.1"], {})
        s_done = store_sample_scan(store)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE scans SET pid = ? WHERE id = ?", (dead.pid, s_dead))
        conn.execute(
            "UPDATE scans SET pid = ?, hostname = 'some-other-host' WHERE id = ?",
            (dead.pid, s_other_host),
        )
    conn.close()
    with Store.open(str(db)) as store:
        records = {sid: store.get_scan(sid) for sid in (s_dead, s_alive, s_other_host, s_done)}
    status = {sid: rec.status for sid, rec in records.items() if rec is not None}
    assert status == {
        s_dead: ScanStatus.INTERRUPTED,
        s_alive: ScanStatus.RUNNING,  # this test process is alive
        s_other_host: ScanStatus.RUNNING,  # a pid on another host means nothing here
        s_done: ScanStatus.DONE,
    }


def test_sigkilled_writer_leaves_consistent_db_and_scan_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        writer_command(str(db)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    scan_id = None
    last = 0
    deadline = time.monotonic() + 40
    try:
        for line in proc.stdout:
            if line.startswith("scan "):
                scan_id = int(line.split()[1])
            elif line.startswith("committed "):
                last = int(line.split()[1])
                if last >= 300:
                    break
            assert time.monotonic() < deadline, "writer too slow"
    finally:
        # SIGKILL while the writer is in the middle of its next write.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # The writer may have committed (and printed) a few more before the kill landed: what is
    # still in the pipe counts too.
    for line in proc.stdout.read().splitlines():
        if line.startswith("committed "):
            last = int(line.split()[1])
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, stderr
    assert scan_id is not None and last >= 300, stderr

    # Raw look first, before Store.open touches anything.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT status FROM scans WHERE id = ?", (scan_id,)).fetchone() == (
            "running",
        )
    conn.close()

    with Store.open(str(db)) as store:
        rec = store.get_scan(scan_id)
        assert rec is not None
        assert rec.status is ScanStatus.INTERRUPTED
        assert rec.finished_at is None
        (host,) = rec.hosts
        ports = [ep.port for ep in host.endpoints]
        # Every reported commit is there, in one unbroken run (at most one more, committed
        # just before the kill and not yet printed).
        assert ports == list(range(1, len(ports) + 1))
        assert last <= len(ports) <= last + 1
        assert all((ep.service is not None) == (ep.port % 3 == 0) for ep in host.endpoints)
        assert len(rec.errors) in {len(ports) // 10, len(ports) // 10 - 1, len(ports) // 10 + 1}
        with store.engine.connect() as conn2:
            assert conn2.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        # The store stays usable for the next scan.
        nxt = store.begin_scan("scan", ["127.0.0.1"], {})
        store.add_endpoint(nxt, Endpoint("127.0.0.1", 1, Proto.TCP, PortState.OPEN, Reason.SYN_ACK))
        store.finish_scan(nxt, ScanStatus.DONE)
        assert [s.status for s in store.list_scans()] == [ScanStatus.DONE, ScanStatus.INTERRUPTED]


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    # Several CLI processes starting at once on a brand-new database: one migrates, the
    # others wait for it instead of failing with "table already exists".
    db = tmp_path / "race.db"
    code = f"from mamori.store import Store; Store.open({str(db)!r}).close()"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_HEAD,)
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_schema_head_constant_matches_migration_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [SCHEMA_HEAD]


def test_models_and_migrations_agree_and_downgrade_works(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(str(db)) as store:  # upgrade head via the real code path
        store_sample_scan(store)
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
            assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        assert set(inspect(engine).get_table_names()) == {
            "alembic_version",
            "scans",
            "hosts",
            "endpoints",
            "services",
            "errors",
            "check_results",
            "listeners",
            "incidents",
            "events",
            "web_checks",
            "serve_blocks",
            "accepted_risks",
            "path_reports",
            "watch_blocks",
        }
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
    with Store.open(str(db)) as store:
        assert store.list_scans() == []  # downgrade dropped the data, upgrade rebuilt empty


def test_open_of_current_db_is_fast_and_skips_alembic(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    Store.open(str(db)).close()
    code = (
        "import sys, time\n"
        "from mamori.store import Store\n"
        "t = time.perf_counter()\n"
        f"Store.open({str(db)!r}).close()\n"
        "print(time.perf_counter() - t)\n"
        "print('alembic' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out[1] == "False"  # alembic never imported when the schema is current
    assert float(out[0]) < 1.0
