"""The Celery job backend: web processes enqueue check ids on Redis; ``mamori worker``
processes on any number of machines run them against the shared (PostgreSQL) store.

The check rows in the store are the truth; a Celery message carries only a check id, and a
worker only ever runs what ``run_web_check`` finds queued in the store (re-judged with the
current scope policy), so whoever can write to the broker cannot make a worker probe
anything a visitor did not ask for from that address. Celery's own result backend is off.

Delivery: ``acks_late`` (a job is acknowledged when it ends, not when it starts),
``task_reject_on_worker_lost`` (a pool process that dies mid-check puts its job back on the
queue), prefetch 1 (a worker holds no more jobs than it runs), a Redis visibility timeout
longer than the hard time limit (an unacknowledged job of a dead worker is delivered again),
soft and hard time limits above the check's own ``check_timeout``.

Recovery, so that no check stays "running" after its worker died:

- a job whose check is still "running" under a worker known to be dead (same host, process
  gone: the pool process was killed and Celery re-queued the job) takes the check over;
- the sweeper in every worker's main process (every ``requeue_after / 3`` seconds) puts
  running checks whose heartbeat is older than ``requeue_after`` back to "queued" and sends
  their job again (the machine or the whole worker died), and re-sends jobs of checks queued
  for long (a message lost with a Redis restart);
- a check is run at most ``max_attempts`` times; then it ends "failed" (a check that kills
  its worker every time is not retried forever);
- and the web process's own stale sweep fails any check silent for ``stale_after``.

A check deleted by its visitor while it runs is stopped by the worker's watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from mamori.procs import pid_alive
from mamori.serve.settings import HARD_LIMIT_MARGIN, SOFT_LIMIT_MARGIN
from mamori.serve.worker import run_web_check, worker_name

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]  # no stubs

    from mamori.serve.scanner import Scanner
    from mamori.serve.settings import ServeSettings
    from mamori.store import Store

log = logging.getLogger("mamori.serve")

TASK_NAME = "mamori.run_check"
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                 "interval_max": 1.0}


# -- settings ----------------------------------------------------------------------------------

def safe_url(url: str | None) -> str:
    """The URL with any password masked, for messages."""
    if not url:
        return "-"
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def celery_config(s: ServeSettings) -> dict[str, Any]:
    """Celery's settings for ``s`` (web process and workers alike)."""
    return {
        "broker_url": s.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": s.visibility_timeout,
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
        },
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": s.celery_queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_soft_time_limit": s.check_timeout + SOFT_LIMIT_MARGIN,
        "task_time_limit": s.check_timeout + HARD_LIMIT_MARGIN,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 200,
        # A broker outage does not stop running checks: a job delivered again afterwards
        # finds its check running or finished in the store and does nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_send_task_events": False,
        "worker_disable_rate_limits": True,
        "enable_utc": True,
        "timezone": "UTC",
    }


def make_celery(s: ServeSettings, *, worker: bool = False) -> Celery:
    """The Celery app. With ``worker``: the task and the sweeper are registered too (the web
    process only sends jobs by name)."""
    from celery import Celery

    app = Celery("mamori", set_as_current=False, fixups=[])
    app.conf.update(celery_config(s))
    if worker:
        _register_worker_parts(app, s)
    return app


# -- one job ---------------------------------------------------------------------------------

def owner_is_dead(worker: str | None) -> bool:
    """True when ``worker`` ("host:pid", as ``worker_name`` writes it) is a process of this
    host that no longer runs, or this very process (which runs one job at a time)."""
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) == os.getpid() or not pid_alive(int(pid))


def run_job(check_id: int, settings: ServeSettings, store: Store, *,
            scanner: Scanner | None = None, worker: str | None = None) -> str | None:
    """What a delivered job does: run the check if it is queued; take it over first if it is
    "running" under a dead worker (or silent past ``requeue_after``); nothing otherwise (a
    duplicate delivery, or a check finished or deleted). Returns the final status the check
    got here, or None."""
    from mamori.store import serve as db
    from mamori.store import serve_jobs as jobs

    me = worker or worker_name()
    check = db.get(store, check_id)
    if check is None:
        return None
    if check.status == db.RUNNING:
        now = datetime.now(UTC)
        if owner_is_dead(check.worker):
            outcome = jobs.recover(store, check_id, now, max_attempts=settings.max_attempts,
                                   dead_worker=check.worker)
        else:
            outcome = jobs.recover(store, check_id, now, max_attempts=settings.max_attempts,
                                   lease=settings.requeue_after)
        if outcome is None:
            log.info("check %s is running on %s: this delivery has nothing to do",
                     check_id, check.worker)
            return None
        log.warning("check %s: its worker %s is gone; %s", check_id, check.worker,
                    "running it again" if outcome == db.QUEUED else "it has failed")
        if outcome == db.FAILED:
            return db.FAILED
    elif check.status != db.QUEUED:
        return None
    return asyncio.run(_watched(check_id, settings, store, scanner, me))


async def _watched(check_id: int, settings: ServeSettings, store: Store,
                   scanner: Scanner | None, me: str) -> str | None:
    """``run_web_check``, stopped when the check is deleted or ended by someone else."""
    job = asyncio.create_task(run_web_check(check_id, settings, store, scanner=scanner,
                                            worker=me))
    watch = asyncio.create_task(_watch(store, check_id, settings.heartbeat_seconds))
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not job.done() and not watch.done():  # we are being cancelled: stop both
            job.cancel()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    if job.done():
        return job.result()
    log.info("check %s %s: stopping it", check_id, watch.result())
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    return None


async def _watch(store: Store, check_id: int, every: float) -> str:
    from mamori.store import StoreError
    from mamori.store import serve as db

    while True:
        await asyncio.sleep(every)
        try:
            check = db.get(store, check_id)
        except StoreError as exc:
            log.warning("check %s: cannot read its state: %s", check_id, exc)
            continue
        if check is None:
            return "was deleted"
        if check.status not in db.ACTIVE:
            return f"was ended elsewhere ({check.status})"


# -- the worker's parts ----------------------------------------------------------------------

_PROCESS: dict[str, Any] = {}


def process_store(url: str | None) -> Store:
    """This process's store, opened on first use. A store inherited across fork (the pool
    forks its processes from the main one) is dropped without touching its connections."""
    from mamori.store import Store

    held = _PROCESS.get("store")
    if held is not None and _PROCESS.get("pid") == os.getpid():
        assert isinstance(held, Store)
        return held
    if held is not None:
        held.engine.dispose(close=False)
    store = Store.open(url)
    _PROCESS.update(pid=os.getpid(), store=store)
    return store


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)


class Sweeper:
    """Finds checks whose worker died and gets them run again (or failed); re-sends jobs of
    checks queued for long. ``send(check_id)`` publishes a job."""

    def __init__(self, settings: ServeSettings, store: Store,
                 send: Callable[[int], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.store, self.send, self.clock = settings, store, send, clock
        self.resend_after = 4 * settings.requeue_after
        self._resent: dict[int, float] = {}

    def sweep(self, now: datetime | None = None) -> SweepReport:
        from mamori.store import serve as db
        from mamori.store import serve_jobs as jobs

        s, report = self.settings, SweepReport()
        now = now or datetime.now(UTC)
        mono = self.clock()
        for check_id in jobs.stale_running(self.store, now, s.requeue_after):
            outcome = jobs.recover(self.store, check_id, now, max_attempts=s.max_attempts,
                                   lease=s.requeue_after)
            if outcome == db.QUEUED:
                self.send(check_id)
                self._resent[check_id] = mono
                report.requeued.append(check_id)
            elif outcome == db.FAILED:
                report.failed.append(check_id)
        waiting = jobs.queued_before(self.store, now - timedelta(seconds=self.resend_after))
        self._resent = {k: v for k, v in self._resent.items() if k in set(waiting)}
        for check_id in waiting:
            last = self._resent.get(check_id)
            if last is not None and mono - last < self.resend_after:
                continue
            self.send(check_id)
            self._resent[check_id] = mono
            report.resent.append(check_id)
        for what, ids in (("re-queued (worker gone)", report.requeued),
                          ("failed (worker gone, attempts used)", report.failed),
                          ("job sent again (queued for long)", report.resent)):
            if ids:
                log.warning("sweeper: checks %s %s", ", ".join(map(str, ids)), what)
        return report


def _register_worker_parts(app: Celery, s: ServeSettings) -> None:
    from celery import bootsteps
    from celery.signals import worker_process_init  # type: ignore[import-untyped]

    def run_check(check_id: object) -> str | None:
        if not isinstance(check_id, int) or isinstance(check_id, bool) or check_id < 1:
            log.error("ignoring a job with a bad check id: %r", check_id)
            return None
        return run_job(check_id, s, process_store(s.db))

    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)(run_check)

    def send(check_id: int) -> None:
        app.send_task(TASK_NAME, args=[check_id], queue=s.celery_queue, retry=True,
                      retry_policy=PUBLISH_RETRY)

    holder: dict[str, Any] = {}

    def _forget_parent_store(**_: Any) -> None:
        # A pool process forked from the main one inherits the sweeper's connections: drop
        # them unclosed (closing would end the parent's sessions).
        sweeper = holder.pop("sweeper", None)
        if sweeper is not None:
            sweeper.store.engine.dispose(close=False)

    worker_process_init.connect(_forget_parent_store, weak=False)

    class SweepStep(bootsteps.StartStopStep):  # type: ignore[misc]
        requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None
            self.thread: threading.Thread | None = None

        def start(self, parent: Any) -> None:
            every = max(1.0, s.requeue_after / 3)
            self.tref = parent.timer.call_repeatedly(every, self.tick, priority=10)

        def stop(self, parent: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()

        def tick(self) -> None:
            # In a thread: a slow database must never hold up the worker's own event loop.
            if self.thread is not None and self.thread.is_alive():
                return
            self.thread = threading.Thread(target=self.sweep_once, name="mamori-sweeper",
                                           daemon=True)
            self.thread.start()

        def sweep_once(self) -> None:
            from mamori.store import Store, StoreError

            try:
                sweeper = holder.get("sweeper")
                if sweeper is None:
                    sweeper = holder["sweeper"] = Sweeper(s, Store.open(s.db), send)
                sweeper.sweep()
            except StoreError as exc:
                log.warning("sweeper: %s", exc)
            except Exception:  # the broker, or a bug: logged, tried again next time
                log.exception("sweeper failed")

    app.steps["worker"].add(SweepStep)


# -- the web process's side ------------------------------------------------------------------

class CeleryBackend:
    """``JobBackend`` for web processes in front of ``mamori worker``s: enqueue, read."""

    def __init__(self, settings: ServeSettings, store: Store,
                 app: Celery | None = None) -> None:
        self.settings, self.store = settings, store
        self._app = app

    def start(self) -> None:
        if self._app is None:
            self._app = make_celery(self.settings)
        log.info("jobs go to %s, queue %s", safe_url(self.settings.broker_url),
                 self.settings.celery_queue)

    def stop(self) -> None:
        if self._app is not None:
            self._app.close()

    def submit(self, check_id: int) -> None:
        """Send the job. When the broker cannot be reached the check ends failed at once
        (the visitor is told, its address is free again) instead of waiting in "queued"."""
        from kombu.exceptions import KombuError

        from mamori.store import StoreError
        from mamori.store import serve as db

        if self._app is None:
            raise RuntimeError("the job backend is not started")
        try:
            self._app.send_task(TASK_NAME, args=[check_id], queue=self.settings.celery_queue,
                                retry=True, retry_policy=PUBLISH_RETRY)
        except (KombuError, OSError) as exc:
            log.error("check %s: cannot reach the job queue %s: %s", check_id,
                      safe_url(self.settings.broker_url), exc)
            try:
                db.finish(self.store, check_id, db.FAILED, datetime.now(UTC),
                          "the service's job queue could not be reached; try again later")
            except StoreError as store_exc:
                log.error("check %s: could not be marked failed: %s", check_id, store_exc)

    def cancel(self, check_id: int) -> bool:
        """Checks run elsewhere: the worker's watchdog stops one whose row is deleted (which
        the caller does next). False: nothing ran here."""
        return False

    def status(self, check_id: int) -> str | None:
        from mamori.store import serve as db

        check = db.get(self.store, check_id)
        return check.status if check is not None and check.active else None
