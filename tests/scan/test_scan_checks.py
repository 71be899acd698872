"""`mamori scan` runs the exposure checks: findings in the output and the store, --fail-on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
from conftest import run_mamori

pytestmark = pytest.mark.daemon
HOST = "127.0.43.1"
PORT = 16400


@pytest.fixture(scope="module")
def open_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with dm.running(dm.start_redis, tmp_path_factory.mktemp("redis"), HOST, PORT):
        yield PORT


def test_scan_reports_the_finding_with_evidence(tmp_path: Path, open_redis: int) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori("scan", HOST, "-p", str(open_redis), "-f", "json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (check,) = [c for c in doc["checks"] if c["check_id"] == "redis-unauthenticated"]
    assert check["status"] == "finding" and check["confidence"] == "confirmed"
    assert check["port"] == open_redis and check["severity"] == "high"
    assert check["evidence"]["facts"]["redis_version"]
    assert "INFO" in check["evidence"]["test"]
    # Stored: `show` prints the same finding again.
    shown = run_mamori("show", str(doc["scan"]["id"]), "-f", "json", "--db", str(db))
    again = json.loads(shown.stdout)
    assert again["checks"] == doc["checks"]
    table = run_mamori("show", str(doc["scan"]["id"]), "--db", str(db)).stdout
    assert "redis-unauthenticated" in table or "Redis answers without a password" in table


def test_fail_on_sets_exit_code_1(tmp_path: Path, open_redis: int) -> None:
    db = str(tmp_path / "m.db")
    port = str(open_redis)
    assert run_mamori("scan", HOST, "-p", port, "--fail-on", "high", "--db", db).returncode == 1
    assert run_mamori("scan", HOST, "-p", port, "--fail-on", "critical", "--db", db).returncode == 0


def test_no_checks_and_check_selection(tmp_path: Path, open_redis: int) -> None:
    db = str(tmp_path / "m.db")
    none = json.loads(run_mamori("scan", HOST, "-p", str(open_redis), "--no-checks", "-f", "json",
                                 "--db", db).stdout)
    assert none["checks"] == []
    chosen = json.loads(run_mamori("scan", HOST, "-p", str(open_redis), "--checks",
                                   "redis-unauthenticated", "-f", "json", "--db", db).stdout)
    assert [c["check_id"] for c in chosen["checks"]] == ["redis-unauthenticated"]


@pytest.mark.parametrize("args,fragment", [
    (["--checks", "no-such-check"], "unknown check"),
    (["--fail-on", "severe"], "severity"),
    (["--checks", "redis-unauthenticated", "--no-checks"], "not both"),
])
def test_bad_check_options_are_usage_errors(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    proc = run_mamori("scan", HOST, "-p", "1", *args, "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 2 and fragment in proc.stderr
    assert not (tmp_path / "m.db").exists()


def test_checks_catalog_commands() -> None:
    listed = run_mamori("checks", "list")
    assert listed.returncode == 0 and "redis-unauthenticated" in listed.stdout
    shown = json.loads(run_mamori("checks", "show", "redis-unauthenticated", "-f", "json").stdout)
    assert shown["id"] == "redis-unauthenticated" and shown["title"]["ja"]
    assert run_mamori("checks", "show", "nope").returncode == 2
