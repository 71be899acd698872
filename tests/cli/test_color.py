"""The table report is coloured by severity only on a terminal, and never with NO_COLOR set
(https://no-color.org); a pipe or a file gets plain text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ROOT, run_mamori

from mamori.store import Store
from store_fixtures import store_sample_scan

ESC = "\x1b["


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("color") / "m.db")
    with Store.open(path) as store:
        store_sample_scan(store)
    return path


def _on_a_terminal(db: str, **env: str) -> str:
    """stdout of `mamori show 1` written to a pseudo-terminal."""
    master, slave = os.openpty()
    full = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env | {"MAMORI_DB": db}
    proc = subprocess.Popen([sys.executable, "-m", "mamori", "show", "1"], stdout=slave,
                            stderr=subprocess.PIPE, env=full, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_severity_colours(db: str) -> None:
    out = _on_a_terminal(db)
    assert f"{ESC}1;31mCRITICAL" in out  # bold red
    assert f"{ESC}31mHIGH" in out  # red
    assert "REDIS" in out.upper()


def test_an_empty_no_color_does_not_turn_colour_off(db: str) -> None:
    assert f"{ESC}31mHIGH" in _on_a_terminal(db, NO_COLOR="")


def test_no_color_turns_it_off(db: str) -> None:
    out = _on_a_terminal(db, NO_COLOR="1")
    assert "CRITICAL" in out and ESC not in out


def test_a_pipe_and_a_file_get_plain_text(db: str, tmp_path: Path) -> None:
    r = run_mamori("show", "1", env={"MAMORI_DB": db})
    assert r.returncode == 0 and "CRITICAL" in r.stdout and ESC not in r.stdout
    out = tmp_path / "r.txt"
    assert run_mamori("show", "1", "-o", str(out), env={"MAMORI_DB": db}).returncode == 0
    assert ESC not in out.read_text(encoding="utf-8")
