"""Job backends: who runs the stored checks. The web process only calls ``submit``.

``JobBackend`` is the protocol (a Celery backend implements the same four calls);
``EmbeddedBackend`` is the default: an asyncio pool of ``settings.workers`` coroutines on one
background thread with its own event loop, in the web process. Checks run there so that
probing and the store writes it makes never hold up the loop that serves pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Protocol

from mamori.procs import pid_alive
from mamori.serve.scanner import Scanner
from mamori.serve.settings import ServeSettings
from mamori.serve.worker import run_web_check, worker_name
from mamori.store import Store, StoreError
from mamori.store import serve as db

log = logging.getLogger("mamori.serve")


class JobBackend(Protocol):
    def start(self) -> None:
        """Begin taking work (re-queue what a previous run left queued, where it applies)."""
        ...

    def stop(self) -> None:
        """Stop: running checks end as failed ("stopped"), never as "running"."""
        ...

    def submit(self, check_id: int) -> None:
        """Run stored check ``check_id`` (already committed with status "queued")."""
        ...

    def cancel(self, check_id: int) -> bool:
        """Stop the check if this backend is running it; True when it was."""
        ...

    def status(self, check_id: int) -> str | None:
        """"queued" or "running" as this backend sees it, None when it does not hold it."""
        ...


class EmbeddedBackend:
    def __init__(self, settings: ServeSettings, store: Store,
                 scanner: Scanner | None = None) -> None:
        self.settings, self.store, self.scanner = settings, store, scanner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[int] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._running: dict[int, asyncio.Task[str | None]] = {}
        self._queued: set[int] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_loop, name="mamori-serve-jobs",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self._recover()

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._queue = asyncio.Queue()
        self._workers = [loop.create_task(self._work()) for _ in range(self.settings.workers)]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _recover(self) -> None:
        """Checks a dead earlier process of this host left running fail now (the stale sweep
        catches the others); checks it left queued run again."""
        me = socket.gethostname()
        try:
            for check_id in db.ids_with_status(self.store, db.RUNNING):
                check = db.get(self.store, check_id)
                if check is None or check.worker is None:
                    continue
                host, _, pid = check.worker.rpartition(":")
                if host == me and pid.isdigit() and (int(pid) == os.getpid()
                                                     or not pid_alive(int(pid))):
                    db.finish(self.store, check_id, db.FAILED, datetime.now(UTC),
                              "the server stopped during the check")
            for check_id in db.ids_with_status(self.store, db.QUEUED):
                self.submit(check_id)
        except StoreError as exc:
            log.warning("could not recover earlier checks: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            loop.stop()

        loop.call_soon_threadsafe(lambda: loop.create_task(shutdown()))
        thread.join(timeout)
        self._thread = self._loop = None

    # -- the protocol ----------------------------------------------------------------------

    def submit(self, check_id: int) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            raise RuntimeError("the job backend is not started")
        with self._lock:
            self._queued.add(check_id)
        loop.call_soon_threadsafe(queue.put_nowait, check_id)

    def cancel(self, check_id: int) -> bool:
        with self._idle:
            task = self._running.get(check_id)
            self._queued.discard(check_id)
            self._idle.notify_all()
        if task is None or self._loop is None:
            return False
        self._loop.call_soon_threadsafe(task.cancel)
        return True

    def status(self, check_id: int) -> str | None:
        with self._lock:
            if check_id in self._running:
                return "running"
            return "queued" if check_id in self._queued else None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or running here (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._queued and not self._running, timeout)

    # -- the pool --------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        me = worker_name()
        while True:
            check_id = await self._queue.get()
            with self._lock:
                if check_id not in self._queued:
                    continue  # cancelled while queued
            task = asyncio.create_task(run_web_check(
                check_id, self.settings, self.store, scanner=self.scanner, worker=me))
            with self._lock:
                self._queued.discard(check_id)
                self._running[check_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the pool is stopping: stop the check, let it close
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    raise
            except Exception:
                log.exception("check %s: unexpected error", check_id)
            finally:
                with self._idle:
                    self._running.pop(check_id, None)
                    self._idle.notify_all()
