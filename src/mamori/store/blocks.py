"""The store's side of ``mamori watch --block``: which addresses are blocked, why, for which
incident and until when (``watch_blocks``). One row per address: blocking it again replaces
the row (the new expiry wins). Rows past their expiry are ignored by :func:`active_blocks`
and removed by :func:`record_block` as it goes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import WatchBlockRow
from mamori.store.store import Store

__all__ = ["StoredBlock", "active_blocks", "record_block", "remove_block"]

_MAX_REASON = 512
_COLUMNS = (WatchBlockRow.address, WatchBlockRow.reason, WatchBlockRow.incident_id,
            WatchBlockRow.created_at, WatchBlockRow.until)


@dataclass(frozen=True, slots=True)
class StoredBlock:
    address: str
    reason: str
    incident_id: int | None
    created_at: datetime
    until: datetime


def record_block(store: Store, block: StoredBlock) -> None:
    """Remember ``block`` (replacing an older row of the same address); drop expired rows."""
    t = WatchBlockRow
    try:
        with store.engine.begin() as conn:
            conn.execute(delete(t).where(
                (t.address == block.address) | (t.until <= block.created_at)))
            conn.execute(insert(t).values(
                address=block.address, reason=block.reason[:_MAX_REASON],
                incident_id=block.incident_id, created_at=block.created_at,
                until=block.until))
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def remove_block(store: Store, address: str) -> StoredBlock | None:
    """Forget the block of ``address``; the row removed (None: there was none)."""
    t = WatchBlockRow
    try:
        with store.engine.begin() as conn:
            row = conn.execute(select(*_COLUMNS).where(t.address == address)).first()
            if row is None:
                return None
            conn.execute(delete(t).where(t.address == address))
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc
    return _from_row(row)


def active_blocks(store: Store, now: datetime | None = None) -> list[StoredBlock]:
    """The blocks not yet expired at ``now``, soonest to expire first."""
    t = WatchBlockRow
    when = now or datetime.now(UTC)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(*_COLUMNS).where(t.until > when).order_by(t.until, t.address)).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc
    return [_from_row(row) for row in rows]


def _from_row(row: object) -> StoredBlock:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredBlock(r["address"], r["reason"], r["incident_id"], r["created_at"], r["until"])
