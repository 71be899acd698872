"""--format is a choice: help lists each command's own formats, a bad one is click's
"not one of" as mamori's one-line error, exit 2, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import run_mamori

REPORT = "table|json|markdown|html|sarif"
COMMANDS = [
    (["scan", "127.0.0.1"], REPORT),
    (["check", "127.0.0.1"], REPORT),
    (["show", "1"], REPORT),
    (["history"], "table|json"),
    (["checks", "list"], REPORT),
    (["checks", "show", "redis-noauth"], REPORT),
    (["import", "nmap.xml"], REPORT),
    (["diff"], REPORT),
    (["events"], "table|json"),
    (["incidents"], "table|json"),
    (["watch", "report"], "table|json|html"),
]


@pytest.mark.parametrize(("argv", "choices"), COMMANDS, ids=lambda v: " ".join(v) if
                         isinstance(v, list) else v)
def test_help_lists_the_allowed_formats(argv: list[str], choices: str) -> None:
    words = [w for w in argv if not w[0].isdigit() and "." not in w and "-" not in w]
    r = run_mamori(*words, "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert f"<{choices}>" in r.stdout


@pytest.mark.parametrize(("argv", "choices"), COMMANDS, ids=lambda v: " ".join(v) if
                         isinstance(v, list) else v)
def test_a_bad_format_is_one_line_exit_2_nothing_stored(
    argv: list[str], choices: str, tmp_path: Path
) -> None:
    db = tmp_path / "m.db"
    r = run_mamori(*argv, "--format", "xml", env={"MAMORI_DB": str(db)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamori: error: "), r.stderr
    assert "--format" in lines[0] and "'xml' is not one of" in lines[0]
    assert "Value error" not in lines[0]
    assert r.stdout == ""
    assert not db.exists()
