"""The joined path verdicts of a `mamori check` run in the ``path_reports`` table (one row per
run, ``PathReport`` as JSON; ``model/path_json.py`` is the codec)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from mamori.model.path import PathReport
from mamori.model.path_json import path_report_dict, path_report_from_dict
from mamori.store.errors import StoreError
from mamori.store.models import PathReportRow


def _no_nul(value: Any) -> Any:
    # PostgreSQL JSON text cannot hold NUL; router descriptions are remote-controlled.
    return json.loads(json.dumps(value).replace("\\u0000", "\\\\x00"))


def write_path_report(conn: Connection, scan_id: int, report: PathReport) -> None:
    """Record (or replace) the run's path report."""
    conn.execute(delete(PathReportRow).where(PathReportRow.scan_id == scan_id))
    conn.execute(insert(PathReportRow).values(scan_id=scan_id,
                                              report=_no_nul(path_report_dict(report))))


def read_path_report(conn: Connection, scan_id: int) -> PathReport | None:
    """The run's path report, None when it has none; StoreError when the row is damaged."""
    value = conn.execute(select(PathReportRow.report)
                         .where(PathReportRow.scan_id == scan_id)).scalar_one_or_none()
    if value is None:
        return None
    try:
        return path_report_from_dict(value if isinstance(value, dict) else {})
    except ValueError as exc:
        raise StoreError(f"scan {scan_id}: {exc}") from None
