"""mamori serve with the Celery backend: a real redis-server as broker, a real PostgreSQL as
the store, `mamori serve --backend celery` and two `mamori worker` processes, all started
here; Chromium runs a check through them; a pool process and then a whole worker are
SIGKILLed mid-check and the check still ends done (never stuck "running").

The parts of the recovery (lease, dead owner, attempts, lost jobs, the watchdog, an
unreachable broker) are tested first, in-process on SQLite.

Addresses: broker 127.0.155.1, PostgreSQL 127.0.155.2, web 127.0.155.3; visitors and target
redis servers 127.0.156.x; closed target ports on 127.0.157.x.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from browser import launch_chromium, new_guarded_context
from conftest import ROOT
from mamori.model import ScanStatus
from mamori.serve.celery_app import CeleryBackend, Sweeper, owner_is_dead, run_job, safe_url
from mamori.serve.settings import ServeSettings, ServeSettingsError, load_serve_settings
from mamori.serve.worker import worker_name
from mamori.store import Store
from mamori.store import serve as db
from mamori.store import serve_jobs as jobs
from mamori.store.models import ScanRow
from serve_helpers import SECRET, free_port, start_check

BROKER_HOST = "127.0.155.1"
PG_HOST = "127.0.155.2"
PG_PORT = 55441
WEB_HOST = "127.0.155.3"
BROWSER_VISITOR = "127.0.156.10"  # Chromium, through the trusted-proxy header
CHILD_KILL_VISITOR = "127.0.156.11"
WORKER_KILL_VISITOR = "127.0.156.12"
UNIT_TARGET = "127.0.157.20"  # nothing listens: every port closed
NOW = datetime(2030, 1, 1, tzinfo=UTC)
# 1 open port (the target redis) and 40 closed ones: at 8 probes/s about 5 s of sweep.
SLOW_PORTS = "6379,20000-20039"


# -- settings -------------------------------------------------------------------------------

def _settings(tmp: Path, **overrides: Any) -> ServeSettings:
    empty = tmp / "empty.toml"
    empty.write_text("")
    base: dict[str, Any] = {
        "secret_key": SECRET, "excluded_ports": "2024", "db": str(tmp / "serve.db"),
        "allow_loopback": True, "probe_timeout": 0.5, "heartbeat_seconds": 0.25,
        "requeue_after": 2.0, "stale_after": 60.0, "check_timeout": 60.0,
        "visibility_timeout": 600.0, "max_attempts": 2,
    }
    base.update(overrides)
    return load_serve_settings(empty, **base)


def test_celery_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = _settings(tmp_path, backend="celery", broker_url="redis://127.0.155.1:6379/0")
    assert ok.backend == "celery" and ok.requeue_after == 2.0
    # From the environment, as `mamori worker` on another machine gets them.
    monkeypatch.setenv("MAMORI_SERVE_BACKEND", "celery")
    monkeypatch.setenv("MAMORI_SERVE_BROKER_URL", "rediss://:pw@127.0.155.1:6380/2")
    monkeypatch.setenv("MAMORI_SERVE_MAX_ATTEMPTS", "3")
    env = load_serve_settings(tmp_path / "empty.toml")
    assert (env.backend, env.max_attempts) == ("celery", 3)
    assert env.broker_url is not None and safe_url(env.broker_url) == \
        "rediss://:**@127.0.155.1:6380/2"
    monkeypatch.delenv("MAMORI_SERVE_BACKEND")
    monkeypatch.delenv("MAMORI_SERVE_BROKER_URL")
    monkeypatch.delenv("MAMORI_SERVE_MAX_ATTEMPTS")
    problems = {
        "broker_url is needed": {"backend": "celery"},
        "must be a Redis URL": {"broker_url": "amqp://127.0.155.1//"},
        "requeue_after must be": {"backend": "celery", "broker_url": "redis://127.0.155.1",
                                  "requeue_after": 120.0, "stale_after": 60.0},
        "visibility_timeout must be": {"backend": "celery", "broker_url": "redis://127.0.155.1",
                                       "visibility_timeout": 100.0},
    }
    for words, overrides in problems.items():
        with pytest.raises(ServeSettingsError) as err:
            _settings(tmp_path, **overrides)
        assert words in str(err.value) and "\n" not in str(err.value)
    # The embedded backend keeps its own freedom (short stale_after in its tests).
    assert _settings(tmp_path, stale_after=1.0, requeue_after=30.0).backend == "embedded"


def test_worker_and_serve_refuse_bad_celery_input_with_one_line(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("")
    env = {"MAMORI_SETTINGS": str(settings), "MAMORI_DB": str(tmp_path / "x.db")}
    cases = [
        (["worker"], 2, "broker_url is needed"),
        (["serve", "--backend", "celery"], 2, "broker_url is needed"),
        (["serve", "--backend", "rabbit"], 2, "backend"),
        # A store that cannot be opened stops the worker before it forks or takes a job.
        (["worker", "--broker", f"redis://{BROKER_HOST}:1", "--db", str(tmp_path)], 3,
         "is a directory"),
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    full_env.update(env)
    running = [(args, code, words, subprocess.Popen(
        [sys.executable, "-m", "mamori", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT))
        for args, code, words in cases]  # in parallel: each pays Python's start-up
    for args, code, words, proc in running:
        stdout, stderr = proc.communicate(timeout=60)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert done.returncode == code, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, done.stderr)
        assert done.stdout == ""
    assert not (tmp_path / "x.db").exists()  # nothing was created for refused input


# -- the recovery parts, in-process ------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "serve.db")) as s:
        yield s


def _new(store: Store, peer: str = UNIT_TARGET, *, ports: tuple[int, ...] = (1,),
         now: datetime = NOW) -> int:
    return db.create_check(
        store, token=f"tok-{peer}-{time.monotonic_ns()}", peer=peer, prefix=peer,
        profile="custom", tcp_ports=ports, udp_ports=(), checks=(), owner_hash="o" * 64,
        now=now, expires_at=now + timedelta(days=7), max_active=50)


def _running(store: Store, worker: str, *, at: datetime = NOW, peer: str = UNIT_TARGET,
             ports: tuple[int, ...] = (1,)) -> tuple[int, int]:
    """A check claimed by ``worker`` at ``at`` with a partial scan; (check id, scan id)."""
    check_id = _new(store, peer, ports=ports, now=at)
    assert db.claim(store, check_id, worker, at) is not None
    scan_id = store.begin_scan("web", [peer], {"web_check": check_id})
    db.set_scan(store, check_id, scan_id)
    return check_id, scan_id


def _scan_exists(store: Store, scan_id: int) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(select(ScanRow.id).where(ScanRow.id == scan_id)).first() is not None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweeper_requeues_silent_checks_then_fails_them_and_resends_lost_jobs(
        tmp_path: Path, store: Store) -> None:
    settings = _settings(tmp_path)
    sent: list[int] = []
    clock = [100.0]
    sweeper = Sweeper(settings, store, sent.append, clock=lambda: clock[0])
    silent, silent_scan = _running(store, "elsewhere:1", peer="127.0.157.21")
    fresh, _ = _running(store, "elsewhere:2", at=NOW + timedelta(seconds=9),
                        peer="127.0.157.22")
    lost = _new(store, "127.0.157.23", now=NOW - timedelta(seconds=60))
    young = _new(store, "127.0.157.24", now=NOW + timedelta(seconds=9))

    report = sweeper.sweep(NOW + timedelta(seconds=10))
    assert report.requeued == [silent] and report.failed == []
    assert report.resent == [lost]  # queued 70 s > 4 x requeue_after; young is not
    assert sent == [silent, lost]
    again = db.get(store, silent)
    assert again is not None and again.status == db.QUEUED and again.scan_id is None
    assert (again.done, again.total, again.attempts) == (0, 0, 1)
    assert not _scan_exists(store, silent_scan)  # partial results do not outlive the check
    still = db.get(store, fresh)
    assert still is not None and still.status == db.RUNNING
    assert db.get(store, young) is not None

    # The same sweep a moment later: nothing new is due, a lost job is not re-sent yet.
    assert sweeper.sweep(NOW + timedelta(seconds=11)).resent == []
    clock[0] += 4 * settings.requeue_after
    assert lost in sweeper.sweep(NOW + timedelta(seconds=12)).resent

    # Second run of the silent check dies too: attempts are used up, it fails, scan kept.
    assert db.claim(store, silent, "elsewhere:3", NOW + timedelta(seconds=20))
    second_scan = store.begin_scan("web", ["127.0.157.21"], {})
    db.set_scan(store, silent, second_scan)
    report = sweeper.sweep(NOW + timedelta(seconds=40))
    assert silent in report.failed and silent not in report.requeued
    failed = db.get(store, silent)
    assert failed is not None and failed.status == db.FAILED and failed.attempts == 2
    assert failed.failure is not None and "tried 2 times" in failed.failure
    rec = store.get_scan(second_scan)
    assert rec is not None and rec.status is ScanStatus.INTERRUPTED
    # Two sweepers racing: the check is recovered once.
    racer, _ = _running(store, "elsewhere:4", peer="127.0.157.25")
    later = NOW + timedelta(seconds=50)
    outcomes = [jobs.recover(store, racer, later, max_attempts=2, lease=2.0) for _ in range(2)]
    assert outcomes == [db.QUEUED, None]


def test_a_job_takes_over_from_a_dead_owner_and_ignores_a_live_one(
        tmp_path: Path, store: Store) -> None:
    settings = _settings(tmp_path)
    host = worker_name().rpartition(":")[0]
    dead = f"{host}:{_dead_pid()}"
    assert owner_is_dead(dead) and not owner_is_dead(f"{host}:1")
    assert not owner_is_dead(f"another-host:{_dead_pid()}")  # unknown: wait for the lease

    now = datetime.now(UTC)
    orphan, _ = _running(store, dead, at=now, ports=(20001, 20002))
    assert run_job(orphan, settings, store) == db.DONE
    done = db.get(store, orphan)
    assert done is not None and (done.status, done.attempts) == (db.DONE, 2)
    assert done.worker == worker_name() and done.scan_id is not None
    rec = store.get_scan(done.scan_id)
    assert rec is not None and rec.status is ScanStatus.DONE
    assert rec.targets == (UNIT_TARGET,) and len(rec.hosts[0].endpoints) == 0
    assert _web_scans(store) == 1  # the dead owner's partial scan was dropped

    # A live owner with a fresh heartbeat: a second delivery of its job does nothing.
    busy, _ = _running(store, f"{host}:1", at=datetime.now(UTC), peer="127.0.157.26")
    assert run_job(busy, settings, store) is None
    still = db.get(store, busy)
    assert still is not None and (still.status, still.attempts) == (db.RUNNING, 1)
    # ... but once that heartbeat is older than requeue_after, the job runs it again.
    db.progress(store, busy, done=0, total=1, stage="x",
                now=datetime.now(UTC) - timedelta(seconds=10))
    assert run_job(busy, settings, store) == db.DONE

    # A check that already killed its worker max_attempts times is failed, not run again.
    poison, _ = _running(store, dead, at=datetime.now(UTC), peer="127.0.157.27")
    with store.engine.begin() as conn:
        from sqlalchemy import update

        from mamori.store.models import WebCheckRow
        conn.execute(update(WebCheckRow).where(WebCheckRow.id == poison).values(attempts=2))
    assert run_job(poison, settings, store) == db.FAILED
    assert run_job(poison, settings, store) is None  # over: a late duplicate does nothing
    # Deleted or finished checks: nothing.
    assert run_job(999_999, settings, store) is None


def test_the_watchdog_stops_a_check_deleted_while_it_runs(tmp_path: Path, store: Store) -> None:
    settings = _settings(tmp_path, probe_rate=10.0)
    check_id = _new(store, "127.0.157.28", ports=tuple(range(21000, 21100)), now=datetime.now(UTC))
    result: list[str | None] = []
    runner = threading.Thread(target=lambda: result.append(run_job(check_id, settings, store)))
    runner.start()
    end = time.monotonic() + 10
    while True:
        check = db.get(store, check_id)
        if check is not None and check.status == db.RUNNING and check.done > 0:
            break
        assert time.monotonic() < end, "the check did not start"
        time.sleep(0.05)
    deleted_at = time.monotonic()
    assert db.delete_check(store, check_id)
    runner.join(10)
    assert not runner.is_alive() and result == [None]
    # 100 ports at 10/s would take 10 s: it stopped within a heartbeat or two instead.
    assert time.monotonic() - deleted_at < 3
    with store.engine.connect() as conn:
        running = conn.execute(select(func.count()).select_from(ScanRow)
                               .where(ScanRow.status == ScanStatus.RUNNING.value)).scalar_one()
    assert running == 0


def test_an_unreachable_broker_fails_the_check_instead_of_leaving_it_queued(
        tmp_path: Path, store: Store) -> None:
    port = free_port(BROKER_HOST)  # nothing listens there
    settings = _settings(tmp_path, backend="celery", broker_url=f"redis://{BROKER_HOST}:{port}/0")
    backend = CeleryBackend(settings, store)
    backend.start()
    try:
        check_id = _new(store, "127.0.157.29", now=datetime.now(UTC))
        assert backend.status(check_id) == "queued"
        started = time.monotonic()
        backend.submit(check_id)
        assert time.monotonic() - started < 15
        check = db.get(store, check_id)
        assert check is not None and check.status == db.FAILED
        assert check.failure is not None and "job queue" in check.failure
        assert backend.status(check_id) is None and not backend.cancel(check_id)
        _new(store, "127.0.157.29")  # the address is free again
    finally:
        backend.stop()


# -- the real deployment -----------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_stopped(self, wait: float = 15) -> None:
        """Wait for the process to end (SIGKILL to its group after ``wait`` s); then end
        any of its pool processes left behind (their main process was killed)."""
        if self.popen.poll() is None:
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        for pid in _group_members(self.popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that run mamori (never someone else's, whatever the id)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == pgid and b"mamori" in cmdline:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Cluster:
    url: str
    db_url: str
    settings_file: Path
    store: Store
    web: Proc
    workers: list[Proc]
    targets: dict[str, Any] = field(default_factory=dict)

    def worker_of(self, check: db.WebCheck) -> Proc:
        """The `mamori worker` whose pool process runs ``check`` (by process group)."""
        assert check.worker is not None
        pid = int(check.worker.rpartition(":")[2])
        group = os.getpgid(pid)
        for w in self.workers:
            if w.popen.pid == group:
                return w
        raise AssertionError(f"check {check.id} runs in {check.worker}, not one of our workers")

    def client(self, source: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=source),
                            timeout=20, follow_redirects=False)


def _spawn(name: str, args: list[str], workdir: Path, env: dict[str, str]) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "mamori", *args], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                 start_new_session=True)
    return Proc(name, popen, log)


def _wait(what: str, ready: Callable[[], bool], timeout: float, *procs: Proc) -> None:
    end = time.monotonic() + timeout
    while not ready():
        for p in procs:
            assert p.popen.poll() is None, f"{p.name} exited:\n{p.text()[-3000:]}"
        assert time.monotonic() < end, f"{what} not ready in {timeout} s: " + "\n".join(
            p.text()[-1500:] for p in procs)
        time.sleep(0.1)


def _healthy(url: str) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.156.99")) as c:
            return c.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from daemons import running_all, start_redis
    from store_fixtures import create_pg_database, running_postgres

    work = tmp_path_factory.mktemp("celery")
    procs: list[Proc] = []
    with contextlib.ExitStack() as stack:
        visitors = (BROWSER_VISITOR, CHILD_KILL_VISITOR, WORKER_KILL_VISITOR)
        redises = stack.enter_context(running_all({
            name: lambda name=name, host=host: start_redis(_dir(work, name), host, 6379)
            for name, host in (("broker", BROKER_HOST), *((v, v) for v in visitors))
        }))
        targets = {visitor: redises[visitor] for visitor in visitors}
        base = stack.enter_context(running_postgres(PG_HOST, PG_PORT,
                                                    max_connections=60))
        db_url = create_pg_database(base, "serve_celery", PG_HOST, PG_PORT)
        port = free_port(WEB_HOST)
        settings_file = work / "settings.toml"
        settings_file.write_text(f"""exclude_ports = "2024"
[serve]
bind = "{WEB_HOST}"
port = {port}
public_url = "http://{WEB_HOST}:{port}"
secret_key = "{SECRET}"
db = "{db_url}"
backend = "celery"
broker_url = "redis://{BROKER_HOST}:6379/0"
allow_loopback = true
trusted_proxies = ["127.0.0.1"]
excluded_ports = "2024"
custom_max_ports = 100
probe_timeout = 0.5
probe_rate = 8.0
heartbeat_seconds = 0.5
requeue_after = 5.0
stale_after = 60.0
check_timeout = 120.0
visibility_timeout = 600.0
max_attempts = 2
""")
        env = {k: v for k, v in os.environ.items()
               if k != "MAMORI_DB" and not k.startswith("MAMORI_SERVE_")}
        env["MAMORI_SETTINGS"] = str(settings_file)
        store = stack.enter_context(Store.open(db_url))  # migrated before anyone else starts
        try:
            web = _spawn("web", ["serve"], work, env)
            procs.append(web)
            workers = [_spawn(f"worker{i}", ["worker", "--concurrency", "1", "--name",
                                             f"w{i}@celery-test"], work, env)
                       for i in (1, 2)]
            procs.extend(workers)
            url = f"http://{WEB_HOST}:{port}"
            _wait("web", lambda: _healthy(url), 60, web)
            _wait("workers", lambda: all(" ready." in w.text() for w in workers), 60,
                  *workers)
            yield Cluster(url, db_url, settings_file, store, web, workers, targets)
        finally:
            for p in procs:  # all at once; workers cold (a warm shutdown takes seconds)
                if p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM if p is web else signal.SIGQUIT)
            for p in procs:
                p.wait_stopped()


def _dir(base: Path, name: str) -> Path:
    path = base / name.replace(".", "_")
    path.mkdir()
    return path


def _wait_status(store: Store, token: str, pred: Callable[[db.WebCheck], bool],
                 timeout: float) -> db.WebCheck:
    end = time.monotonic() + timeout
    while True:
        check = db.get_by_token(store, token)
        assert check is not None
        if pred(check):
            return check
        assert time.monotonic() < end, f"check {check.id} stuck: {check}"
        time.sleep(0.05)


def _findings(store: Store, check: db.WebCheck) -> list[str]:
    assert check.scan_id is not None
    rec = store.get_scan(check.scan_id)
    assert rec is not None
    return [f.check_id for f in rec.findings]


def _web_scans(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ScanRow)
                                .where(ScanRow.kind == "web")).scalar_one())


def test_chromium_runs_a_check_through_celery_workers(cluster: Cluster, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (scripts/install-test-deps)")
    from mamori.checks.catalog import default_catalog

    title = default_catalog()["redis-unauthenticated"].title.en
    statuses: list[str] = []
    with sync_api.sync_playwright() as p:
        # No name is ever resolved; this Chromium applies the machine's "MAP * ~NOTFOUND"
        # (/etc/chromium.d) to IP literals too, so the server's literal is let through.
        browser = launch_chromium(p)
        try:
            # Chromium connects from 127.0.0.1, the trusted proxy of these settings; the
            # header it adds plays the proxy's part and names the visitor.
            context = new_guarded_context(
                browser, extra_http_headers={"X-Forwarded-For": BROWSER_VISITOR})
            page = context.new_page()

            def record(response: Any) -> None:
                if response.url.endswith("/status"):
                    with contextlib.suppress(Exception):
                        statuses.append(response.json()["status"])

            page.on("response", record)
            page.goto(cluster.url + "/")
            assert BROWSER_VISITOR in page.inner_text("main")
            page.check("input[name=profile][value=custom]")
            page.fill("input[name=ports]", "6379,20000-20015")
            page.check("input[name=consent]")
            page.click("#proceed")
            page.wait_for_url("**/checks/*")
            assert page.locator("#bar").count() == 1  # the progress page
            token = page.url.rsplit("/", 1)[1]
            page.wait_for_selector("text=Result for", timeout=60_000)
            text = page.inner_text("main")
            page.screenshot(path=str(tmp_path / "celery-result.png"), full_page=True)
        finally:
            browser.close()
    assert "running" in statuses  # the page followed the check while a worker ran it
    assert title in text and "6379" in text
    check = db.get_by_token(cluster.store, token)
    assert check is not None and (check.status, check.attempts) == (db.DONE, 1)
    assert check.peer == BROWSER_VISITOR
    cluster.worker_of(check)  # run by one of the two workers, not the web process
    assert "redis-unauthenticated" in _findings(cluster.store, check)
    assert (tmp_path / "celery-result.png").stat().st_size > 10_000


def _start_slow_check(cluster: Cluster, visitor: str) -> str:
    with cluster.client(visitor) as client:
        response = start_check(client, ports=SLOW_PORTS)
    assert response.status_code == 303, response.text[:300]
    return str(response.headers["location"]).rsplit("/", 1)[1]


def test_a_pool_process_killed_mid_check_gets_its_job_run_again(cluster: Cluster) -> None:
    scans_before = _web_scans(cluster.store)
    token = _start_slow_check(cluster, CHILD_KILL_VISITOR)
    check = _wait_status(cluster.store, token,
                         lambda c: c.status == db.RUNNING and c.done >= 4, 30)
    owner = cluster.worker_of(check)
    assert check.worker is not None
    pool_pid = int(check.worker.rpartition(":")[2])
    assert pool_pid != owner.popen.pid  # a pool process, not the worker's main process
    os.kill(pool_pid, signal.SIGKILL)

    final = _wait_status(cluster.store, token, lambda c: not c.active, 60)
    assert (final.status, final.attempts, final.failure) == (db.DONE, 2, None)
    assert final.worker != check.worker
    assert owner.popen.poll() is None  # the worker itself lives on, with a new pool process
    assert "redis-unauthenticated" in _findings(cluster.store, final)
    # Celery put the job back (reject on worker lost); the job that came back took the check
    # over from its dead owner at once (or, on a slow machine, the sweeper's lease did).
    logs = "".join(w.text() for w in cluster.workers)
    assert "WorkerLostError" in logs
    assert (f"check {final.id}: its worker {check.worker} is gone; running it again" in logs
            or f"sweeper: checks {final.id} re-queued" in logs), logs
    assert _web_scans(cluster.store) == scans_before + 1  # the partial scan was dropped


def test_a_worker_killed_mid_check_leaves_the_check_to_the_other(cluster: Cluster) -> None:
    scans_before = _web_scans(cluster.store)
    token = _start_slow_check(cluster, WORKER_KILL_VISITOR)
    check = _wait_status(cluster.store, token,
                         lambda c: c.status == db.RUNNING and c.done >= 4, 30)
    owner = cluster.worker_of(check)
    other = next(w for w in cluster.workers if w is not owner)
    killed_at = time.monotonic()
    os.killpg(owner.popen.pid, signal.SIGKILL)  # the machine is gone: main and pool process
    owner.popen.wait(10)

    final = _wait_status(cluster.store, token, lambda c: not c.active, 60)
    assert (final.status, final.attempts, final.failure) == (db.DONE, 2, None)
    assert cluster.worker_of(final) is other
    # Recovered by the lease (5 s) and the other worker's sweeper, long before the Redis
    # visibility timeout (600 s) or the web's stale sweep (60 s) would have acted.
    assert time.monotonic() - killed_at < 30
    assert f"sweeper: checks {final.id} re-queued" in other.text()
    assert "redis-unauthenticated" in _findings(cluster.store, final)
    assert _web_scans(cluster.store) == scans_before + 1
    with cluster.client(WORKER_KILL_VISITOR) as client:
        page = client.get(f"/checks/{token}")
    assert page.status_code == 200 and "Result for" in page.text
