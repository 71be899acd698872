"""StoreSink's journal (``mamori scan``/``check``): a store that fails mid-run loses nothing of
the report: the first failure is kept, the run is told once, nothing more is written to the
broken store, and every record can be replayed into another (in-memory) store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori.model import Endpoint, PortState, Proto, Reason, ScanStatus, Target
from mamori.scan.store_sink import StoreSink
from mamori.store import Store, StoreError

EPS = [Endpoint("127.0.47.30", p, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.1)
       for p in (22, 80, 443)]


def test_a_failing_store_stops_the_writes_and_the_journal_keeps_everything(
    tmp_path: Path,
) -> None:
    store = Store.open(str(tmp_path / "m.db"))
    scan_id = store.begin_scan("scan", ["127.0.47.30"], {})
    told: list[int] = []
    sink = StoreSink(journal=True)
    sink.on_failure = lambda: told.append(1)
    sink.on_host(Target("127.0.47.30"))
    sink.attach(store, scan_id)
    sink.on_endpoints(EPS[:1])
    # The database goes away under the run: every later write fails.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE endpoints")
    sink.on_endpoints(EPS[1:2])
    sink.on_endpoints(EPS[2:])
    assert isinstance(sink.failure, StoreError)
    assert told == [1]  # told once, not once per record
    store.close()

    with Store.open("sqlite://") as memory:
        mem_id = memory.begin_scan("scan", ["127.0.47.30"], {})
        sink.replay(memory, mem_id)
        memory.finish_scan(mem_id, ScanStatus.FAILED)
        record = memory.get_scan(mem_id)
    assert record is not None
    assert [e.port for h in record.hosts for e in h.endpoints] == [22, 80, 443]


def test_without_a_journal_store_errors_reach_the_caller(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sink = StoreSink(store, 12345)  # no such scan: the foreign key refuses the write
        with pytest.raises(StoreError):
            sink.on_host(Target("127.0.47.30"))
        assert sink.failure is None
