"""End to end: the real `mamori watch` process, real nmap, real curl, a real nginx.

Decoys listen on 127.0.140.1-2, nginx on 127.0.140.3 writes the access log the sensor follows.
Each visitor gets its own loopback source address (nmap -S, curl --interface), so incidents
can be told apart. Then SIGTERM, and everything is read back through `mamori incidents` and
`mamori events` as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_mamori
from daemons import Daemon, _need, _spawn, _started, running, wait_tcp
from mamori.cli.app import main

DECOY_A, DECOY_B, NGINX_HOST = "127.0.140.1", "127.0.140.2", "127.0.140.3"
NMAP_SRC, WEB_SRC, TELNET_SRC = "127.0.140.50", "127.0.140.60", "127.0.140.61"
UDP_SRC = "127.0.0.1"  # nmap -sU ignores -S on loopback (the replies go astray): its own source
TCP_DECOYS = {DECOY_A: [2323, 8081, 2222], DECOY_B: [6379, 3306, 445]}
UDP_PORTS = [1900, 5060, 161, 123, 69]
NGINX_PORT = 8080

pytestmark = [pytest.mark.root, pytest.mark.daemon]

CODE_RED = (
    "/default.ida?" + "N" * 224 + "%u9090%u6858%ucbd3%u7801%u9090%u6858%ucbd3%u7801%u9090"
    "%u6858%ucbd3%u7801%u9090%u9090%u8190%u00c3%u0003%u8b00%u531b%u53ff%u0078%u0000%u00=a"
)


def start_nginx_logging(workdir: Path, access_log: Path) -> Daemon:
    """nginx on NGINX_HOST:NGINX_PORT writing the combined access log to ``access_log``."""
    nginx = _need("/usr/sbin/nginx")
    pid = workdir / "nginx.pid"
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n"
        f"error_log {workdir}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 64; }\nhttp {\n"
        f"  access_log {access_log} combined;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
        f"  server {{\n    listen {NGINX_HOST}:{NGINX_PORT};\n"
        '    location / { return 200 "hello\\n"; }\n  }\n}\n'
    )
    proc, log = _spawn(
        [nginx, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(cfg)],
        workdir, "nginx.out")
    return _started(Daemon("nginx", NGINX_HOST, NGINX_PORT, proc, workdir, pid, log),
                    lambda: wait_tcp(NGINX_HOST, NGINX_PORT, proc=proc))


class Watch:
    """A running `mamori watch` process."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        self.stderr_path = workdir / "watch.err"
        self.stdout_path = workdir / "watch.out"
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mamori", "watch", *args], stdout=out, stderr=err,
                cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "MAMORI_DB"})

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "mamori watch: watching" in self.stderr():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"mamori watch did not start:\n{self.stderr()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def summary_counts(stderr: str) -> dict[str, int]:
    """The numbers of the sensor's last line ("... 12 event(s) received, 1 derived, ...")."""
    line = [ln for ln in stderr.splitlines() if "mamori watch: stopped:" in ln][-1]
    return {m.group(2): int(m.group(1))
            for m in re.finditer(r"(\d+) (?:[a-z]+\(s\) )?([a-z]+)", line)}


def as_json(*args: str) -> Any:
    """The real CLI in a subprocess: only JSON on stdout."""
    result = run_mamori(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def in_process_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """The same CLI entry point in this process (saves a Python start per query)."""
    old = sys.argv
    sys.argv = ["mamori", *args]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    finally:
        sys.argv = old
    return json.loads(capsys.readouterr().out)


def curl(path: str, *extra: str) -> None:
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", "5", "--interface", WEB_SRC,
         "--noproxy", "*", *extra, f"http://{NGINX_HOST}:{NGINX_PORT}{path}"],
        check=True, timeout=10)


def telnet_login(user: str, password: str) -> None:
    with socket.create_connection((DECOY_A, 2323), timeout=5,
                                  source_address=(TELNET_SRC, 0)) as s:
        s.recv(4096)
        s.sendall(user.encode() + b"\r\n")
        time.sleep(0.2)
        s.sendall(password.encode() + b"\r\n")
        time.sleep(0.2)
        s.recv(4096)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    access = tmp_path / "access.log"
    with running(start_nginx_logging, tmp_path, access) as daemon:
        yield daemon, access


def test_nmap_scans_and_web_attacks_become_one_incident_each(
    tmp_path: Path, nginx: tuple[Daemon, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nmap = shutil.which("nmap")
    if nmap is None:
        pytest.skip("nmap not installed")
    _, access = nginx
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    alerts = tmp_path / "alerts.jsonl"
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[watch]\nalerts = [{{ type = "jsonl", path = "{alerts}", '
                        'types = ["incident"] }]\n')
    decoys = [f"{host}:{port}" for host, ports in TCP_DECOYS.items() for port in ports]
    decoys += [f"{DECOY_A}:{port}/udp" for port in UDP_PORTS]
    args = [a for d in decoys for a in ("--decoy", d)]
    watch = Watch([*args, "--access-log", str(access), "--settings", str(settings),
                   "--db", db], tmp_path)
    try:
        watch.wait_ready()
        # nmap connect scan of the decoy ports only, from its own address, and a UDP scan.
        tcp_ports = ",".join(str(p) for ports in TCP_DECOYS.values() for p in ports)
        udp = subprocess.Popen(
            [nmap, "-sU", "-n", "-Pn", "-T4", "--max-retries", "1", "--exclude-ports", "2024",
             "-p", ",".join(map(str, UDP_PORTS)), DECOY_A],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        scan = subprocess.run(
            [nmap, "-sT", "-n", "-Pn", "-S", NMAP_SRC, "-e", "lo", "--exclude-ports", "2024",
             "-p", tcp_ports, DECOY_A, DECOY_B],
            capture_output=True, text=True, timeout=60, check=True)
        assert len(re.findall(r"/tcp +open ", scan.stdout)) == 6, scan.stdout
        # A worm and an exploit against the real web server, and one ordinary page.
        curl(CODE_RED)
        curl("/", "-A", "${jndi:ldap://127.0.0.1:1389/a}")
        curl("/index.html")
        telnet_login("root", "xc3511")
        udp_out, _ = udp.communicate(timeout=60)
        assert udp.returncode == 0, udp_out
        time.sleep(0.5)  # the log follower polls the access log
    finally:
        rc = watch.stop() if watch.proc.poll() is None else watch.proc.returncode
        watch.kill()
    err = watch.stderr()
    assert rc == 0, err
    counts = summary_counts(err)
    assert counts["stored"] == counts["received"] + counts["derived"], err  # nothing lost
    assert "dropped" not in counts

    incidents = as_json("incidents", "--format", "json", "--db", db)["incidents"]
    by_src: dict[str, list[dict[str, Any]]] = {}
    for inc in incidents:
        by_src.setdefault(inc["src"], []).append(inc)
    # Exactly one incident per visitor, with the right headline.
    (tcp_scan,) = by_src[NMAP_SRC]
    assert tcp_scan["kind"] == "scan.ports" and tcp_scan["status"] == "closed"
    # nmap tried each host's ports on both hosts: the other host's are closed, and knocks
    # on closed ports (on by default) join the scan
    assert set(tcp_scan["types"]) == {"decoy.connect", "port.knock", "scan.ports"}
    (udp_scan,) = by_src[UDP_SRC]
    assert udp_scan["kind"] == "scan.ports"
    assert "decoy.udp" in udp_scan["types"]
    (web,) = by_src[WEB_SRC]
    assert web["kind"] == "worm.codered"  # worms outrank exploits
    assert {"worm-codered", "exploit-log4shell"} <= set(web["signatures"])
    assert web["count"] == 3  # the ordinary page joined the open incident
    (telnet,) = by_src[TELNET_SRC]
    assert telnet["kind"] == "decoy.contact"
    assert set(by_src) == {NMAP_SRC, UDP_SRC, WEB_SRC, TELNET_SRC}

    events = in_process_json(capsys, "events", "--format", "json", "--limit", "0",
                             "--db", db)["events"]
    assert len(events) == counts["stored"]
    connects = [e for e in events if e["src"] == NMAP_SRC and e["type"] == "decoy.connect"]
    assert {(e["dst"], e["dst_port"]) for e in connects} == {
        (h, p) for h, ports in TCP_DECOYS.items() for p in ports}
    knocks = [e for e in events if e["src"] == NMAP_SRC and e["type"] == "port.knock"]
    assert {(e["dst"], e["dst_port"]) for e in knocks} == {
        (h, p) for h in TCP_DECOYS for other, ports in TCP_DECOYS.items() if other != h
        for p in ports}
    assert {e["incident_id"] for e in knocks} == {tcp_scan["id"]}
    (scan_event,) = [e for e in events if e["type"] == "scan.ports" and e["src"] == NMAP_SRC]
    assert scan_event["fields"]["technique"] == "connect"
    assert scan_event["incident_id"] == tcp_scan["id"]
    (udp_event,) = [e for e in events if e["type"] == "scan.ports" and e["src"] == UDP_SRC]
    assert udp_event["fields"]["technique"] == "udp"
    requests = [e for e in events if e["type"] == "http.request"]
    assert [e["src"] for e in requests] == [WEB_SRC] * 3
    assert {e["fields"]["path"] for e in requests} >= {"/", "/index.html"}
    logins = [e for e in events if e["type"] == "decoy.login"]
    assert [(e["fields"].get("username"), e["fields"].get("password")) for e in logins] == [
        ("root", "xc3511")]
    # Filters reach the store: only the web visitor's dangerous events.
    picked = in_process_json(capsys, "events", "--format", "json", "--src", WEB_SRC,
                             "--min-danger", "medium", "--db", db)["events"]
    assert len(picked) == 2 and {e["src"] for e in picked} == {WEB_SRC}

    # The alert sink heard of each incident opening once, with the stored id.
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    opened = [a for a in lines if a["schema"] == "mamori.incident/1" and a["opened"]]
    assert sorted(a["id"] for a in opened) == sorted(i["id"] for i in incidents)


def worm_log(path: Path) -> int:
    """A recorded Code Red day: 40 hits from one infected host over ten minutes, among
    ordinary visitors. Returns the number of lines."""
    lines = []
    for i in range(40):
        minute, second = divmod(i * 15, 60)
        lines.append(
            f'192.0.2.77 - - [04/Aug/2001:08:{30 + minute:02d}:{second:02d} -0400] '
            f'"GET {CODE_RED} HTTP/1.0" 404 297 "-" "-"')
        if i % 4 == 0:
            lines.append(
                f'198.51.100.{10 + i} - - [04/Aug/2001:08:{30 + minute:02d}:{second:02d} '
                '-0400] "GET /index.html HTTP/1.1" 200 1450 "-" "Mozilla/4.0 (compatible; '
                'MSIE 5.5; Windows 98)"')
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def test_a_replayed_worm_log_is_exactly_one_worm_incident(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAMORI_DB", raising=False)
    log = tmp_path / "access.log"
    total = worm_log(log)
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    result = run_mamori("watch", "--read-once", "--access-log", str(log), "--db", db,
                        "--settings", str(settings))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no alert sinks: nothing on stdout
    counts = summary_counts(result.stderr)
    assert counts["received"] == total and counts["stored"] == total

    (inc,) = as_json("incidents", "--format", "json", "--db", db)["incidents"]
    assert inc["kind"] == "worm.codered" and inc["src"] == "192.0.2.77"
    assert inc["count"] == 40 and inc["status"] == "closed"
    assert inc["signatures"] == ["worm-codered"]
    assert inc["first_seen"] == "2001-08-04T12:30:00+00:00"
    assert inc["last_seen"] == "2001-08-04T12:39:45+00:00"
    events = in_process_json(capsys, "events", "--format", "json", "-n", "0",
                             "--db", db)["events"]
    assert len(events) == total
    assert sum(1 for e in events if e["incident_id"] == inc["id"]) == 40
