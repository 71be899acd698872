"""Benchmark (not a test): what `mamori watch --knocks` makes of full-speed scans of every port,
and what the kernel filter saves.

Two namespaces joined by a veth pair (root needed; run it inside ``scripts/isolated``):
mk15b-scan (10.216.0.1, fd00:216::1) runs nmap, mk15b-host (10.216.0.2) runs a real
``mamori watch --knocks`` with no decoy and, to make it a busy host, a TCP sink on port 9000
that a client in the scanner's namespace feeds as fast as it can during each scan (ordinary
traffic: segments with ACK, which the filter drops in the kernel and the reader otherwise has
to look at and discard).

For each scan (``nmap -sS -p-`` and ``nmap -sT -p-``, -T5, one source address each) and each
filter setting (on; off through ``MAMORI_KNOCK_BPF=off``) it reports:

* SYNs that reached a closed port: the host's own count of resets it sent (``OutRsts`` in
  ``/proc/net/snmp`` of the host namespace; each SYN to a closed port gets one);
* accounted: knock events stored + knocks counted as rate-limited excess + repeats + kernel
  drops, all from the watch's own store (the "knock totals" ``sensor.limit`` event);
  lost silently = SYNs - accounted (the goal is 0);
* knocks read (events + excess + repeats): with the filter off, ordinary segments fill the
  socket queue too and the kernel drops knocks with them (counted as kernel drops, which then
  also count segments that were not knocks: "accounted" exceeds the SYNs);
* CPU seconds of the `mamori watch` process (user + system, from ready to the end of the
  scan and the drain) and the same per 100,000 knocks; segments the reader woke up for.

Figures go to stdout as a table, and with ``--json`` as one JSON object. Traffic never leaves
the two namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NEAR, FAR = "mk15b-scan", "mk15b-host"
DEVS = ("k15bs0", "k15bh0")
HOST, SRC_SYN, SRC_CONNECT, CLIENT = "10.216.0.2", "10.216.0.11", "10.216.0.12", "10.216.0.1"
SINK_PORT = 9000

SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        while c.recv(1 << 20):
            pass
    except OSError:
        pass  # nmap -sT resets its connections
    c.close()
"""
FEED = """
import socket, sys, select
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
chunk = b"x" * 512; sent = 0  # small segments: many packets, as on a busy server
while not select.select([sys.stdin], [], [], 0)[0]:
    sent += c.send(chunk)
print(sent, flush=True)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def ns(name: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", name, *cmd], text=True, **kw)


@contextlib.contextmanager
def namespaces() -> Iterator[None]:
    try:
        for name in (NEAR, FAR):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            ip("netns", "add", name)
        ip("link", "add", DEVS[0], "netns", NEAR, "type", "veth", "peer", "name", DEVS[1],
           "netns", FAR)
        for name, dev, addrs in ((NEAR, DEVS[0], [CLIENT, SRC_SYN, SRC_CONNECT]),
                                 (FAR, DEVS[1], [HOST])):
            for addr in addrs:
                ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", name, "link", "set", dev, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield
    finally:
        for name in (NEAR, FAR):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def out_rsts() -> int:
    text = subprocess.run(["ip", "netns", "exec", FAR, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    head, values = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    return int(values[head.index("OutRsts")])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(work: Path, technique: str, bpf: str, ports: str) -> dict[str, Any]:
    db = work / f"{technique}-{bpf}.db"
    settings = work / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    err_path = work / f"{technique}-{bpf}.err"
    with err_path.open("w") as err:
        watch = ns(FAR, sys.executable, "-m", "mamori", "watch", "--knocks", "--settings",
                   str(settings), "--db", f"sqlite:///{db}", stdout=subprocess.DEVNULL,
                   stderr=err, cwd=ROOT, env={**os.environ, "MAMORI_KNOCK_BPF": bpf})
    try:
        end = time.monotonic() + 30
        while "mamori watch: watching" not in err_path.read_text():
            if watch.poll() is not None or time.monotonic() > end:
                raise SystemExit(err_path.read_text())
            time.sleep(0.05)
        feed = ns(NEAR, sys.executable, "-c", FEED, HOST, str(SINK_PORT),
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        time.sleep(0.3)
        before_cpu, before_rst = cpu_seconds(watch.pid), out_rsts()
        started = time.monotonic()
        src = SRC_SYN if technique == "syn" else SRC_CONNECT
        scan = subprocess.run(
            ["ip", "netns", "exec", NEAR, "nmap", "-sS" if technique == "syn" else "-sT",
             "-n", "-Pn", "-T5", "-S", src, "-e", DEVS[0], "-p", ports, HOST],
            capture_output=True, text=True, check=True)
        took = time.monotonic() - started
        stdout, _ = feed.communicate("stop\n", timeout=30)
        sent_bytes = int(stdout.strip() or 0)
        syns = out_rsts() - before_rst
        time.sleep(1.0)  # the reader drains what is queued
        cpu = cpu_seconds(watch.pid) - before_cpu
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=120)
    assert "Not shown" in scan.stdout, scan.stdout
    with sqlite3.connect(db) as con:
        knocks = con.execute("SELECT count(*) FROM events WHERE type = 'port.knock' AND "
                             "fields NOT LIKE '%summarised%'").fetchone()[0]
        rows = con.execute("SELECT fields FROM events WHERE type = 'sensor.limit' "
                           "AND source = 'knock'").fetchall()
    limits = [json.loads(r[0]) for r in rows]
    (totals,) = [f for f in limits if f.get("reason") == "knock totals"]
    accounted = (knocks + int(totals["suppressed_events"]) + int(totals["repeated"])
                 + int(totals["kernel_drops"]))
    return {
        "scan": f"nmap -s{'S' if technique == 'syn' else 'T'} -p {ports}", "bpf": bpf,
        "seconds": round(took, 2), "syns_to_closed_ports": syns, "knock_events": knocks,
        "suppressed": int(totals["suppressed_events"]), "repeated": int(totals["repeated"]),
        "kernel_drops": int(totals["kernel_drops"]), "accounted": accounted,
        "lost_silently": max(0, syns - accounted), "segments_read": int(totals["seen"]),
        "knocks_read": knocks + int(totals["suppressed_events"]) + int(totals["repeated"]),
        "ignored": int(totals["ignored"]), "cpu_seconds": round(cpu, 2),
        "cpu_per_100k_knocks": round(cpu / max(1, syns) * 100_000, 2),
        "background_mb": round(sent_bytes / 1e6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", default="1-65535")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, raw sockets): run inside scripts/isolated")
    results = []
    with namespaces(), tempfile.TemporaryDirectory(prefix="mamori-knocks-") as tmp:
        work = Path(tmp)
        sink = ns(FAR, sys.executable, "-c", SINK, HOST, str(SINK_PORT),
                  stdout=subprocess.PIPE)
        try:
            assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
            for technique in ("syn", "connect"):
                for bpf in ("on", "off"):
                    results.append(run_once(work, technique, bpf, args.ports))
        finally:
            sink.kill()
            sink.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    cols = ["scan", "bpf", "seconds", "syns_to_closed_ports", "accounted", "lost_silently",
            "knocks_read", "knock_events", "suppressed", "repeated", "kernel_drops",
            "segments_read", "cpu_seconds", "cpu_per_100k_knocks", "background_mb"]
    print("\t".join(cols))
    for row in results:
        print("\t".join(str(row[c]) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
