"""The real `mamori` command, run as a user runs it: exit codes, clean JSON, history, kill -9."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, run_mamori

ADDR = "127.0.40.1"


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    """Three silent TCP listeners on ADDR: open ports the sweep must find."""
    socks = []
    for port in (4101, 4102, 4103):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ADDR, port))
        s.listen(16)
        socks.append(s)
    yield [4101, 4102, 4103]
    for s in socks:
        s.close()


def scan_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("select count(*) from scans").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["scan", ADDR, "-p", "0"], "port"),
        (["scan", ADDR, "-p", "70000"], "port"),
        (["scan", ADDR, "-p", "20-10"], "range"),
        (["scan", "127.0.40.300"], "octet"),
        (["scan", ADDR, "--format", "xml"], "--format"),
        (["scan", ADDR, "--rate", "-5"], "--rate"),
        (["scan", ADDR, "--timeout", "0"], "--timeout"),
        (["scan", ADDR, "--bogus-flag"], "bogus"),
        (["scan"], "targets"),
        (["show", "notanumber"], "integer"),
    ],
)
def test_bad_usage_is_one_line_exit_2_and_nothing_stored(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    db = tmp_path / "m.db"
    proc = (
        run_mamori(*args, "--db", str(db))
        if args[0] != "show" or len(args) > 1
        else run_mamori(*args)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mamori: error:") and fragment in lines[0]
    assert proc.stdout == ""
    assert scan_count(db) == 0


def test_scan_json_is_only_json_and_is_kept(tmp_path: Path, listeners: list[int]) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori(
        "scan", ADDR, "-p", "4100-4110", "--no-identify", "--format", "json", "--db", str(db)
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # nothing but JSON on stdout
    (host,) = doc["hosts"]
    open_ports = sorted(e["port"] for e in host["endpoints"] if e["state"] == "open")
    assert open_ports == listeners
    assert host["not_shown"]["tcp"]["closed"] == 8

    hist = run_mamori("history", "--format", "json", "--db", str(db))
    assert hist.returncode == 0
    (summary,) = json.loads(hist.stdout)
    assert summary["status"] == "done"
    again = run_mamori("show", str(summary["id"]), "--format", "json", "--db", str(db))
    assert json.loads(again.stdout)["hosts"] == doc["hosts"]


def test_show_unknown_id_and_output_file(tmp_path: Path, listeners: list[int]) -> None:
    db = tmp_path / "m.db"
    assert run_mamori("show", "99", "--db", str(db)).returncode == 2
    out = tmp_path / "r.json"
    proc = run_mamori(
        "scan", ADDR, "-p", "4101", "--no-identify", "-f", "json", "-o", str(out), "--db", str(db)
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert json.loads(out.read_text())["hosts"][0]["endpoints"][0]["port"] == 4101


def test_mamori_db_env_is_honoured(tmp_path: Path, listeners: list[int]) -> None:
    db = tmp_path / "env.db"
    proc = run_mamori("scan", ADDR, "-p", "4101", "--no-identify", env={"MAMORI_DB": str(db)})
    assert proc.returncode == 0, proc.stderr
    assert scan_count(db) == 1


def test_table_output_lists_open_ports(tmp_path: Path, listeners: list[int]) -> None:
    proc = run_mamori(
        "scan", ADDR, "-p", "4100-4105", "--no-identify", "--db", str(tmp_path / "m.db")
    )
    assert proc.returncode == 0, proc.stderr
    for port in listeners:
        assert f"{port}/tcp" in proc.stdout


def test_progress_bar_only_on_a_terminal(tmp_path: Path, listeners: list[int]) -> None:
    # Piped: stderr stays quiet.
    piped = run_mamori(
        "scan", ADDR, "-p", "1-3000", "--no-identify", "-f", "json", "--db", str(tmp_path / "a.db")
    )
    assert piped.returncode == 0 and piped.stderr == ""
    # A terminal on stderr: the bar is drawn there, stdout still carries only JSON.
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mamori",
            "scan",
            ADDR,
            "-p",
            "1-20000",
            "--rate",
            "20000",
            "--no-identify",
            "-f",
            "json",
            "--db",
            str(tmp_path / "b.db"),
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert proc.returncode == 0
    json.loads(out)
    assert b"TCP sweep" in drawn and b"\xe2\x94\x81" in drawn  # the bar's box-drawing glyph


def test_sigkill_mid_scan_leaves_a_consistent_interrupted_scan(
    tmp_path: Path, listeners: list[int]
) -> None:
    db = tmp_path / "m.db"
    # --rate keeps the sweep slow enough (~10 s) to kill it after the first results are stored.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mamori",
            "scan",
            ADDR,
            "-p",
            "4101-4103,5000-8000",
            "--rate",
            "300",
            "--no-identify",
            "--db",
            str(db),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    stored = 0
    while time.monotonic() < deadline and stored < 3:
        time.sleep(0.1)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    stored = conn.execute(
                        "select count(*) from endpoints where state='open'"
                    ).fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
    assert stored == 3, "the scan did not store its first results in time"
    assert proc.poll() is None, "the scan finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    hist = run_mamori("history", "--format", "json", "--db", str(db))
    assert hist.returncode == 0, hist.stderr
    (summary,) = json.loads(hist.stdout)
    assert summary["status"] == "interrupted"
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    shown = json.loads(run_mamori("show", str(summary["id"]), "-f", "json", "--db", str(db)).stdout)
    assert (
        sorted(e["port"] for e in shown["hosts"][0]["endpoints"] if e["state"] == "open")
        == listeners
    )


def test_sigterm_marks_the_scan_interrupted(tmp_path: Path, listeners: list[int]) -> None:
    db = tmp_path / "m.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mamori",
            "scan",
            ADDR,
            "-p",
            "4101-4103,5000-9000",
            "--rate",
            "300",
            "--no-identify",
            "-f",
            "json",
            "--db",
            str(db),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert json.loads(out)["scan"]["status"] == "interrupted"


def test_version_and_help() -> None:
    assert run_mamori("--version").stdout.startswith("mamori ")
    helped = run_mamori("scan", "--help")
    assert helped.returncode == 0 and "--top-ports" in helped.stdout


def test_unusable_store_exits_3_and_bad_url_exits_2(tmp_path: Path, listeners: list[int]) -> None:
    # A directory where the database file should be: the scan cannot run (3), one line.
    proc = run_mamori("scan", ADDR, "-p", "4101", "--no-identify", "--db", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "directory" in proc.stderr
    # A URL that is not one: bad usage (2).
    bad = run_mamori("scan", ADDR, "-p", "4101", "--no-identify", "--db", "nosuchdb://x/y")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("mamori: error:") and bad.stderr.count("\n") == 1
    # A file that is not a database is refused and left as it was.
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes\n")
    refused = run_mamori("scan", ADDR, "-p", "4101", "--no-identify", "--db", str(foreign))
    assert refused.returncode == 3 and foreign.read_text() == "my notes\n"
