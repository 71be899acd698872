"""`mamori check` end to end on this machine: listeners as ss sees them, probes proving the
misconfigured daemons, severity by exposure, the firewall verdict, and port 2024 untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
from conftest import ROOT, run_mamori

pytestmark = pytest.mark.daemon
HOST = "127.0.45.1"
REDIS_PORT = 16500


def ss_listeners() -> set[tuple[str, str, int]]:
    out = subprocess.run(["ss", "-lntupH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        proto, local = parts[0], parts[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%", 1)[0]
        address = "0.0.0.0" if address == "*" and proto == "udp" else address
        address = "::" if address == "*" else address
        found.add((proto, address, int(port)))
    return found


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[dict[str, int]]:
    """An open Redis on a loopback address and a plain listener on all interfaces."""
    with dm.running(dm.start_redis, tmp_path, HOST, REDIS_PORT):
        wide = socket.socket()
        wide.bind(("0.0.0.0", 0))
        wide.listen(4)
        try:
            yield {"redis": REDIS_PORT, "wide": wide.getsockname()[1]}
        finally:
            wide.close()


@pytest.fixture
def port_2024() -> Iterator[None]:
    """Something listening on 2024/tcp, as on the machine. The suite's own network namespace
    (scripts/isolated) does not see the machine's listener, so stand one in; outside it, the
    machine's own is there already."""
    stand_in = socket.socket()
    try:
        stand_in.bind(("0.0.0.0", 2024))
        stand_in.listen(1)
    except OSError:
        stand_in.close()  # the machine's listener holds it
    try:
        yield
    finally:
        stand_in.close()


@pytest.fixture
def lo_capture(tmp_path: Path) -> Iterator[Path]:
    """tcpdump on lo for anything to or from port 2024 while the test runs."""
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        pytest.skip("needs tcpdump and root")
    pcap = tmp_path / "p2024.pcap"
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-w", str(pcap), "tcp port 2024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach before anything is sent
    yield pcap
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)


def test_check_lists_what_ss_shows_and_proves_the_daemon(
    tmp_path: Path, machine: dict[str, int], port_2024: None, lo_capture: Path
) -> None:
    before = ss_listeners()
    proc = run_mamori("check", "--exclude-ports", "2024", "-f", "json",
                      "--db", str(tmp_path / "m.db"), timeout=300)
    after = ss_listeners()
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["scan"]["kind"] == "check"
    listed = {(r["proto"], r["address"].split("%", 1)[0], r["port"]) for r in doc["listeners"]}
    stable = before & after
    assert stable <= listed, stable - listed  # everything ss saw throughout is listed
    assert listed <= before | after, listed - (before | after)  # and nothing ss never saw
    mine = {r["port"]: r for r in doc["listeners"] if r["port"] in machine.values()}
    assert mine[machine["redis"]]["scope"] == "loopback"
    assert mine[machine["redis"]]["process"] == "redis-server"
    assert mine[machine["wide"]]["scope"] == "all"
    assert mine[machine["wide"]]["pid"] == os.getpid()
    # The open Redis is proved by a probe, and graded low: only this machine reaches it.
    (redis,) = [c for c in doc["checks"]
                if c["check_id"] == "redis-unauthenticated" and c["port"] == machine["redis"]]
    assert redis["status"] == "finding" and redis["severity"] == "low"
    assert redis["exposure"]["scope"] == "loopback"  # why, in its own field (schema 1.3)
    assert "listening on" not in redis["summary"]
    # 2024 is listed, never probed, and no packet went to it.
    (m2024,) = [r for r in doc["listeners"] if r["port"] == 2024 and r["proto"] == "tcp"]
    assert m2024["probe_address"] is None and "exclude" in m2024["not_probed"]
    time.sleep(0.5)
    counted = subprocess.run(["tcpdump", "-r", str(lo_capture), "-n"], capture_output=True,
                             text=True, check=False)
    assert counted.stdout.strip() == "", counted.stdout


def _ns(name: str, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                          check=False, **kw)  # type: ignore[arg-type]


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    name = f"chk-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _ns(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


RULESET = """
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
    tcp dport 6379 accept
  }
}
"""


def test_severity_follows_exposure_and_the_firewall(tmp_path: Path, namespace: str) -> None:
    """Inside a namespace of its own: Redis on all interfaces with the firewall letting it in is
    critical; a second open Redis the firewall drops is graded lower; verdicts say why."""
    rules = tmp_path / "rules.nft"
    rules.write_text(RULESET)
    assert _ns(namespace, "nft", "-f", str(rules)).returncode == 0
    daemons = []
    try:
        for port in (6379, 6380):
            work = tmp_path / f"r{port}"
            work.mkdir()
            daemons.append(subprocess.Popen(
                ["ip", "netns", "exec", namespace, "redis-server", "--bind", "0.0.0.0",
                 "--port", str(port), "--protected-mode", "no", "--save", "",
                 "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(f":{p} " in _ns(namespace, "ss", "-lntH").stdout for p in (6379, 6380)):
                break
            time.sleep(0.1)
        proc = _ns(namespace, sys.executable, "-m", "mamori", "check", "--checks",
                   "redis-unauthenticated", "-f", "json", "--db", str(tmp_path / "m.db"),
                   cwd=ROOT, timeout=300)
    finally:
        for d in daemons:
            d.terminate()
            d.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    fw = {r["port"]: r["firewall"] for r in doc["listeners"]}
    assert fw[6379]["verdict"] == "allowed" and fw[6379]["backend"] == "nftables"
    assert fw[6380]["verdict"] == "blocked"
    found = {c["port"]: c for c in doc["checks"] if c["check_id"] == "redis-unauthenticated"}
    assert found[6379]["status"] == "finding" and found[6379]["severity"] == "critical"
    assert found[6380]["status"] == "finding" and found[6380]["severity"] == "medium"
    exposed = {c["summary"] for c in doc["checks"]
               if c["check_id"] == "exposed-listener" and c["status"] == "finding"}
    assert any("6379" in s for s in exposed) and not any("6380" in s for s in exposed)
