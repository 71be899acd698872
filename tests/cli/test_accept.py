"""`mamori accept`, end to end through the real CLI against a real redis on 127.0.89.2: an
accepted finding stops failing --fail-on and stops being "new" in a diff, every report shows
it as accepted with its reason, and it nags again when its evidence changes or it expires."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import daemons as dm
from conftest import run_mamori
from mamori.model import CheckResult
from mamori.report.accepted import evidence_fingerprint
from mamori.store import Store
from mamori.store.accepted import add_acceptance, list_acceptances

HOST, PORT = "127.0.89.2", 16895
TARGET = f"{HOST}:{PORT}"
CHECK = "redis-unauthenticated"
UNTIL = (date.today() + timedelta(days=30)).isoformat()


def _scan(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mamori("scan", HOST, "-p", str(PORT), "--db", db, *args)


def _redis(command: bytes) -> bytes:
    with socket.create_connection((HOST, PORT), timeout=5) as s:
        s.sendall(command)
        return s.recv(1024)


def _lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stderr.strip().splitlines()


def _json_checks(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = json.loads(proc.stdout)["checks"]
    return [c for c in checks if c["check_id"] == CHECK]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Run 1: redis with a password (the check passes). Then an open redis stays up for the
    tests; run 2 finds it unauthenticated. Yields (database, workdir)."""
    tmp = tmp_path_factory.mktemp("accept")
    db = str(tmp / "m.db")
    (tmp / "locked").mkdir()
    (tmp / "open").mkdir()
    with dm.running(dm.start_redis, tmp / "locked", HOST, PORT, password="s3cret-pass"):
        assert _scan(db, "-f", "json").returncode == 0
    with dm.running(dm.start_redis, tmp / "open", HOST, PORT):
        yield db, tmp


def test_nothing_to_accept_before_a_run_found_it(tmp_path: Path) -> None:
    db = str(tmp_path / "empty.db")
    proc = run_mamori("accept", CHECK, "--target", TARGET, "--reason", "lab", "--db", db)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(_lines(proc)) == 1 and _lines(proc)[0].startswith("mamori: error: ")
    assert run_mamori("accept", "--list", "--db", db).stdout == "no accepted risks\n"


@pytest.mark.parametrize("args", [
    (CHECK, "--target", "not-an-address", "--reason", "x"),
    (CHECK, "--target", f"{HOST}:70000", "--reason", "x"),
    (CHECK, "--target", TARGET),  # no reason
    (CHECK, "--target", TARGET, "--reason", "ok\x1b[2Jwiped"),  # a terminal escape
    (CHECK, "--target", TARGET, "--reason", "x", "--until", "2001-01-01"),
    (CHECK, "--target", TARGET, "--reason", "x", "--until", "next week"),
    (CHECK, "--reason", "x"),  # no target
    ("--list", "--remove", "1"),
    ("--remove", "99"),
    ("ssh-root-login", "--target", TARGET, "--reason", "no such finding there"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_stored(
    lab: tuple[str, Path], args: tuple[str, ...]
) -> None:
    db, _ = lab
    proc = run_mamori("accept", *args, "--db", db)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and len(_lines(proc)) == 1, proc.stderr
    with Store.open(db) as store:
        assert list_acceptances(store) == []


def test_accepted_risk_lifecycle(lab: tuple[str, Path]) -> None:
    db, _ = lab
    # Before: the open redis fails --fail-on high, and the diff from run 1 is worse.
    found = _scan(db, "--fail-on", "high", "-f", "json")
    assert found.returncode == 1, found.stderr
    (finding,) = _json_checks(found)
    assert finding["status"] == "finding" and finding["accepted"] is None
    new_id = json.loads(found.stdout)["scan"]["id"]
    assert run_mamori("diff", "1", str(new_id), "--db", db).returncode == 1

    done = run_mamori("accept", CHECK, "--target", TARGET, "--reason", "lab box, firewalled",
                      "--until", UNTIL, "--db", db)
    assert done.returncode == 0, done.stderr
    assert f"accepted risk 1: {CHECK} on {TARGET} (as found in run {new_id}), until {UNTIL}" \
        in done.stdout
    listed = run_mamori("accept", "--list", "--db", db)
    assert CHECK in listed.stdout and "lab box, firewalled" in listed.stdout
    assert "active" in listed.stdout

    # Accepted: --fail-on passes, every report says so, diff's "new" leaves it out.
    again = _scan(db, "--fail-on", "high", "-f", "json")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    (finding,) = _json_checks(again)
    assert finding["accepted"] == {"id": 1, "reason": "lab box, firewalled", "until": UNTIL,
                                   "accepted_from_scan": new_id}
    run_id = json.loads(again.stdout)["scan"]["id"]
    table = run_mamori("show", str(run_id), "--db", db)
    assert f"accepted risk #1: lab box, firewalled (until {UNTIL})" in table.stdout
    ja = run_mamori("show", str(run_id), "--db", db, "--lang", "ja")
    assert f"受容したリスク #1: lab box, firewalled ({UNTIL} まで)" in ja.stdout
    md = run_mamori("show", str(run_id), "--db", db, "-f", "markdown")
    assert "**accepted risk \\#1: lab box, firewalled" in md.stdout  # Markdown-escaped
    html = run_mamori("show", str(run_id), "--db", db, "-f", "html")
    assert 'class="mr-accepted"' in html.stdout and "lab box, firewalled" in html.stdout
    sarif = json.loads(run_mamori("show", str(run_id), "--db", db, "-f", "sarif").stdout)
    (result,) = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == CHECK]
    assert result["suppressions"] == [{"kind": "external", "status": "accepted",
                                       "justification": "lab box, firewalled"}]

    diff = run_mamori("diff", "1", str(run_id), "--db", db, "-f", "json")
    assert diff.returncode == 0, diff.stdout
    doc = json.loads(diff.stdout)
    assert doc["findings"]["new"] == [] and doc["worse"] is False
    assert [f["check_id"] for f in doc["findings"]["accepted"]] == [CHECK]
    diff_table = run_mamori("diff", "1", str(run_id), "--db", db)
    assert "already accepted" in diff_table.stdout and "WORSE" not in diff_table.stdout
    diff_sarif = json.loads(run_mamori("diff", "1", str(run_id), "--db", db, "-f", "sarif").stdout)
    assert diff_sarif["runs"][0]["results"] == []  # nothing got worse: no alert

    # The evidence changes (redis becomes a replica): the acceptance no longer covers it.
    assert _redis(b"REPLICAOF 127.0.89.2 1\r\n").startswith(b"+OK")
    try:
        changed = _scan(db, "--fail-on", "high", "-f", "json")
        assert changed.returncode == 1, changed.stderr
        (finding,) = _json_checks(changed)
        assert finding["accepted"] is None
    finally:
        assert _redis(b"REPLICAOF NO ONE\r\n").startswith(b"+OK")
    back = _scan(db, "--fail-on", "high", "-f", "json")
    assert back.returncode == 0 and _json_checks(back)[0]["accepted"]["id"] == 1

    # Removed: it nags again.
    assert run_mamori("accept", "--remove", "1", "--db", db).returncode == 0
    assert _scan(db, "--fail-on", "high").returncode == 1


def test_an_expired_acceptance_nags_again(lab: tuple[str, Path]) -> None:
    db, _ = lab
    first = _scan(db, "-f", "json")
    (raw,) = _json_checks(first)
    with Store.open(db) as store:
        record = store.get_scan(json.loads(first.stdout)["scan"]["id"])
        assert record is not None
        (finding,) = [c for c in record.findings if c.check_id == CHECK]
        assert isinstance(finding, CheckResult)
        yesterday = date.today() - timedelta(days=1)
        old = add_acceptance(store, check_id=CHECK, address=HOST, port=PORT, reason="old",
                             until=yesterday, fingerprint=evidence_fingerprint(finding),
                             scan_id=record.id, now=datetime.now(UTC))
    proc = _scan(db, "--fail-on", "high", "-f", "json")
    assert proc.returncode == 1
    assert _json_checks(proc)[0]["accepted"] is None
    listed = run_mamori("accept", "--list", "--db", db).stdout
    assert "expired" in listed and raw["status"] == "finding"
    assert run_mamori("accept", "--remove", str(old.id), "--db", db).returncode == 0


def test_skip_checks(lab: tuple[str, Path]) -> None:
    db, _ = lab
    proc = _scan(db, "--skip-checks", CHECK, "--fail-on", "high", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert _json_checks(proc) == []
    assert CHECK not in json.loads(proc.stdout)["scan"]["options"]["checks"]
    before = run_mamori("history", "--db", db, "-f", "json").stdout
    bad = _scan(db, "--skip-checks", "no-such-check")
    assert bad.returncode == 2 and len(_lines(bad)) == 1 and "no-such-check" in bad.stderr
    assert run_mamori("history", "--db", db, "-f", "json").stdout == before
    bad_check = run_mamori("check", "--skip-checks", "no-such-check", "--db", db)
    assert bad_check.returncode == 2 and len(_lines(bad_check)) == 1
