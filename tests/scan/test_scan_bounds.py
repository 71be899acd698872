"""A scan's errors and bounds: who an error is about, and how long a host may take.

In-process fake servers on 127.0.167.x: GARBAGE (random bytes to every connection, then
close) and TARPIT (accepts and never answers). The records go to a real SQLite store through
the same ``StoreSink`` the CLI uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_mamori
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


# ---- item 15: an overall bound per host, and what it cut reported as not tested -------------

class _Tarpit:
    """Listeners that never accept: the kernel completes every handshake (up to the backlog)
    and nothing ever answers; no thread, no task, bounded by the backlog."""

    def __init__(self, host: str, ports: range) -> None:
        self.socks = []
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(1024)
            self.socks.append(s)

    def __enter__(self) -> _Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self.socks:
            s.close()


TARPIT_PORTS = range(21700, 21760)


def _cut_errors(errors: object, port: int) -> list[str]:
    return [e.detail for e in errors  # type: ignore[attr-defined]
            if e.port == port and e.probe == "host-timeout"]


def test_host_timeout_cuts_identification_and_reports_what_was_cut(tmp_path: Path) -> None:
    plan = ScanPlan(targets=(Target(TARPIT_HOST),), tcp_ports=tuple(TARPIT_PORTS),
                    sweep=SweepOptions(max_timeout=1.0), identify_concurrency=8,
                    host_timeout=3.0)
    with _Tarpit(TARPIT_HOST, TARPIT_PORTS):
        t0 = time.monotonic()
        record = _scan_into_store(tmp_path / "m.db", plan, [], None)
        elapsed = time.monotonic() - t0
    # 60 tarpit ports at the default 15 s identification budget would take ~2 minutes.
    assert elapsed < 3.0 + 2.5, elapsed
    (host,) = record.hosts
    open_ports = [e.port for e in host.endpoints if e.state.value == "open"]
    assert open_ports == list(TARPIT_PORTS)
    for ep in host.endpoints:
        assert ep.service is None  # nothing answered: never a guessed name
        cut = _cut_errors(record.errors, ep.port)
        assert len(cut) == 1, (ep.port, record.errors)
        assert "host timeout" in cut[0] and "not identified" in cut[0]
        assert "checks not run" in cut[0]
    assert not [c for c in record.checks if c.status.value == "passed"]


def test_default_identification_budget_per_host_cuts_too(tmp_path: Path) -> None:
    # No --host-timeout: the per-host identification budget still bounds the host.
    plan = ScanPlan(targets=(Target(TARPIT_HOST),), tcp_ports=tuple(TARPIT_PORTS),
                    sweep=SweepOptions(max_timeout=1.0), identify_concurrency=8,
                    identify_host_budget=2.0)
    assert ScanPlan(targets=(), tcp_ports=()).identify_host_budget == 300.0
    with _Tarpit(TARPIT_HOST, TARPIT_PORTS):
        t0 = time.monotonic()
        record = _scan_into_store(tmp_path / "m.db", plan, [], None)
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0 + 3.0, elapsed
    cut = [e for e in record.errors if e.probe == "host-timeout"]
    assert {e.port for e in cut} == set(TARPIT_PORTS)
    assert all("identification budget" in e.detail for e in cut)


def test_cli_host_timeout_bounds_the_command_and_the_report_says_what_was_cut(
    tmp_path: Path,
) -> None:
    ports = f"{TARPIT_PORTS.start}-{TARPIT_PORTS.stop - 1}"
    with _Tarpit(TARPIT_HOST, TARPIT_PORTS):
        t0 = time.monotonic()
        out = run_mamori("scan", TARPIT_HOST, "-p", ports, "--host-timeout", "3s",
                         "--format", "json", "--db", f"sqlite:///{tmp_path / 'm.db'}",
                         timeout=60)
        elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert elapsed < 3.0 + 8.0, elapsed  # the bound, plus the interpreter's start-up
    report = json.loads(out.stdout)
    cut = [e for e in report["errors"] if e["probe"] == "host-timeout"]
    assert {e["port"] for e in cut} == set(TARPIT_PORTS)
    assert all(e["address"] == TARPIT_HOST and "host timeout" in e["detail"] for e in cut)
    assert report["scan"]["options"]["host_timeout"] == 3.0


def test_cli_host_timeout_refuses_bad_values(tmp_path: Path) -> None:
    for bad in ("abc", "-1", "5x", "nan", "inf"):
        out = run_mamori("scan", TARPIT_HOST, "-p", "1", "--host-timeout", bad,
                         "--db", f"sqlite:///{tmp_path / 'm.db'}")
        assert out.returncode == 2, (bad, out.stderr)
        assert out.stderr.startswith("mamori: error: ") and out.stderr.count("\n") == 1, bad
    assert not (tmp_path / "m.db").exists()


def test_host_timeout_stops_the_sweep_and_counts_the_ports_it_never_probed(
    tmp_path: Path,
) -> None:
    # --rate 2000 makes a full sweep last ~30 s; the host timeout stops it after 1.5 s.
    ports = tuple(p for p in range(1, 65536) if p != 2024)
    plan = ScanPlan(targets=(Target("127.0.167.4"),), tcp_ports=ports,
                    sweep=SweepOptions(max_timeout=1.0, rate=2000), identify=False,
                    host_timeout=1.5)
    t0 = time.monotonic()
    record = _scan_into_store(tmp_path / "m.db", plan, [], None)
    assert time.monotonic() - t0 < 1.5 + 2.5
    (cut,) = [e for e in record.errors if e.probe == "host-timeout"]
    assert (cut.address, cut.port, cut.proto) == ("127.0.167.4", None, Proto.TCP)
    not_probed = int(cut.detail.split("s): ", 1)[1].split(" of ", 1)[0])
    (host,) = record.hosts
    closed = host.not_shown.get("tcp", {}).get("closed", 0)
    assert 0 < not_probed < len(ports) and closed > 0
    # Every port is either counted closed or named as not probed: none silently dropped,
    # none of the unprobed counted as closed.
    assert closed + len(host.endpoints) + not_probed == len(ports), cut.detail
    assert "not tested, not closed" in cut.detail


async def ssh_banner_then_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Named at once by its banner; every check then waits for a key exchange that never comes.
    writer.write(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
    await writer.drain()
    while await reader.read(4096):
        pass


def test_host_timeout_cuts_checks_and_they_say_not_tested(tmp_path: Path) -> None:
    from mamori.checks.catalog import default_catalog

    port = 21790
    specs = tuple(s for s in default_catalog().values() if s.id.startswith("ssh-"))
    assert specs
    plan = ScanPlan(targets=(Target(TARPIT_HOST),), tcp_ports=(port,),
                    sweep=SweepOptions(max_timeout=1.0), checks=specs, host_timeout=3.0)
    t0 = time.monotonic()
    record = _scan_into_store(tmp_path / "m.db", plan, [(TARPIT_HOST, port)],
                              ssh_banner_then_stall)
    assert time.monotonic() - t0 < 3.0 + 2.5
    (host,) = record.hosts
    (ep,) = host.endpoints
    assert ep.service is not None and ep.service.name == "ssh"
    assert record.checks
    for result in record.checks:
        assert result.status.value == "not-tested", result
        assert "host timeout (--host-timeout 3 s)" in result.summary, result.summary
