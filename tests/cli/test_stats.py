"""stderr while a run goes on, without a terminal: --stats-every lines, -v, -q
(the real CLI, stderr a pipe, a real listener on its own loopback address)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_mamori
from mamori.cli.stats import stats_line

ADDR = "127.0.212.7"
OPEN = 4301


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ADDR, OPEN))
    s.listen(16)
    yield OPEN
    s.close()


def _scan(tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    out = run_mamori("scan", ADDR, "-p", "4200-4500", "--no-identify", "--no-checks",
                     "--db", str(tmp_path / "m.db"), *extra)
    return out.returncode, out.stdout, out.stderr


def test_stats_every_prints_lines_on_a_pipe_and_stdout_stays_json(
        tmp_path: Path, listener: int) -> None:
    # 301 probes at 250/s: about 1.2 s, so a 0.3 s interval ticks several times.
    rc, out, err = _scan(tmp_path, "--rate", "250", "--stats-every", "0.3", "--format", "json")
    assert rc == 0, err
    report = json.loads(out)  # stdout holds the report alone
    assert report["hosts"][0]["endpoints"][0]["port"] == OPEN
    lines = [line for line in err.splitlines() if line.startswith("Stats: ")]
    assert len(lines) >= 2, err
    assert all("/301 probes done (" in line and "1 host;" in line for line in lines), lines
    assert set(err.splitlines()) == set(lines)  # nothing else on stderr


def test_no_stats_unless_asked(tmp_path: Path, listener: int) -> None:
    rc, _, err = _scan(tmp_path, "--rate", "600", "--format", "json")
    assert rc == 0 and err == ""


def test_verbose_prints_each_open_port(tmp_path: Path, listener: int) -> None:
    rc, _, err = _scan(tmp_path, "-v", "--format", "json")
    assert rc == 0
    assert f"Discovered open port {OPEN}/tcp on {ADDR}" in err.splitlines()


def test_quiet_prints_nothing_on_stderr(tmp_path: Path, listener: int) -> None:
    rc, out, err = _scan(tmp_path, "-q", "--stats-every", "0.1", "--rate", "600",
                         "-oN", str(tmp_path / "r.nmap"))
    assert rc == 0 and str(OPEN) in out
    assert (tmp_path / "r.nmap").exists()
    assert err == ""  # no stats lines, no "written to"


@pytest.mark.parametrize(("extra", "says"), [
    (("--stats-every", "0"), "--stats-every must be"), (("--stats-every", "-1"), "must be"),
    (("--stats-every", "soon"), "not 'soon'"), (("--stats-every", "nan"), "must be"),
    (("-v", "-q"), "either -v or -q, not both"),
])
@pytest.mark.parametrize("command", ["scan", "check"])
def test_bad_stats_or_verbosity_is_usage_error(tmp_path: Path, command: str,
                                                extra: tuple[str, ...], says: str) -> None:
    db = tmp_path / "m.db"
    target = (ADDR, "-p", "1") if command == "scan" else ()
    out = run_mamori(command, *target, "--db", str(db), *extra)
    assert out.returncode == 2
    assert out.stderr.startswith("mamori: error: ") and out.stderr.count("\n") == 1
    assert says in out.stderr
    assert not db.exists()


def test_stats_line_reads_like_nmap() -> None:
    assert stats_line(3723.9, 1, 23456, 65535, 3, 2, "TCP sweep") == (
        "Stats: 1:02:03 elapsed; 1 host; 23456/65535 probes done (35.8%); "
        "3 services identified; 2 findings; stage: TCP sweep")
    assert stats_line(0.2, 2, 0, 0, 1, 1, None) == (
        "Stats: 0:00:00 elapsed; 2 hosts; 0/0 probes done; 1 service identified; 1 finding")
