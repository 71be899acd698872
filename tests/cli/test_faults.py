"""Faults and hostile input at the command line (issue 16, items 2, 8-12, 17-19): run times that
cover the whole run, float options that are not numbers, ids SQLite cannot hold, stdout that
cannot be written, a disk that fills and a database deleted mid-scan, long target lists in
history, option values that cannot work, help that tells the truth.

Each case runs the real ``mamori`` in a subprocess against real SQLite; the disk-full case on a
real (small) tmpfs. Addresses: 127.0.47.0/24 (no other test uses it).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ROOT, run_mamori

ADDR = "127.0.47.1"
SWEEP_HOSTS = "127.0.47.10-13"  # nothing listens there: every port answers RST at once
HOLD = 4.0  # seconds another writer holds the database in the run-time test
PORTS = list(range(4700, 4720))
FULL_ADDR = "127.0.47.2"
FULL_PORTS = list(range(4700, 4900))


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    """Silent TCP listeners on ADDR: open ports every scan here must find."""
    socks = []
    for port in PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ADDR, port))
        s.listen(16)
        socks.append(s)
    yield PORTS
    for s in socks:
        s.close()


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mamori: error: "), proc.stderr
    return lines[0]


def scans(db: Path) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [(int(i), str(s)) for i, s in conn.execute("select id, status from scans")]
        except sqlite3.OperationalError:
            return []


def open_ports(report: dict[str, object]) -> list[int]:
    hosts = report["hosts"]
    assert isinstance(hosts, list)
    return sorted(e["port"] for h in hosts for e in h["endpoints"] if e["state"] == "open")


# -- item 2: the run time covers the whole run -----------------------------------------------


def test_run_time_starts_when_the_command_does(tmp_path: Path) -> None:
    # The store used to stamp "started" only once it was open: a fast sweep was then over
    # before its run began (a 2.7 s sweep stored as 0.008 s). Here another process holds the
    # database exclusively for HOLD seconds, so the store opens only after that, whatever the
    # machine's load; the sweep itself runs meanwhile.
    db = tmp_path / "m.db"
    run_mamori("history", "--db", str(db))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # WAL would let the store read meanwhile
    holder.execute("BEGIN EXCLUSIVE")
    launched = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "scan", SWEEP_HOSTS, "-p", "1-20000",
         "--no-identify", "-f", "json", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(HOLD)
    holder.execute("ROLLBACK")
    holder.close()
    out, err = proc.communicate(timeout=120)
    wall = time.time() - launched
    assert proc.returncode == 0, err
    scan = json.loads(out)["scan"]
    started = datetime.fromisoformat(scan["started_at"].replace("Z", "+00:00")).timestamp()
    finished = datetime.fromisoformat(scan["finished_at"].replace("Z", "+00:00")).timestamp()
    assert started - launched < HOLD / 2, "stamped when the store was ready, not at the start"
    assert finished >= launched + HOLD
    assert scan["duration_s"] == pytest.approx(finished - started, abs=0.01)
    assert scan["duration_s"] >= wall - HOLD / 2


# -- item 8: float options that are not finite numbers ---------------------------------------


@pytest.mark.parametrize("args", [
    ["--rate", "inf"], ["--rate", "nan"], ["--rate", "-inf"], ["--rate", "infinity"],
    ["--timeout", "inf"], ["--timeout", "nan"],
])
def test_float_options_refuse_inf_and_nan(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori("scan", ADDR, "-p", "4700", "--no-identify", *args, "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert args[0] in one_error_line(proc)
    assert proc.stdout == "" and scans(db) == []


def test_serve_settings_refuse_infinite_numbers(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[serve]\nprobe_rate = inf\n")
    proc = run_mamori("serve", "--settings", str(settings), "--bind", ADDR, "--port", "4790",
                      timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "probe_rate" in one_error_line(proc)


# -- item 9: ids SQLite cannot hold ----------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["show", "99999999999999999999"],
    ["show", "9223372036854775808"],
    ["diff", "99999999999999999999"],
    ["diff", "1", "99999999999999999999"],
    ["diff", "99999999999999999999", "1"],
])
def test_huge_ids_are_bad_usage(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori(*args, "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert "id" in one_error_line(proc)
    assert proc.stdout == ""


# -- item 10: stdout that cannot be written --------------------------------------------------


def _run_to(stdout: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mamori", *args], stdout=stdout,
                          stderr=subprocess.PIPE, cwd=ROOT, timeout=60, check=False)


@pytest.mark.parametrize("args", [["history"], ["show", "1", "-f", "json"], ["--version"],
                                  ["--help"], []])
def test_stdout_on_a_full_disk_is_one_line_exit_3(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "m.db"
    run_mamori("scan", ADDR, "-p", "4700", "--no-identify", "--db", str(db))
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        proc = _run_to(fd, *args, *(["--db", str(db)] if args[:1] in (["history"], ["show"])
                                    else []))
    finally:
        os.close(fd)
    stderr = proc.stderr.decode()
    assert proc.returncode == 3, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamori: error: "), stderr
    assert "No space left on device" in lines[0] and "Traceback" not in stderr


@pytest.mark.parametrize("args", [["history"], ["--version"], ["show", "1", "-f", "json"]])
def test_closed_pipe_is_a_quiet_exit(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "m.db"
    run_mamori("scan", ADDR, "-p", "4700", "--no-identify", "--db", str(db))
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already gone
    try:
        extra = ["--db", str(db)] if args[0] != "--version" else []
        proc = _run_to(write_end, *args, *extra)
    finally:
        os.close(write_end)
    assert proc.stderr == b""
    assert proc.returncode == 0


# -- item 11: the disk fills during a scan ---------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "mamori-test", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.fixture
def many_listeners() -> Iterator[list[int]]:
    """200 silent TCP listeners on FULL_ADDR: more endpoints than a nearly full disk holds."""
    socks = []
    for port in FULL_PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((FULL_ADDR, port))
        s.listen(4)
        socks.append(s)
    yield FULL_PORTS
    for s in socks:
        s.close()


@pytest.mark.root
def test_disk_full_mid_scan_prints_the_report_from_memory(
    small_disk: Path, many_listeners: list[int]
) -> None:
    db = small_disk / "m.db"
    assert run_mamori("history", "--db", str(db)).returncode == 0
    free = os.statvfs(small_disk)
    # What is left: SQLite's shared-memory index (32 KiB) and the new scan row fit (checked
    # to hold from 48 to 128 KiB), the 200 endpoints do not.
    room = 80 * 1024
    with (small_disk / "filler").open("wb") as fh:
        fh.write(b"\0" * (free.f_bavail * free.f_frsize - room))
    proc = run_mamori("scan", FULL_ADDR, "-p", "4700-4899", "--no-identify", "-f", "json",
                      "--db", str(db))
    assert proc.returncode == 3, proc.stderr
    line = one_error_line(proc)
    assert "full" in line and "from memory" in line
    report = json.loads(proc.stdout)
    assert report["scan"]["status"] == "failed" and report["scan"]["complete"] is False
    shown = open_ports(report)
    # The run stops at the failure: what the sweep had found by then, and nothing else.
    assert shown and set(shown) <= set(many_listeners)
    (small_disk / "filler").unlink()
    stored = scans(db)
    assert len(stored) == 1 and stored[0][1] != "done"
    with sqlite3.connect(db) as conn:
        kept = {int(p) for (p,) in conn.execute("select port from endpoints")}
    assert kept <= set(shown)  # the report lost nothing the store had


# -- item 12: the database deleted during a scan ---------------------------------------------


def test_database_deleted_mid_scan_is_reported(tmp_path: Path, listeners: list[int]) -> None:
    db = tmp_path / "m.db"
    run_mamori("history", "--db", str(db))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "scan", ADDR, "-p", "4700-4739", "--rate", "12",
         "--no-identify", "-f", "json", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 20
    while not scans(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scans(db), "the scan never started"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "deleted" in lines[0] and str(db) in lines[0], err
    assert open_ports(json.loads(out)) == listeners


def test_a_deleted_database_is_not_created_again(tmp_path: Path, listeners: list[int]) -> None:
    """After the run says the database was deleted, nothing quietly makes an empty one there
    (reading the accepted risks for the report must not create a store)."""
    test_database_deleted_mid_scan_is_reported(tmp_path, listeners)
    assert not (tmp_path / "m.db").exists()


# -- item 17: a run of many targets in history -----------------------------------------------


def test_history_shows_a_few_targets_and_a_count(tmp_path: Path) -> None:
    from mamori.model import ScanStatus
    from mamori.store import Store

    db = tmp_path / "m.db"
    targets = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(3285)]
    with Store.open(str(db)) as store:
        store.finish_scan(store.begin_scan("import", targets, {}), ScanStatus.DONE)
    table = run_mamori("history", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.strip().splitlines()) <= 3, table.stdout[:2000]  # header, one row
    words = " ".join(table.stdout.split())  # the cell may fold onto a second line
    assert "127.0.0.1, 127.0.0.2, … (+3,283" in words and "more)" in words, words[:2000]
    doc = json.loads(run_mamori("history", "-f", "json", "--db", str(db)).stdout)
    assert doc[0]["targets"] == targets


# -- item 18: option values that cannot work -------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a certificate\n", b"\x30\x82\x01\x0a" * 64],
                         ids=["empty", "text", "der-like"])
def test_ca_file_that_is_not_pem(tmp_path: Path, content: bytes) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    db = tmp_path / "m.db"
    for command in (["scan", ADDR, "-p", "4700"], ["check"]):
        proc = run_mamori(*command, "--ca-file", str(ca), "--db", str(db))
        assert proc.returncode == 2, proc.stderr
        assert "--ca-file" in one_error_line(proc)
    assert scans(db) == []


@pytest.mark.parametrize("url", ["canary", "ftp://127.0.0.1/x", "http://", "127.0.0.1:80/x",
                                 "http:///path", "https://[::1/x"])
def test_proxy_url_that_is_not_a_url(tmp_path: Path, url: str) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori("scan", ADDR, "-p", "4700", "--proxy-url", url,
                      "--proxy-pattern", "x", "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert "--proxy-url" in one_error_line(proc)
    assert scans(db) == []


# -- item 19: help and messages that tell the truth ------------------------------------------


def test_history_help_names_only_its_formats() -> None:
    proc = run_mamori("history", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    assert "<table|json>" in proc.stdout and "sarif" not in proc.stdout


def test_serve_port_is_in_the_printed_public_url(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "serve", "--bind", ADDR, "--port", "4791",
         "--settings", str(settings), "--db", str(tmp_path / "m.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 30
        while "mamori serve on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert "mamori serve on http://127.0.47.1:4791/" in line, line
    assert "public URL http://127.0.47.1:4791)" in line, line
