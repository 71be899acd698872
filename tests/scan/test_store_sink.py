"""StoreSink, the one adapter from scan records to the store (scan jobs, the serve worker,
`mamori import`), and procs.pid_alive, the one "does this process still run"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mamori.model import (
    Endpoint,
    ErrorKind,
    PortState,
    ProbeError,
    Proto,
    Reason,
    ScanStatus,
    Service,
    Target,
)
from mamori.procs import pid_alive
from mamori.scan.store_sink import StoreSink
from mamori.store import Store

SSH = Service("ssh", "OpenSSH", "9.2p1", method="null")
EP = Endpoint("127.0.0.1", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.2)
ERR = ProbeError("127.0.0.1", 8080, Proto.TCP, ErrorKind.IDLE, "silent", "identify:null")


class _Recorder:
    """Stands in for the Store: records each write with the scan id it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, *args))


def test_without_a_store_records_wait_in_order_then_flow_and_stop_after_detach() -> None:
    sink = StoreSink()
    sink.on_host(Target("127.0.0.1", "localhost"))
    sink.on_endpoints([EP])
    sink.on_service("127.0.0.1", Proto.TCP, 22, SSH)
    store = _Recorder()
    assert store.calls == []
    sink.attach(store, 7)  # type: ignore[arg-type]
    assert store.calls == [
        ("add_host", 7, "127.0.0.1", "localhost"),
        ("add_endpoints", 7, [EP]),
        ("set_service", 7, "127.0.0.1", Proto.TCP, 22, SSH),
    ]
    sink.on_error(ERR)  # once attached: written at once
    assert store.calls[-1] == ("add_error", 7, ERR)
    sink.detach()
    sink.on_not_shown("127.0.0.1", {"tcp": {"closed": 9}})
    assert len(store.calls) == 4  # a stopping sweep's last words are dropped


def test_with_a_store_each_record_is_written_at_once(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        scan_id = store.begin_scan("scan", ["127.0.0.1"], {})
        sink = StoreSink(store, scan_id)
        sink.on_host(Target("127.0.0.1"))
        sink.on_endpoints([EP])
        sink.on_service("127.0.0.1", Proto.TCP, 22, SSH)
        sink.on_not_shown("127.0.0.1", {"tcp": {"closed": 65534}})
        sink.on_error(ERR)
        record = store.get_scan(scan_id)  # nothing finished yet: all of it is already stored
        assert record is not None and record.status is ScanStatus.RUNNING
        (host,) = record.hosts
        (ep,) = host.endpoints
        assert (ep.port, ep.service) == (22, SSH)
        assert host.not_shown == {"tcp": {"closed": 65534}}
        assert record.errors == (ERR,)


def test_pid_alive_counts_zombies_and_gone_processes_dead() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # exited but not reaped: a zombie, which counts as dead
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)  # reaped: gone
