"""mamori serve, the stored side: the 0005 migration, web checks through their states, and
``run_web_check`` / the embedded backend against real listeners on visitor addresses
(127.0.151.x), including a worker process killed mid-check."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from mamori.model import ScanStatus
from mamori.serve.app import maintain
from mamori.serve.backend import EmbeddedBackend
from mamori.serve.settings import ServeSettings
from mamori.serve.state import make_state
from mamori.serve.worker import run_web_check
from mamori.store import Store
from mamori.store import serve as db
from mamori.store.migrate import SCHEMA_HEAD, alembic_config
from mamori.store.models import Base, ScanRow
from serve_helpers import RecordingScanner, settings_for
from threaded_server import ThreadedServer

VISITOR = "127.0.151.30"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "serve.db")) as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return settings_for(tmp_path, 8080, db=str(tmp_path / "serve.db"),
                        allow_networks=["127.0.151.0/25"], stale_after=1.0)


def _new(store: Store, peer: str = VISITOR, *, ports: tuple[int, ...] = (1,),
         now: datetime = NOW, days: int = 7, max_active: int = 8, token: str | None = None,
         checks: tuple[str, ...] = ()) -> int:
    return db.create_check(
        store, token=token or f"tok-{peer}-{time.monotonic_ns()}", peer=peer, prefix=peer,
        profile="custom", tcp_ports=ports, udp_ports=(), checks=checks, owner_hash="o" * 64,
        now=now, expires_at=now + timedelta(days=days), max_active=max_active)


def _banner_server(host: str, banner: bytes) -> ThreadedServer:
    def handle(conn: socket.socket) -> None:
        conn.sendall(banner)
        time.sleep(0.2)

    return _bound(ThreadedServer(host, 0, handle))


def _tarpit(host: str) -> ThreadedServer:
    """Accepts and says nothing: identification waits on it for seconds."""
    return _bound(ThreadedServer(host, 0, lambda conn: time.sleep(30), timeout=40))


def _bound(server: ThreadedServer) -> ThreadedServer:
    server.port = int(server.sock.getsockname()[1])
    return server


def test_migration_0005_matches_the_models_and_downgrades(store: Store) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == SCHEMA_HEAD  # 0005 or a later head
        assert compare_metadata(ctx, Base.metadata) == []
    _new(store)
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004")
    names = set(inspect(store.engine).get_table_names())
    assert "web_checks" not in names and "serve_blocks" not in names and "scans" in names
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    assert db.active_count(store) == 0


def test_one_active_check_per_address_and_a_global_cap(store: Store) -> None:
    first = _new(store, token="first")
    with pytest.raises(db.Busy) as busy:
        _new(store)
    assert (busy.value.why, busy.value.token) == ("address", "first")
    _new(store, "127.0.151.31", max_active=2)
    with pytest.raises(db.Busy) as busy:
        _new(store, "127.0.151.32", max_active=2)
    assert busy.value.why == "global"
    # Finishing frees the address (and a slot).
    assert db.claim(store, first, "w:1", NOW) is not None
    assert db.finish(store, first, db.DONE, NOW)
    _new(store, max_active=2)


def test_claim_happens_once_and_finish_only_ends_active_checks(store: Store) -> None:
    check_id = _new(store)
    claimed = db.claim(store, check_id, "host:123", NOW)
    assert claimed is not None and claimed.status == db.RUNNING and claimed.attempts == 1
    assert db.claim(store, check_id, "host:456", NOW) is None
    assert db.progress(store, check_id, done=3, total=10, stage="TCP sweep", now=NOW)
    assert db.finish(store, check_id, db.FAILED, NOW, "boom")
    assert not db.finish(store, check_id, db.DONE, NOW)  # already over
    assert not db.progress(store, check_id, done=4, total=10, stage="x", now=NOW)
    check = db.get(store, check_id)
    assert check is not None and (check.status, check.failure, check.done) == (db.FAILED, "boom", 3)


def test_stale_running_checks_fail_and_their_scans_close(store: Store) -> None:
    check_id = _new(store)
    db.claim(store, check_id, "gone:1", NOW)
    scan_id = store.begin_scan("web", [VISITOR], {})
    db.set_scan(store, check_id, scan_id)
    assert db.fail_stale(store, NOW + timedelta(seconds=30), stale_after=60) == []
    assert db.fail_stale(store, NOW + timedelta(seconds=90), stale_after=60) == [check_id]
    check = db.get(store, check_id)
    assert check is not None and check.status == db.FAILED and "stopped answering" in (
        check.failure or "")
    record = store.get_scan(scan_id)
    assert record is not None and record.status is ScanStatus.INTERRUPTED
    _new(store)  # the address is free again


def test_expired_results_are_purged_with_their_scans(store: Store) -> None:
    old = _new(store, "127.0.151.33", now=NOW - timedelta(days=10), days=7)
    db.claim(store, old, "w:1", NOW)
    scan_id = store.begin_scan("web", ["127.0.151.33"], {})
    db.set_scan(store, old, scan_id)
    db.finish(store, old, db.DONE, NOW)
    fresh = _new(store, "127.0.151.34")
    running_old = _new(store, "127.0.151.35", now=NOW - timedelta(days=10), days=7)
    assert db.purge_expired(store, NOW) == 1
    assert db.get(store, old) is None and store.get_scan(scan_id) is None
    assert db.get(store, fresh) is not None
    assert db.get(store, running_old) is not None  # never pulled from under a worker
    assert db.delete_check(store, fresh) and not db.delete_check(store, fresh)


def test_blocks(store: Store) -> None:
    assert db.add_block(store, "203.0.113.0/24", "abuse", "alice", NOW)
    assert not db.add_block(store, "203.0.113.0/24", "again", "bob", NOW)
    (block,) = db.list_blocks(store)
    assert (block.network, block.created_by) == ("203.0.113.0/24", "alice")
    assert db.remove_block(store, block.id) and db.list_blocks(store) == []


def test_run_web_check_records_a_real_scan(store: Store, settings: ServeSettings) -> None:
    with _banner_server(VISITOR, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") as srv:
        check_id = _new(store, ports=(srv.port, 2024), checks=("ssh-password-authentication",))
        scanner = RecordingScanner()
        status = asyncio.run(run_web_check(check_id, settings, store, scanner=scanner))
        again = asyncio.run(run_web_check(check_id, settings, store, scanner=scanner))
    assert (status, again) == ("done", None)  # a second delivery does nothing
    (request,) = scanner.requests
    assert request.address == VISITOR and request.tcp_ports == (srv.port,)  # 2024 dropped
    assert request.user_agent == settings.user_agent and request.helo_name == "[127.0.150.1]"
    check = db.get(store, check_id)
    assert check is not None and check.status == db.DONE and check.scan_id is not None
    assert check.total >= 1 and check.done == check.total
    record = store.get_scan(check.scan_id)
    assert record is not None and record.kind == "web" and record.status is ScanStatus.DONE
    (host,) = record.hosts
    (ep,) = [e for e in host.endpoints if e.state.value == "open"]
    assert ep.port == srv.port and ep.service is not None and ep.service.name == "ssh"


def test_a_stored_address_the_policy_refuses_is_never_probed(
        store: Store, settings: ServeSettings) -> None:
    check_id = _new(store, "127.0.151.200")  # outside allow_networks (127.0.151.0/25)
    scanner = RecordingScanner()
    assert asyncio.run(run_web_check(check_id, settings, store, scanner=scanner)) == "failed"
    assert scanner.requests == []
    check = db.get(store, check_id)
    assert check is not None and "loopback" in (check.failure or "")


def test_timeouts_cancellation_and_crashes_end_as_failed(
        store: Store, settings: ServeSettings) -> None:
    with _tarpit(VISITOR) as pit:
        slow = settings.model_copy(update={"check_timeout": 0.5})
        first = _new(store, ports=(pit.port,))
        assert asyncio.run(run_web_check(first, slow, store, scanner=RecordingScanner())) \
            == "failed"
        check = db.get(store, first)
        assert check is not None and "longer than" in (check.failure or "")

        second = _new(store, ports=(pit.port,))

        async def cancel_midway() -> None:
            task = asyncio.create_task(run_web_check(second, settings, store,
                                                     scanner=RecordingScanner()))
            await asyncio.sleep(0.8)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_midway())
        check = db.get(store, second)
        assert check is not None and check.status == db.FAILED and "stopped" in (
            check.failure or "")
        assert check.scan_id is not None
        record = store.get_scan(check.scan_id)
        assert record is not None and record.status is ScanStatus.INTERRUPTED

    class Broken:
        async def scan(self, *args: Any) -> None:
            raise RuntimeError("a bug")

    third = _new(store)
    assert asyncio.run(run_web_check(third, settings, store, scanner=Broken())) == "failed"
    check = db.get(store, third)
    assert check is not None and "a bug" in (check.failure or "")


_KILLED_WORKER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from mamori.serve.settings import load_serve_settings
    from mamori.serve.worker import run_web_check
    from mamori.store import Store
    url, check_id, empty = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    settings = load_serve_settings(Path(empty), allow_networks=["127.0.151.0/25"],
                                   heartbeat_seconds=0.2, probe_timeout=0.5,
                                   public_url="http://127.0.150.1:1")
    asyncio.run(run_web_check(check_id, settings, Store.open(url)))
""")


def test_a_worker_killed_mid_check_leaves_it_failed_never_running(
        tmp_path: Path, store: Store, settings: ServeSettings) -> None:
    with _tarpit(VISITOR) as pit:
        check_id = _new(store, ports=(pit.port,))
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER, str(tmp_path / "serve.db"),
                                 str(check_id), str(tmp_path / "settings.toml")])
        try:
            end = time.monotonic() + 20
            while True:
                check = db.get(store, check_id)
                assert check is not None
                if check.status == db.RUNNING and check.stage == "identifying":
                    break
                assert proc.poll() is None and time.monotonic() < end, "the worker never ran"
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert check.worker is not None and check.worker.endswith(f":{proc.pid}")
    check = db.get(store, check_id)
    assert check is not None and check.status == db.RUNNING  # nobody told the store yet
    time.sleep(1.2)  # stale_after is 1 s
    st = make_state(settings, store, EmbeddedBackend(settings, store))
    maintain(st)
    check = db.get(store, check_id)
    assert check is not None and check.status == db.FAILED
    with store.engine.connect() as conn:
        status = conn.execute(select(ScanRow.status).where(ScanRow.id == check.scan_id)).scalar()
    assert status == "interrupted"
    _new(store)  # and the visitor may start again


def test_embedded_backend_recovers_and_stops_cleanly(
        store: Store, settings: ServeSettings) -> None:
    with _banner_server(VISITOR, b"220 ftp ready\r\n") as srv, _tarpit("127.0.151.36") as pit:
        # Left by an earlier process of this host: one queued, one "running" by a dead pid.
        queued = _new(store, ports=(srv.port,))
        dead = _new(store, "127.0.151.37")
        db.claim(store, dead, f"{socket.gethostname()}:999999999", NOW)
        scanner = RecordingScanner()
        backend = EmbeddedBackend(settings, store, scanner)
        backend.start()
        try:
            assert backend.wait_idle(20)
            check = db.get(store, queued)
            assert check is not None and check.status == db.DONE
            check = db.get(store, dead)
            assert check is not None and check.status == db.FAILED
            # A check still running when the backend stops ends failed, not running.
            slow = _new(store, "127.0.151.36", ports=(pit.port,))
            backend.submit(slow)
            end = time.monotonic() + 10
            while backend.status(slow) != "running" and time.monotonic() < end:
                time.sleep(0.05)
            assert backend.status(slow) == "running"
        finally:
            stopping = threading.Thread(target=backend.stop)
            stopping.start()
            stopping.join(15)
        check = db.get(store, slow)
        assert check is not None and check.status == db.FAILED
    assert scanner.addresses() == [VISITOR, "127.0.151.36"]


def test_a_worker_that_lost_its_check_cannot_write_to_it(store: Store) -> None:
    """A zombie worker (alive but silent past the lease) whose check was re-queued and taken
    by another worker is fenced out: its progress and its final status are refused, and the
    new owner's run is what the visitor sees."""
    from mamori.store import serve_jobs

    check_id = _new(store)
    first = db.claim(store, check_id, "host-a:1", NOW)
    assert first is not None and first.attempts == 1
    later = NOW + timedelta(seconds=120)
    assert serve_jobs.recover(store, check_id, later, max_attempts=3, lease=60) == db.QUEUED
    second = db.claim(store, check_id, "host-b:2", later)
    assert second is not None and second.attempts == 2

    # the zombie wakes up and tries to report
    assert not db.progress(store, check_id, done=5, total=5, stage="zombie", now=later,
                           attempt=first.attempts)
    assert not db.finish(store, check_id, db.FAILED, later, "zombie", attempt=first.attempts)
    row = db.get(store, check_id)
    assert row is not None and row.status == db.RUNNING and row.worker == "host-b:2"
    assert row.stage != "zombie"

    # the owner's writes go through
    assert db.progress(store, check_id, done=1, total=2, stage="sweep", now=later,
                       attempt=second.attempts)
    assert db.finish(store, check_id, db.DONE, later, attempt=second.attempts)
    row = db.get(store, check_id)
    assert row is not None and row.status == db.DONE
