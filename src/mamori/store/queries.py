"""Read-only queries over a ``Store`` that the report commands need."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import ScanRow
from mamori.store.store import Store


def previous_scan_ids(
    store: Store, targets: Sequence[str], kind: str, limit: int = 2,
    before: int | None = None,
) -> list[int]:
    """Ids of the newest ``limit`` scans of ``kind`` over exactly ``targets`` (same list,
    order ignored), newest first; with ``before``, only scans with a smaller id.

    Scans still running are left out. Raises ``StoreError`` on database failure.
    """
    wanted = sorted(targets)
    query = select(ScanRow.id, ScanRow.targets).where(
        ScanRow.kind == kind, ScanRow.status != "running"
    )
    if before is not None:
        query = query.where(ScanRow.id < before)
    query = query.order_by(ScanRow.id.desc())
    out: list[int] = []
    try:
        with store.engine.connect() as conn:
            for row in conn.execute(query):
                if sorted(row.targets or ()) == wanted:
                    out.append(int(row.id))
                    if len(out) >= limit:
                        break
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc
    return out


def latest_scan_id(store: Store, kinds: Sequence[str]) -> int | None:
    """The newest finished scan of one of ``kinds``, or None."""
    query = (
        select(ScanRow.id)
        .where(ScanRow.kind.in_(list(kinds)), ScanRow.status != "running")
        .order_by(ScanRow.id.desc())
        .limit(1)
    )
    try:
        with store.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc
    return None if found is None else int(found)
