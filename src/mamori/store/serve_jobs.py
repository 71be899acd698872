"""Store functions for the Celery job backend: running a check again after its worker died.

A web check's row is the truth about it; Celery messages only carry its id. When the worker
running a check dies (its process killed, its machine gone), the row stays "running" with a
heartbeat that stops moving. These functions put such a check back to "queued" (so that a
live worker runs it again from the start) or, once it has used its attempts, end it as
failed. Every change is one conditional update, so two workers (or a worker and the web
process's stale sweep) racing for the same check change it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from mamori.model import ScanStatus
from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import ScanRow, WebCheckRow
from mamori.store.serve import DONE, FAILED, QUEUED, RUNNING
from mamori.store.store import Store

__all__ = ["DONE", "FAILED", "QUEUED", "RUNNING", "queued_before", "recover", "stale_running"]


def stale_running(store: Store, now: datetime, lease: float) -> list[int]:
    """Running checks whose heartbeat is older than ``lease`` seconds (or missing)."""
    cutoff = now - timedelta(seconds=lease)
    try:
        with store.engine.begin() as conn:
            return list(conn.execute(
                select(WebCheckRow.id).where(
                    WebCheckRow.status == RUNNING,
                    (WebCheckRow.heartbeat_at < cutoff) | WebCheckRow.heartbeat_at.is_(None))
                .order_by(WebCheckRow.id)
            ).scalars())
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def queued_before(store: Store, cutoff: datetime, limit: int = 100) -> list[int]:
    """Queued checks created before ``cutoff`` (their job message may have been lost)."""
    try:
        with store.engine.begin() as conn:
            return list(conn.execute(
                select(WebCheckRow.id)
                .where(WebCheckRow.status == QUEUED, WebCheckRow.created_at < cutoff)
                .order_by(WebCheckRow.id).limit(limit)
            ).scalars())
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def recover(store: Store, check_id: int, now: datetime, *, max_attempts: int,
            lease: float | None = None, dead_worker: str | None = None) -> str | None:
    """Recover running check ``check_id`` from a worker that died.

    The check must still be running and either silent for ``lease`` seconds or owned by
    ``dead_worker`` (a worker known to be dead). With attempts left it goes back to
    "queued" and its partial scan is deleted (the next attempt starts a new one; a visitor's
    results are never kept past their expiry by an orphaned scan); otherwise it ends
    "failed" with its partial scan kept and marked interrupted. Returns "queued", "failed",
    or None when the check was not in that state (someone else recovered or finished it).
    """
    if lease is None and dead_worker is None:
        raise ValueError("recover needs a lease or a dead worker")
    cond = [WebCheckRow.id == check_id, WebCheckRow.status == RUNNING]
    if dead_worker is not None:
        cond.append(WebCheckRow.worker == dead_worker[:255])
    if lease is not None:
        cutoff = now - timedelta(seconds=lease)
        cond.append((WebCheckRow.heartbeat_at < cutoff) | WebCheckRow.heartbeat_at.is_(None))
    try:
        with store.engine.begin() as conn:
            row = conn.execute(
                select(WebCheckRow.attempts, WebCheckRow.scan_id, WebCheckRow.worker)
                .where(*cond)
            ).first()
            if row is None:
                return None
            if row.attempts >= max_attempts:
                return _fail(conn, check_id, row.scan_id, cond, now, row.attempts, row.worker)
            result = conn.execute(
                update(WebCheckRow).where(*cond).values(
                    status=QUEUED, stage="queued", started_at=None, heartbeat_at=None,
                    done=0, total=0, scan_id=None, failure=None)
            )
            if result.rowcount != 1:
                return None
            if row.scan_id is not None:
                _delete_scans(conn, [row.scan_id])
            return QUEUED
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def _fail(conn: Connection, check_id: int, scan_id: int | None, cond: Sequence[object],
          now: datetime, attempts: int, worker: str | None) -> str | None:
    tries = "once" if attempts == 1 else f"{attempts} times"
    result = conn.execute(
        update(WebCheckRow).where(*cond).values(  # type: ignore[arg-type]
            status=FAILED, finished_at=now, active_key=None, stage="failed",
            failure=f"the worker running this check stopped ({worker or 'unknown'}); "
                    f"it was tried {tries}")
    )
    if result.rowcount != 1:
        return None
    if scan_id is not None:
        conn.execute(
            update(ScanRow)
            .where(ScanRow.id == scan_id, ScanRow.status == ScanStatus.RUNNING.value)
            .values(status=ScanStatus.INTERRUPTED.value, finished_at=now)
        )
    return FAILED


def _delete_scans(conn: Connection, scan_ids: Sequence[int]) -> None:
    # endpoints, services, errors and check results go with their scan (ON DELETE CASCADE)
    conn.execute(delete(ScanRow).where(ScanRow.id.in_(scan_ids)))
