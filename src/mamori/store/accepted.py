"""Accepted risks in the store (`mamori accept`): add, list, remove, and the newest finding of
a check on a target that an acceptance is made from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from mamori.model import Acceptance
from mamori.store.engine import one_line
from mamori.store.errors import StoreError
from mamori.store.models import AcceptedRiskRow, CheckResultRow, ScanRow
from mamori.store.store import Store


@contextmanager
def _tx(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {one_line(exc)}") from exc


def _record(row: Any) -> Acceptance:
    until = None
    if row.until:
        try:
            until = date.fromisoformat(row.until)
        except ValueError:
            until = date.min  # a damaged date never extends an acceptance: it has expired
    return Acceptance(
        id=int(row.id), check_id=row.check_id, address=row.address, port=row.port,
        reason=row.reason, until=until, fingerprint=row.fingerprint, scan_id=int(row.scan_id),
        created_at=row.created_at,
    )


def add_acceptance(
    store: Store, *, check_id: str, address: str, port: int | None, reason: str,
    until: date | None, fingerprint: str, scan_id: int, now: datetime,
) -> Acceptance:
    """Store an acceptance; returns it with its id. Raises ``StoreError``."""
    values = {"check_id": check_id, "address": address, "port": port, "reason": reason,
              "until": until.isoformat() if until else None, "fingerprint": fingerprint,
              "scan_id": scan_id, "created_at": now}
    with _tx(store) as conn:
        new_id = conn.execute(insert(AcceptedRiskRow).values(**values)).inserted_primary_key
    assert new_id is not None
    return Acceptance(id=int(new_id[0]), check_id=check_id, address=address, port=port,
                      reason=reason, until=until, fingerprint=fingerprint, scan_id=scan_id,
                      created_at=now)


def list_acceptances(store: Store) -> list[Acceptance]:
    """Every acceptance, oldest first (expired ones too). Raises ``StoreError``."""
    with _tx(store) as conn:
        rows = conn.execute(select(AcceptedRiskRow.__table__).order_by(AcceptedRiskRow.id))
        return [_record(r) for r in rows]


def remove_acceptance(store: Store, acceptance_id: int) -> bool:
    """Delete one acceptance; False when there was none with that id."""
    with _tx(store) as conn:
        done = conn.execute(delete(AcceptedRiskRow).where(AcceptedRiskRow.id == acceptance_id))
    return bool(done.rowcount)


def latest_run_with(store: Store, address: str, port: int | None) -> int | None:
    """The newest finished run that holds a check result on ``address`` (and ``port``), or
    None: the run an acceptance on that target is taken from."""
    query = (
        select(ScanRow.id)
        .join(CheckResultRow, CheckResultRow.scan_id == ScanRow.id)
        .where(ScanRow.status != "running", CheckResultRow.address == address)
        .order_by(ScanRow.id.desc())
        .limit(1)
    )
    if port is not None:
        query = query.where(CheckResultRow.port == port)
    with _tx(store) as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)
