"""One web check, start to finish: claim it, probe the visitor's address, record everything.

``run_web_check`` is what every job backend calls (the embedded pool here, Celery workers
elsewhere). It claims the stored check (only a queued one: a second delivery of the same job
does nothing), judges the stored address again with the current scope policy (a worker never
probes what the policy refuses, whoever queued it), writes each result to the store as it
arrives, keeps a heartbeat so a dead worker's check can be failed by anyone, and always ends
the check as done or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from mamori.model import ScanStatus
from mamori.scan.store_sink import StoreSink
from mamori.serve.profiles import excluded
from mamori.serve.scanner import API_PROFILE, PipelineScanner, Scanner, ScanRequest
from mamori.serve.scope import judge_text
from mamori.serve.settings import ServeSettings
from mamori.store import Store, StoreError
from mamori.store import serve as db

log = logging.getLogger("mamori.serve")
PROGRESS_EVERY = 0.5  # seconds between progress writes


def _now() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Progress:
    """The pipeline's progress callback, written to the check row at most every 0.5 s."""

    def __init__(self, store: Store, check_id: int, clock: Callable[[], float],
                 attempt: int | None = None) -> None:
        self.store, self.check_id, self.clock, self.attempt = store, check_id, clock, attempt
        self.done = self.total = 0
        self.stage = "starting"
        self.written = 0.0

    def __call__(self, *, advance: int = 0, total: int | None = None,
                 stage: str | None = None) -> None:
        self.done += advance
        if total:
            self.total += total
        changed = stage is not None and stage != self.stage
        if stage:
            self.stage = stage
        if changed or self.clock() - self.written >= PROGRESS_EVERY:
            self.write()

    def write(self) -> None:
        self.written = self.clock()
        try:
            db.progress(self.store, self.check_id, done=min(self.done, self.total),
                        total=self.total, stage=self.stage, now=_now(),
                        attempt=self.attempt)
        except StoreError as exc:  # progress is best effort; results are not
            log.warning("check %s: progress not recorded: %s", self.check_id, exc)


async def _heartbeat(prog: _Progress, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        prog.write()


def build_request(check: db.WebCheck, settings: ServeSettings) -> ScanRequest:
    ex_tcp, ex_udp = excluded(settings)
    return ScanRequest(
        address=check.peer,
        tcp_ports=tuple(p for p in check.tcp_ports if p not in ex_tcp),
        udp_ports=tuple(p for p in check.udp_ports if p not in ex_udp),
        checks=check.checks,
        user_agent=settings.user_agent,
        helo_name=settings.smtp_helo,
        timeout=settings.probe_timeout,
        rate=settings.probe_rate,
        identify=check.profile != API_PROFILE,
    )


async def run_web_check(
    check_id: int,
    settings: ServeSettings,
    store: Store,
    *,
    scanner: Scanner | None = None,
    worker: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Run stored check ``check_id``; return its final status ("done"/"failed"), or None
    when it was not queued (already taken, finished or deleted). Cancellation marks the
    check failed and the scan interrupted, then propagates."""
    check = db.claim(store, check_id, worker or worker_name(), _now())
    if check is None:
        return None
    verdict = judge_text(check.peer, settings.scope_policy())
    if not verdict.allowed:
        db.finish(store, check_id, db.FAILED, _now(), f"refused: {verdict.reason}",
                  attempt=check.attempts)
        return db.FAILED
    request = build_request(check, settings)
    scan_id: int | None = None
    status, failure = db.DONE, None
    scan_status = ScanStatus.DONE
    beat: asyncio.Task[None] | None = None
    try:
        scan_id = store.begin_scan("web", [check.peer], {
            "profile": check.profile, "tcp_port_count": len(request.tcp_ports),
            "udp_port_count": len(request.udp_ports), "checks": list(request.checks),
            "web_check": check_id,
        })
        db.set_scan(store, check_id, scan_id, attempt=check.attempts)
        prog = _Progress(store, check_id, clock, check.attempts)
        beat = asyncio.create_task(_heartbeat(prog, settings.heartbeat_seconds))
        await asyncio.wait_for(scanner_or_default(scanner).scan(
            request, StoreSink(store, scan_id), prog), timeout=settings.check_timeout)
        prog.write()
    except asyncio.CancelledError:
        _close(store, check_id, scan_id, ScanStatus.INTERRUPTED, db.FAILED,
               "the check was stopped (the server shut down or the check was cancelled)",
               check.attempts)
        raise
    except TimeoutError:
        scan_status, status = ScanStatus.INTERRUPTED, db.FAILED
        failure = f"the check took longer than {int(settings.check_timeout)} s and was stopped"
    except Exception as exc:  # a bug or a broken store: recorded, never left "running"
        log.exception("check %s failed", check_id)
        scan_status, status = ScanStatus.FAILED, db.FAILED
        failure = f"the check could not run: {exc}"
    finally:
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
    if not _close(store, check_id, scan_id, scan_status, status, failure, check.attempts):
        return None  # the check was taken over (re-queued) or deleted meanwhile
    return status


def scanner_or_default(scanner: Scanner | None) -> Scanner:
    return scanner if scanner is not None else PipelineScanner()


def _close(store: Store, check_id: int, scan_id: int | None, scan_status: ScanStatus,
           status: str, failure: str | None, attempt: int | None = None) -> bool:
    """Close the scan and the check (this attempt only); False when the check was no longer
    ours to close."""
    try:
        if scan_id is not None:
            store.finish_scan(scan_id, scan_status)
        return db.finish(store, check_id, status, _now(), failure, attempt=attempt)
    except StoreError as exc:  # e.g. deleted meanwhile; the stale sweep covers the rest
        log.warning("check %s: could not be closed: %s", check_id, exc)
        return False
