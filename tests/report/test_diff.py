"""`mamori diff` on real runs: two `mamori scan`s of a loopback address, with a port opened and
an open Redis started between them, then compared as a user (or cron) would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
from conftest import run_mamori
from listeners import Listener
from mamori.model import Confidence, Severity
from mamori.report import diff_records, render_diff
from mamori.store import Store
from mamori.store.queries import previous_scan_ids

TESTS = Path(__file__).resolve().parents[1]
HOST = "127.0.87.1"
STEADY, LATE, REDIS = 16871, 16872, 16873
PORTS = f"{STEADY},{LATE},{REDIS}"

def reports_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``mamori diff|import ...`` for real, in a subprocess."""
    return run_mamori(*args)


def _listen(port: int, host: str = HOST) -> Listener:
    return Listener(port, host)


def _scan(db: str) -> None:
    proc = run_mamori("scan", HOST, "-p", PORTS, "--db", db, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scan"]["targets"] == [HOST]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Scan 1: only STEADY open. Scan 2: LATE opened and an open Redis on REDIS. Scan 3:
    the same as scan 2. Yields the database path."""
    tmp = tmp_path_factory.mktemp("diff")
    db = str(tmp / "m.db")
    steady = _listen(STEADY)
    try:
        _scan(db)
        late = _listen(LATE)
        try:
            with dm.running(dm.start_redis, tmp, HOST, REDIS):
                _scan(db)
                _scan(db)
        finally:
            late.close()
    finally:
        steady.close()
    yield db


def test_a_new_finding_and_opened_ports_make_diff_exit_1(runs: str) -> None:
    proc = reports_cli("diff", "1", "2", "--db", runs, "-f", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["diff_version"] == "2" and doc["worse"] is True
    assert (doc["old"]["id"], doc["new"]["id"]) == (1, 2)
    new = {(f["port"], f["check_id"]) for f in doc["findings"]["new"]}
    assert (REDIS, "redis-unauthenticated") in new
    assert {p["port"] for p in doc["ports"]["opened"]} == {LATE, REDIS}
    redis = next(p for p in doc["ports"]["opened"] if p["port"] == REDIS)
    assert redis["service"]["name"] == "redis"
    assert doc["ports"]["closed"] == [] and doc["findings"]["fixed"] == []

    table = reports_cli("diff", "1", "2", "--db", runs)
    assert table.returncode == 1
    assert "WORSE" in table.stdout and "redis-unauthenticated" in table.stdout
    assert f"+ {HOST}:{LATE}/tcp" in table.stdout


def test_identical_runs_exit_0_and_default_ids_are_the_last_two(runs: str) -> None:
    with Store.open(runs) as store:
        assert previous_scan_ids(store, [HOST], "scan") == [3, 2]
        assert previous_scan_ids(store, [HOST], "scan", before=3, limit=5) == [2, 1]
        assert previous_scan_ids(store, ["127.0.87.2"], "scan") == []
    proc = reports_cli("diff", "--db", runs, "-f", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["old"]["id"], doc["new"]["id"]) == (2, 3)
    assert doc["worse"] is False
    assert doc["findings"]["new"] == [] and doc["ports"]["opened"] == []
    assert doc["ports"]["closed"] == [] and doc["findings"]["fixed"] == []
    table = reports_cli("diff", "--db", runs)
    assert table.returncode == 0
    assert "WORSE" not in table.stdout and "scan 2 " in table.stdout


def test_backwards_the_finding_is_fixed_and_ports_closed_exit_0(runs: str) -> None:
    proc = reports_cli("diff", "2", "1", "--db", runs, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [f["check_id"] for f in doc["findings"]["fixed"]] == ["redis-unauthenticated"]
    assert {p["port"] for p in doc["ports"]["closed"]} == {LATE, REDIS}


@pytest.mark.parametrize(
    "args",
    [("7", "8"), ("1", "99"), ("0", "1"), ("2", "2"), ("1", "2", "-f", "yaml")],
)
def test_bad_ids_or_format_exit_2_with_one_line(runs: str, args: tuple[str, ...]) -> None:
    proc = reports_cli("diff", *args, "--db", runs)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_raised_severity_or_confidence_is_worse_a_lowered_one_is_not(runs: str) -> None:
    """diff_records on the stored records, with the new run's finding re-graded."""
    from dataclasses import replace

    with Store.open(runs) as store:
        old, new = store.get_scan(2), store.get_scan(3)
    assert old is not None and new is not None
    assert not diff_records(old, new).worse
    (finding,) = [c for c in new.checks if c.check_id == "redis-unauthenticated"]
    for severity, confidence, worse in [
        (Severity.CRITICAL, finding.confidence, finding.severity is not Severity.CRITICAL),
        (Severity.LOW, finding.confidence, False),
    ]:
        graded = replace(finding, severity=severity, confidence=confidence, summary="re-graded")
        changed = replace(new, checks=tuple(graded if c is finding else c for c in new.checks))
        d = diff_records(old, changed)
        assert [c.new.severity for c in d.changed] == [severity]
        assert d.worse is worse
        assert "re-graded" in render_diff(d, "table")
    weaker = replace(finding, confidence=Confidence.LIKELY)
    stronger_old = replace(old, checks=tuple(
        weaker if c.key == finding.key else c for c in old.checks))
    if finding.confidence is Confidence.CONFIRMED:
        assert diff_records(stronger_old, new).worse


def test_diff_output_file(runs: str, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    proc = reports_cli("diff", "1", "3", "--db", runs, "-f", "json", "-o", str(out))
    assert proc.returncode == 1
    assert json.loads(out.read_text())["worse"] is True


def test_diff_markdown_html_and_sarif(runs: str, tmp_path: Path) -> None:
    """Every report format for a diff: SARIF holds only what got worse, and validates."""
    from jsonschema import Draft4Validator

    with Store.open(runs) as store:
        one, two, three = (store.get_scan(i) for i in (1, 2, 3))
    assert one is not None and two is not None and three is not None
    md = render_diff(diff_records(one, two), "markdown")
    assert md.startswith("# What changed: scan 1 to scan 2")
    assert "**WORSE: something new is exposed**" in md
    assert "## new findings (1)" in md and "`redis-unauthenticated`" in md
    assert f"| {HOST}:{REDIS}/tcp | redis" in md

    page = tmp_path / "d.html"
    html = reports_cli("diff", "1", "2", "--db", runs, "-f", "html", "-o", str(page))
    assert html.returncode == 1 and html.stdout == ""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "default-src &#39;none&#39;" in text
    assert 'data-check="redis-unauthenticated"' in text

    doc = json.loads(render_diff(diff_records(one, two), "sarif"))
    schema = json.loads((TESTS / "data" / "sarif-schema-2.1.0.json").read_text())
    errors = list(Draft4Validator(schema).iter_errors(doc))
    assert not errors, errors[0].message
    results = doc["runs"][0]["results"]
    assert [(r["ruleId"], r["baselineState"]) for r in results] == [
        ("redis-unauthenticated", "new")]
    assert doc["runs"][0]["invocations"][0]["properties"]["baselineScanId"] == 1
    # Nothing got worse from 2 to 3: no results at all.
    same = json.loads(render_diff(diff_records(two, three), "sarif"))
    assert same["runs"][0]["results"] == []


def test_diff_in_japanese(runs: str) -> None:
    from mamori.checks.catalog import default_catalog

    proc = reports_cli("diff", "1", "2", "--db", runs, "--lang", "ja")
    assert proc.returncode == 1
    assert "悪化" in proc.stdout and "新しい検出事項 (1)" in proc.stdout
    with Store.open(runs) as store:
        old, new = store.get_scan(1), store.get_scan(2)
    assert old is not None and new is not None
    title = default_catalog()["redis-unauthenticated"].title.ja
    assert title in render_diff(diff_records(old, new), "markdown", lang="ja")
