"""A scan's errors and bounds: who an error is about, and how long a host may take.

In-process fake servers on 127.0.167.x: GARBAGE (random bytes to every connection, then
close) and TARPIT (accepts and never answers). The records go to a real SQLite store through
the same ``StoreSink`` the CLI uses.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from fake_servers import tcp_server
from mamori.model import ErrorKind, Proto, ScanRecord, Target
from mamori.net.stream import Limits
from mamori.net.sweep import SweepOptions
from mamori.scan.pipeline import ScanPlan, run_scan
from mamori.scan.store_sink import StoreSink
from mamori.store import Store
from sweep_fixtures import netns_available, run_python

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


# ---- item 14: a local shortage of ephemeral ports is never the target's fault ----------------

_SHORT_OF_PORTS = """
import asyncio, json
from mamori.model import Target
from mamori.net.stream import Limits
from mamori.net.sweep import SweepOptions
from mamori.scan.pipeline import ScanPlan, run_scan

HOST = "127.0.0.1"
# The target's own listeners take 99 of the 101 ephemeral ports (40000-40100) of this
# namespace, as a host with 65k open ports scanned from itself does: two are left for every
# connection mamori makes, while identification opens several at once to one endpoint.
PORTS = list(range(40000, 40099)) + list(range(41000, 41030))

async def memcached_only(reader, writer):
    # Deaf to every protocol but memcached's: identification goes parallel before it is named.
    try:
        while True:
            data = await reader.read(4096)
            if not data:
                return
            if data.startswith(b"version"):
                writer.write(b"VERSION 1.6.21\\r\\n")
                await writer.drain()
    finally:
        writer.close()

class Sink:
    def __init__(self):
        self.services, self.errors, self.open = {}, [], []
    def on_host(self, t): pass
    def on_endpoints(self, eps):
        self.open += [e.port for e in eps if e.state.value == "open"]
    def on_service(self, address, proto, port, svc): self.services[port] = svc.name
    def on_error(self, e):
        self.errors.append([e.address, e.port, e.kind.value, e.detail, e.probe])
    def on_not_shown(self, address, counts): pass
    def on_check(self, result): pass

async def main():
    servers = [await asyncio.start_server(memcached_only, HOST, p) for p in PORTS]
    sink = Sink()
    plan = ScanPlan(targets=(Target(HOST),), tcp_ports=tuple(PORTS),
                    sweep=SweepOptions(max_timeout=1.0),
                    probe_limits=Limits(read_cap=8192, idle_timeout=0.5, deadline=1.0,
                                        connect_timeout=1.0),
                    identify_budget=20.0)
    await run_scan(plan, sink)
    for s in servers:
        s.close()
    print(json.dumps({"services": sink.services, "errors": sink.errors, "open": sink.open}))

asyncio.run(main())
"""


@pytest.mark.root
def test_ephemeral_port_shortage_backs_off_and_never_blames_the_target() -> None:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    ns = f"mamori-eph{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        # Per namespace: the suite's own namespace and the machine keep their range.
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                        "net.ipv4.ip_local_port_range=40000 40100"], check=True,
                       capture_output=True)
        data = run_python(_SHORT_OF_PORTS, netns=ns, timeout=240)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    ports = list(range(40000, 40099)) + list(range(41000, 41030))
    assert sorted(data["open"]) == ports  # more endpoints than this namespace has local ports
    blamed = [e for e in data["errors"] if e[2] == "unreachable" or "errno 99" in e[3]]
    assert blamed == [], blamed[:5]
    for err in data["errors"]:  # what is left may only name the shortage on this machine
        assert err[2] == "resource" and "local" in err[3], err
    # Backing off let every endpoint be identified once ports came free.
    assert {int(p): name for p, name in data["services"].items()} == dict.fromkeys(
        ports, "memcached")
