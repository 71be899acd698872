"""Store functions for ``mamori serve``: web checks (queued → running → done | failed) and
the admin's blocked networks.

Every function is one transaction on ``store.engine`` and raises ``StoreError`` on database
failure. Status changes are conditional updates ("claim only if still queued", "finish only
if still running"), so a worker that lost its check to the stale sweep, or a check deleted
meanwhile, changes nothing. These are what any job backend (the embedded pool, Celery) uses.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mamori.model import ScanStatus
from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import CheckResultRow, ScanRow, ServeBlockRow, WebCheckRow
from mamori.store.store import Store

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ACTIVE = (QUEUED, RUNNING)
_PG_SUBMIT_LOCK = 0x6D616D6F7277  # serialises the global-cap check between web processes


@dataclass(frozen=True)
class WebCheck:
    id: int
    token: str
    status: str
    peer: str
    prefix: str
    profile: str
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...]
    checks: tuple[str, ...]
    owner_hash: str
    created_at: datetime
    expires_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    done: int
    total: int
    stage: str
    scan_id: int | None
    failure: str | None
    attempts: int
    worker: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Busy(Exception):
    """A new check was refused: ``why`` is "address" (one is already active for this peer;
    ``token`` is that check's) or "global" (the cap on active checks is reached)."""

    def __init__(self, why: str, token: str | None = None) -> None:
        super().__init__(why)
        self.why, self.token = why, token


@dataclass(frozen=True)
class Block:
    id: int
    network: str
    reason: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    last_day: int
    last_week: int
    median_seconds: float | None
    distinct_peers: int
    top_findings: list[tuple[str, int]]


def _row(m: Any) -> WebCheck:
    return WebCheck(
        id=m.id, token=m.token, status=m.status, peer=m.peer, prefix=m.prefix,
        profile=m.profile, tcp_ports=tuple(m.tcp_ports or ()),
        udp_ports=tuple(m.udp_ports or ()), checks=tuple(m.checks or ()),
        owner_hash=m.owner_hash, created_at=m.created_at, expires_at=m.expires_at,
        started_at=m.started_at, finished_at=m.finished_at, heartbeat_at=m.heartbeat_at,
        done=m.done, total=m.total, stage=m.stage, scan_id=m.scan_id, failure=m.failure,
        attempts=m.attempts, worker=m.worker,
    )


@contextmanager
def _tx(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


_SELECT = select(WebCheckRow.__table__)


# -- creating and claiming -------------------------------------------------------------------

def create_check(
    store: Store, *, token: str, peer: str, prefix: str, profile: str,
    tcp_ports: Sequence[int], udp_ports: Sequence[int], checks: Sequence[str],
    owner_hash: str, now: datetime, expires_at: datetime, max_active: int,
) -> int:
    """Insert a queued check and return its id. Raises Busy when ``peer`` already has an
    active check or ``max_active`` checks are active; StoreError on database failure."""
    values = {
        "token": token, "status": QUEUED, "peer": peer, "prefix": prefix, "active_key": peer,
        "profile": profile, "tcp_ports": list(tcp_ports), "udp_ports": list(udp_ports),
        "checks": list(checks), "owner_hash": owner_hash, "created_at": now,
        "expires_at": expires_at, "done": 0, "total": 0, "stage": "queued", "attempts": 0,
    }
    try:
        with store.engine.connect() as conn:
            # Take the write lock first, so the count below cannot go stale before the insert.
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_SUBMIT_LOCK)))
            existing = conn.execute(
                select(WebCheckRow.token).where(WebCheckRow.active_key == peer)
            ).scalar_one_or_none()
            if existing is not None:
                conn.rollback()
                raise Busy("address", existing)
            active = conn.execute(
                select(func.count()).select_from(WebCheckRow)
                .where(WebCheckRow.status.in_(ACTIVE))
            ).scalar_one()
            if active >= max_active:
                conn.rollback()
                raise Busy("global")
            pk = conn.execute(insert(WebCheckRow).values(**values)).inserted_primary_key
            conn.commit()
    except IntegrityError as exc:  # another process won the race for this address
        raise Busy("address") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc
    assert pk is not None
    return int(pk[0])


def claim(store: Store, check_id: int, worker: str, now: datetime) -> WebCheck | None:
    """Mark a queued check running by ``worker``; None when it is not queued (any more)."""
    with _tx(store) as conn:
        result = conn.execute(
            update(WebCheckRow)
            .where(WebCheckRow.id == check_id, WebCheckRow.status == QUEUED)
            .values(status=RUNNING, started_at=now, heartbeat_at=now, worker=worker[:255],
                    attempts=WebCheckRow.attempts + 1, stage="starting")
        )
        if result.rowcount != 1:
            return None
        row = conn.execute(_SELECT.where(WebCheckRow.id == check_id)).one()
    return _row(row)


def _fenced(check_id: int, attempt: int | None) -> Any:
    """The row of ``check_id``, and when ``attempt`` is given, only while the check is still
    in that attempt: a worker that lost its check to the stale sweep (which re-queued it and
    let another worker claim it, attempt + 1) can no longer write to it."""
    cond = WebCheckRow.id == check_id
    if attempt is not None:
        cond = cond & (WebCheckRow.attempts == attempt)
    return cond


def set_scan(store: Store, check_id: int, scan_id: int, *, attempt: int | None = None) -> bool:
    """Link the check to its scan; False when the check is no longer this attempt's."""
    with _tx(store) as conn:
        result = conn.execute(update(WebCheckRow).where(_fenced(check_id, attempt))
                              .values(scan_id=scan_id))
    return result.rowcount == 1


def progress(store: Store, check_id: int, *, done: int, total: int, stage: str,
             now: datetime, attempt: int | None = None) -> bool:
    """Record progress (and a heartbeat) of a running check; False when it is not running."""
    with _tx(store) as conn:
        result = conn.execute(
            update(WebCheckRow)
            .where(_fenced(check_id, attempt), WebCheckRow.status == RUNNING)
            .values(done=done, total=total, stage=stage[:64], heartbeat_at=now)
        )
    return result.rowcount == 1


def finish(store: Store, check_id: int, status: str, now: datetime,
           failure: str | None = None, *, attempt: int | None = None) -> bool:
    """End an active check as done or failed; False when it was not active any more."""
    if status not in (DONE, FAILED):
        raise StoreError(f"a check ends done or failed, not {status!r}")
    with _tx(store) as conn:
        result = conn.execute(
            update(WebCheckRow)
            .where(_fenced(check_id, attempt), WebCheckRow.status.in_(ACTIVE))
            .values(status=status, finished_at=now, active_key=None, heartbeat_at=now,
                    failure=failure[:2000] if failure else None,
                    stage="finished" if status == DONE else "failed")
        )
    return result.rowcount == 1


def fail_stale(store: Store, now: datetime, stale_after: float) -> list[int]:
    """Fail running checks whose heartbeat is older than ``stale_after`` seconds (their worker
    died) and close their scans as interrupted. Returns the ids failed."""
    cutoff = now - timedelta(seconds=stale_after)
    with _tx(store) as conn:
        rows = conn.execute(
            select(WebCheckRow.id, WebCheckRow.scan_id).where(
                WebCheckRow.status == RUNNING, WebCheckRow.heartbeat_at < cutoff)
        ).all()
        ids = [r.id for r in rows]
        if not ids:
            return []
        conn.execute(
            update(WebCheckRow)
            .where(WebCheckRow.id.in_(ids), WebCheckRow.status == RUNNING)
            .values(status=FAILED, finished_at=now, active_key=None, stage="failed",
                    failure=f"the worker running this check stopped answering "
                            f"(no progress for {int(stale_after)} s)")
        )
        scans = [r.scan_id for r in rows if r.scan_id is not None]
        if scans:
            conn.execute(
                update(ScanRow)
                .where(ScanRow.id.in_(scans), ScanRow.status == ScanStatus.RUNNING.value)
                .values(status=ScanStatus.INTERRUPTED.value, finished_at=now)
            )
    return ids


# -- reading -------------------------------------------------------------------------------

def get(store: Store, check_id: int) -> WebCheck | None:
    with _tx(store) as conn:
        row = conn.execute(_SELECT.where(WebCheckRow.id == check_id)).first()
    return _row(row) if row is not None else None


def get_by_token(store: Store, token: str) -> WebCheck | None:
    if not token or len(token) > 64:
        return None
    with _tx(store) as conn:
        row = conn.execute(_SELECT.where(WebCheckRow.token == token)).first()
    return _row(row) if row is not None else None


def ids_with_status(store: Store, status: str) -> list[int]:
    with _tx(store) as conn:
        return list(conn.execute(
            select(WebCheckRow.id).where(WebCheckRow.status == status).order_by(WebCheckRow.id)
        ).scalars())


def active_count(store: Store) -> int:
    with _tx(store) as conn:
        return int(conn.execute(
            select(func.count()).select_from(WebCheckRow)
            .where(WebCheckRow.status.in_(ACTIVE))
        ).scalar_one())


def recent(store: Store, limit: int = 100, offset: int = 0) -> list[WebCheck]:
    with _tx(store) as conn:
        rows = conn.execute(
            _SELECT.order_by(WebCheckRow.created_at.desc(), WebCheckRow.id.desc())
            .limit(limit).offset(offset)
        ).all()
    return [_row(r) for r in rows]


def median_seconds(store: Store, profile: str, sample: int = 50) -> float | None:
    """Median duration of the latest ``sample`` finished checks of ``profile``."""
    with _tx(store) as conn:
        rows = conn.execute(
            select(WebCheckRow.started_at, WebCheckRow.finished_at)
            .where(WebCheckRow.status == DONE, WebCheckRow.profile == profile)
            .order_by(WebCheckRow.id.desc()).limit(sample)
        ).all()
    spans = [(r.finished_at - r.started_at).total_seconds() for r in rows
             if r.started_at is not None and r.finished_at is not None]
    return statistics.median(spans) if spans else None


def stats(store: Store, now: datetime, top: int = 10) -> Stats:
    with _tx(store) as conn:
        by_status = {r.status: int(r.n) for r in conn.execute(
            select(WebCheckRow.status, func.count().label("n")).group_by(WebCheckRow.status)
        ).all()}

        def since(delta: timedelta) -> int:
            return int(conn.execute(
                select(func.count()).select_from(WebCheckRow)
                .where(WebCheckRow.created_at >= now - delta)
            ).scalar_one())

        last_day, last_week = since(timedelta(days=1)), since(timedelta(days=7))
        peers = int(conn.execute(select(func.count(func.distinct(WebCheckRow.peer)))).scalar_one())
        findings = conn.execute(
            select(CheckResultRow.check_id, func.count().label("n"))
            .join(WebCheckRow, WebCheckRow.scan_id == CheckResultRow.scan_id)
            .where(CheckResultRow.status == "finding")
            .group_by(CheckResultRow.check_id)
            .order_by(func.count().desc(), CheckResultRow.check_id).limit(top)
        ).all()
        spans = conn.execute(
            select(WebCheckRow.started_at, WebCheckRow.finished_at)
            .where(WebCheckRow.status == DONE).order_by(WebCheckRow.id.desc()).limit(500)
        ).all()
    durations = [(s.finished_at - s.started_at).total_seconds() for s in spans
                 if s.started_at is not None and s.finished_at is not None]
    return Stats(by_status, last_day, last_week,
                 statistics.median(durations) if durations else None, peers,
                 [(f.check_id, int(f.n)) for f in findings])


# -- deleting ------------------------------------------------------------------------------

def _delete_ids(conn: Connection, ids: Sequence[int]) -> None:
    scans = [s for s in conn.execute(
        select(WebCheckRow.scan_id).where(WebCheckRow.id.in_(ids))).scalars() if s is not None]
    conn.execute(delete(WebCheckRow).where(WebCheckRow.id.in_(ids)))
    if scans:  # endpoints, services, errors and check results go with their scan (CASCADE)
        conn.execute(delete(ScanRow).where(ScanRow.id.in_(scans)))


def delete_check(store: Store, check_id: int) -> bool:
    """Delete a check and its scan; False when it was already gone."""
    with _tx(store) as conn:
        found = conn.execute(select(WebCheckRow.id).where(WebCheckRow.id == check_id)).first()
        if found is None:
            return False
        _delete_ids(conn, [check_id])
    return True


def purge_expired(store: Store, now: datetime, batch: int = 500) -> int:
    """Delete finished checks (and their scans) whose expiry has passed; return how many."""
    total = 0
    while True:
        with _tx(store) as conn:
            ids = list(conn.execute(
                select(WebCheckRow.id)
                .where(WebCheckRow.expires_at < now, WebCheckRow.status.not_in(ACTIVE))
                .limit(batch)
            ).scalars())
            if ids:
                _delete_ids(conn, ids)
        total += len(ids)
        if len(ids) < batch:
            return total


# -- blocked networks ----------------------------------------------------------------------

def add_block(store: Store, network: str, reason: str, by: str, now: datetime) -> bool:
    """Block ``network`` (already normalised CIDR text); False when it was blocked already."""
    try:
        with _tx(store) as conn:
            conn.execute(insert(ServeBlockRow).values(
                network=network, reason=reason[:500], created_at=now, created_by=by[:64]))
    except StoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return False
        raise
    return True


def remove_block(store: Store, block_id: int) -> bool:
    with _tx(store) as conn:
        result = conn.execute(delete(ServeBlockRow).where(ServeBlockRow.id == block_id))
    return result.rowcount == 1


def list_blocks(store: Store) -> list[Block]:
    with _tx(store) as conn:
        rows = conn.execute(select(ServeBlockRow.__table__).order_by(ServeBlockRow.id)).all()
    return [Block(r.id, r.network, r.reason, r.created_at, r.created_by) for r in rows]
