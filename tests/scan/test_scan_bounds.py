"""A scan's errors and bounds: who an error is about, and how long a host may take.

In-process fake servers on 127.0.167.x: GARBAGE (random bytes to every connection, then
close) and TARPIT (accepts and never answers). The records go to a real SQLite store through
the same ``StoreSink`` the CLI uses.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from conftest import run_mamori
from fake_servers import tcp_server
from mamori.model import ErrorKind, Proto, ScanRecord, Target
from mamori.net.stream import Limits
from mamori.net.sweep import SweepOptions
from mamori.scan.pipeline import ScanPlan, run_scan
from mamori.scan.store_sink import StoreSink
from mamori.store import Store

GARBAGE_HOST = "127.0.167.2"
TARPIT_HOST = "127.0.167.3"
FAST = Limits(read_cap=8192, idle_timeout=0.5, deadline=1.0, connect_timeout=1.0)


async def garbage_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # A reply to every connection that matches no protocol, and no probe that fails: the
    # engine's own "matched nothing" error is the only error this endpoint gets.
    writer.write(b"\x00\x7f" + os.urandom(40))
    await writer.drain()


async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


def _scan_into_store(db: Path, plan: ScanPlan, servers: list[tuple[str, int]],
                     handler: object) -> ScanRecord:
    async def main() -> ScanRecord:
        store = Store.open(f"sqlite:///{db}")
        try:
            scan_id = store.begin_scan("scan", [t.address for t in plan.targets], {})
            async with _serving(servers, handler):
                await run_scan(plan, StoreSink(store, scan_id))
            record = store.get_scan(scan_id)
            assert record is not None
            return record
        finally:
            store.close()

    return asyncio.run(main())


class _serving:
    def __init__(self, servers: list[tuple[str, int]], handler: object) -> None:
        self.managers = [tcp_server(h, p, handler) for h, p in servers]  # type: ignore[arg-type]

    async def __aenter__(self) -> None:
        for m in self.managers:
            await m.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        for m in reversed(self.managers):
            await m.__aexit__(None, None, None)


def test_garbage_error_names_address_proto_and_port(tmp_path: Path) -> None:
    port = 21671
    plan = ScanPlan(targets=(Target(GARBAGE_HOST),), tcp_ports=(port,),
                    sweep=SweepOptions(max_timeout=1.0), probe_limits=FAST,
                    identify_budget=8.0)
    record = _scan_into_store(tmp_path / "m.db", plan, [(GARBAGE_HOST, port)], garbage_and_close)
    garbage = [e for e in record.errors if e.kind is ErrorKind.GARBAGE]
    assert garbage, record.errors
    for err in garbage:
        assert (err.address, err.proto, err.port) == (GARBAGE_HOST, Proto.TCP, port)
    # Every error of this scan is about this endpoint: none is left without its place.
    assert all(e.address == GARBAGE_HOST and e.port == port for e in record.errors)
