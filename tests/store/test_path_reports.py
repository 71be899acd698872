"""The joined path verdicts of a check run in SQLite (migration 0008): written with the run,
read back whole by get_scan (``mamori show`` re-renders from there), one row per run."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from mamori.model import Proto
from mamori.model.path import (
    NatKind,
    OutsidePort,
    OutsideResult,
    OutsideState,
    PathReport,
    PathStep,
    PathVerdict,
    PortMapping,
    Reach,
    RouterView,
)
from mamori.model.path_json import path_report_dict, path_report_from_dict
from mamori.store import Store, StoreError
from mamori.store.migrate import alembic_config
from mamori.store.models import Base
from store_fixtures import store_check_scan

MAP = PortMapping(2222, Proto.TCP, "192.168.77.10", 22, "ssh\x00 forward", 0)
REPORT = PathReport(
    verdicts=(PathVerdict(Proto.TCP, "0.0.0.0", 22, 4, Reach.INTERNET,
                          (PathStep("bind", "all", "sshd on 0.0.0.0:22"),
                           PathStep("router", "mapped", "external tcp/2222")),
                          mapping=MAP, proven=True, notes=("n1",)),
              PathVerdict(Proto.TCP, "::", 80, 6, Reach.UNDETERMINED, missing="router v6")),
    router=RouterView(True, "upnp-igd2", "http://192.168.77.1:5000/ctl", "192.168.77.1",
                      "miniupnpd", "11.0.0.2", NatKind.PUBLIC, (MAP,), control_open=True,
                      evidence=("M-SEARCH → 1 reply",)),
    outside=(OutsideResult("http://11.0.0.1:8080", 4, "11.0.0.2",
                           (OutsidePort(Proto.TCP, 22, OutsideState.OPEN),
                            OutsidePort(Proto.TCP, 99, OutsideState.NOT_TESTED, "capped")),
                           None, "abc"),
             OutsideResult("http://11.0.0.1:8080", 6, None, (), "no IPv6 route")),
    ipv6=(("2a0e:8b00:77::10", "global"),),
    other_hosts=(PortMapping(3389, Proto.TCP, "192.168.77.20", 3389, "rdp", 60),),
)


def test_the_codec_round_trips_every_field() -> None:
    assert path_report_from_dict(path_report_dict(REPORT)) == REPORT


def test_a_path_report_is_stored_with_its_run_and_read_back(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store_check_scan(store)
        rec = store.get_scan(sid)
        assert rec is not None and rec.paths is None
        store.set_path_report(sid, REPORT)
        store.set_path_report(sid, REPORT)  # replaced, not doubled
        rec = store.get_scan(sid)
        assert rec is not None and rec.paths is not None
        # NUL from a router's description is kept escaped, everything else as written
        assert rec.paths.router is not None
        assert rec.paths.router.mappings[0].description == "ssh\\x00 forward"
        assert rec.paths.verdicts[1] == REPORT.verdicts[1]
        assert rec.paths.outside == REPORT.outside and rec.paths.ipv6 == REPORT.ipv6
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM path_reports")).scalar() == 1
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_a_damaged_row_is_a_store_error_naming_the_run(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store_check_scan(store)
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO path_reports (scan_id, report) VALUES (:s, :r)"),
                         {"s": sid, "r": '{"verdicts": [{"proto": "icmp"}]}'})
        try:
            store.get_scan(sid)
        except StoreError as exc:
            assert f"scan {sid}: not a stored path report" in str(exc)
        else:
            raise AssertionError("a damaged path report was read")


def test_migration_0008_goes_down_to_0007_keeping_the_runs(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store_check_scan(store)
        store.set_path_report(sid, REPORT)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0007")
        assert "path_reports" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scans")).scalar() == 1
