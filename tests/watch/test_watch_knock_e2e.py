"""End to end: a real `mamori watch --knocks` on a namespace host, real nmap scans of 3,000
closed ports from another namespace (connect, SYN and UDP, IPv4 and IPv6; NULL, FIN and XMAS
over IPv4), with 0, 1 and 3
decoys among the ports. Each scan comes from its own source address and must make exactly one
incident, of kind scan.ports, whose scan.ports events name the right technique; every knock
is either an event or counted (repeats, rate-limited excess, kernel drops).

Namespaces mk15-scan (10.215.0.0/24, fd00:215::/64 .1 and .11-.19) and mk15-host (.2); the
host's ICMP rate limits are lifted so that nmap -sU learns "closed" at full speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_mamori
from netns import veth_pair

pytestmark = [pytest.mark.root]

NEAR, FAR = "mk15-scan", "mk15-host"
DEVS = ("k15s0", "k15h0")
HOST4, HOST6 = "10.215.0.2", "fd00:215::2"
PORTS = range(3001, 6001)  # 3,000 ports, all closed but the decoys'
DECOY_PORTS = (3222, 4323, 5380)
UDP_PORTS = range(3001, 3501)  # nmap -sU: a smaller set (one datagram and one ICMP each)
SCANS = {  # source -> (nmap arguments, expected technique)
    "10.215.0.11": (["-sT"], "connect"),
    "10.215.0.12": (["-sS"], "syn"),
    "10.215.0.13": (["-sU"], "udp"),
    "fd00:215::14": (["-6", "-sT"], "connect"),
    "fd00:215::15": (["-6", "-sS"], "syn"),
    "fd00:215::16": (["-6", "-sU"], "udp"),
    "10.215.0.17": (["-sN"], "null"),
    "10.215.0.18": (["-sF"], "fin"),
    "10.215.0.19": (["-sX"], "xmas"),
}
TCP_SCANS = sum(1 for args, _ in SCANS.values() if "-sU" not in args)


def nsrun(ns: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def hosts() -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("nmap") is None:
        pytest.skip("needs root and nmap")
    near = ["10.215.0.1/24", "fd00:215::1/64"] + [
        f"{src}/{64 if ':' in src else 24}" for src in SCANS]
    with veth_pair(NEAR, FAR, DEVS, (near, [f"{HOST4}/24", f"{HOST6}/64"]), []):
        for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                    "net.ipv4.icmp_msgs_per_sec=1000000"):
            nsrun(FAR, "sysctl", "-qw", key)
        yield


def start_watch(tmp: Path, decoys: list[str], env: dict[str, str] | None = None
                ) -> subprocess.Popen[bytes]:
    settings = tmp / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    args = [a for d in decoys for a in ("--decoy", d)]
    err = (tmp / "watch.err").open("wb")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", FAR, sys.executable, "-m", "mamori", "watch", "--knocks",
         *args, "--settings", str(settings), "--db", f"sqlite:///{tmp / 'watch.db'}"],
        stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "MAMORI_DB"}, **(env or {})})
    end = time.monotonic() + 30
    while "mamori watch: watching" not in (tmp / "watch.err").read_text():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError((tmp / "watch.err").read_text())
        time.sleep(0.05)
    return proc


def scan(src: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    v6 = ":" in src
    ports = UDP_PORTS if "-sU" in args else PORTS
    return nsrun(NEAR, "nmap", *args, "-n", "-Pn", "-T5", "--min-rate", "3000",
                 "--max-retries", "1", "-S", src, "-e", DEVS[0],
                 "-p", f"{ports.start}-{ports.stop - 1}", HOST6 if v6 else HOST4)


def as_json(*args: str) -> Any:
    result = run_mamori(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("count", "bpf"), [(0, "on"), (1, "on"), (3, "on"), (1, "off")])
def test_scans_of_closed_ports_are_one_scan_incident_each(
    hosts: None, tmp_path: Path, count: int, bpf: str
) -> None:
    decoys = [f"{h}:{p}" for p in DECOY_PORTS[:count] for h in (HOST4, f"[{HOST6}]")]
    watch = start_watch(tmp_path, decoys, {"MAMORI_KNOCK_BPF": bpf})
    try:
        for src, (args, _) in SCANS.items():
            done = scan(src, args)
            assert done.returncode == 0, done.stdout + done.stderr
            if "-sU" not in args:  # all closed, but the decoys (open|filtered to -sN/F/X)
                assert f"Not shown: {len(PORTS) - count} closed" in done.stdout, done.stdout
        time.sleep(0.5)
    finally:
        watch.send_signal(signal.SIGTERM)
        rc = watch.wait(timeout=60)
    err = (tmp_path / "watch.err").read_text()
    assert rc == 0, err
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    incidents = as_json("incidents", "--format", "json", "--db", db)["incidents"]
    events = as_json("events", "--format", "json", "--limit", "0", "--db", db)["events"]
    by_src: dict[str, list[dict[str, Any]]] = {}
    for inc in incidents:
        by_src.setdefault(inc["src"], []).append(inc)
    assert set(by_src) == set(SCANS), by_src
    for src, (_, technique) in SCANS.items():
        (inc,) = by_src[src]
        assert inc["kind"] == "scan.ports", inc
        scans = [e for e in events if e["type"] == "scan.ports" and e["src"] == src]
        assert scans and {e["fields"]["technique"] for e in scans} == {technique}, scans
        assert all(e["incident_id"] == inc["id"] for e in scans)
        if count == 0 and technique in ("syn", "connect"):
            assert {e["fields"]["certainty"] for e in scans} == {"likely"}
    # Nothing lost silently: every knock is an event, a repeat, or counted as excess.
    (totals,) = [e["fields"] for e in events if e["type"] == "sensor.limit"
                 and e["fields"].get("reason") == "knock totals"]
    knocks = sum(1 for e in events if e["type"] == "port.knock"
                 and "summarised" not in e["fields"])
    summarised = [e for e in events if "summarised" in e["fields"]]
    suppressed = sum(int(e["fields"].get("suppressed_events", 0)) for e in events
                     if e["type"] == "sensor.limit" and e["source"] == "knock" and e["src"])
    assert int(totals["knocks"]) == knocks
    assert int(totals["suppressed_events"]) == suppressed
    # ... and each source's excess is summed up in its own incident.
    assert sum(int(e["fields"]["summarised"]) for e in summarised) == suppressed
    assert {e["src"] for e in summarised} <= set(SCANS)
    ids = {inc["src"]: inc["id"] for inc in incidents}
    assert all(e["incident_id"] == ids[e["src"]] for e in summarised)
    expected = TCP_SCANS * (len(PORTS) - count) + 2 * len(UDP_PORTS)
    accounted = knocks + suppressed + int(totals["repeated"]) + int(totals["kernel_drops"])
    assert accounted >= expected, totals
    # Everything the kernel handed over is accounted for; SYNs to the decoys are theirs.
    assert accounted == int(totals["seen"]) - int(totals["ignored"]), totals
    assert totals["bpf"] == bpf
    if bpf == "on":  # the kernel kept back the decoys' handshakes and nmap's resets
        # per decoy port: one SYN from each connect/SYN scan, and two segments from each
        # NULL/FIN/XMAS scan (no answer from an open port: nmap sends it once more)
        assert int(totals["ignored"]) == (4 + 3 * 2) * count, totals
    else:  # the reader saw them and set them aside
        assert int(totals["ignored"]) > (4 + 3 * 2) * count, totals
    assert f"mamori watch: knocks: {totals['seen']} segment(s) read, {knocks} event(s)" in err
