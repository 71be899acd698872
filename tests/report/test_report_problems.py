"""--only-problems and the summary every table starts with, on stored records and through the
real CLI."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import run_mamori
from mamori.model import CheckStatus, PortState, ScanRecord, Severity
from mamori.report import render
from mamori.report.problems import only_problems
from mamori.store import Store
from store_fixtures import (
    GIT_EXPOSED,
    REDIS_OPEN,
    SSH_ROOT,
    TLS_EXPIRED,
    store_check_scan,
    store_sample_scan,
)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[str, ScanRecord, ScanRecord]:
    db = str(tmp_path / "m.db")
    with Store.open(db) as store:
        scan = store.get_scan(store_sample_scan(store))
        check = store.get_scan(store_check_scan(store))
    assert scan is not None and check is not None
    # One info finding too, so there is something of that kind to hide.
    info = replace(GIT_EXPOSED, check_id="http-version-disclosure", severity=Severity.INFO,
                   title="The web server tells its software versions", port=80)
    return db, replace(scan, checks=(*scan.checks, info)), check


def test_only_problems_keeps_findings_not_tested_and_open_ports(
    stored: tuple[str, ScanRecord, ScanRecord]
) -> None:
    _, rec, _ = stored
    kept, hidden = only_problems(rec)
    statuses = {c.status for c in kept.checks}
    assert CheckStatus.PASSED not in statuses and CheckStatus.NOT_TESTED in statuses
    assert all(c.severity is not Severity.INFO for c in kept.checks)
    assert len(kept.findings) == len(rec.findings) - 1
    assert hidden.passed == sum(1 for c in rec.checks if c.status is CheckStatus.PASSED) == 2
    assert hidden.info == 1
    assert all(ep.state is PortState.OPEN for h in kept.hosts for ep in h.endpoints)
    listed_closed = sum(1 for h in rec.hosts for ep in h.endpoints if ep.state is not
                        PortState.OPEN)
    counted = sum(n for h in rec.hosts for c in h.not_shown.values() for n in c.values())
    assert hidden.closed == listed_closed + counted > 0
    assert kept.errors == rec.errors  # probes that could not finish are never hidden


def test_the_table_starts_with_a_summary(stored: tuple[str, ScanRecord, ScanRecord]) -> None:
    _, rec, _ = stored
    out = render(rec, "table", width=200)
    lines = out.splitlines()
    start = lines.index("Summary: 4 findings (1 critical, 1 high, 1 low, 1 info)")
    assert start < 5  # right after the header
    assert lines[start + 1] == "Fix first:"
    top = lines[start + 2 : start + 5]
    assert [re.match(r"^  (\d)\. (\w+)  ", line).groups() for line in top] == [  # type: ignore[union-attr]
        ("1", "CRITICAL"), ("2", "HIGH"), ("3", "LOW")]
    assert REDIS_OPEN.title in top[0] and "127.0.0.1:8080/tcp" in top[0]
    assert lines[start + 5] == "checks: 2 passed, 1 not tested; 3 probe(s) not finished"
    # Then the hosts, then the findings by layer.
    assert out.index("Fix first:") < out.index("Host 127.0.0.1") < out.index("Findings (4)")
    check = render(stored[2], "table", width=200)
    assert check.index("Summary: 3 findings") < check.index("Checklist: 3 findings")


def test_only_problems_table(stored: tuple[str, ScanRecord, ScanRecord]) -> None:
    _, rec, check = stored
    full = render(rec, "table", width=200)
    out = render(rec, "table", width=200, only_problems=True)
    assert "9/tcp" in full and "filtered" in full and "Not shown:" in full
    assert "9/tcp" not in out and "Not shown:" not in out and "open|filtered" not in out
    assert "22/tcp" in out and "443/tcp" in out  # open ports stay
    assert "http-version-disclosure" in full and "http-version-disclosure" not in out
    assert "checks passed" not in out
    assert "hidden by --only-problems: 2 passed, 1 info, " in out
    assert "not tested: dns-open-resolver" in out  # not tested is not clean
    assert "3 probe(s) could not finish" in out
    assert out.index("Summary: 3 findings") < out.index("Host 127.0.0.1")
    # The checklist: the passed inside check goes, the one not tested stays.
    trimmed = render(check, "table", width=200, only_problems=True)
    assert "not tested: sharing-nfs-exports" in trimmed
    assert "1 check passed" in render(check, "table", width=200)
    assert "hidden by --only-problems: 1 passed, 0 info" in trimmed
    assert "Listeners (7, 3 reachable from the network)" in trimmed


def test_only_problems_markdown_and_html(stored: tuple[str, ScanRecord, ScanRecord]) -> None:
    _, rec, _ = stored
    md = render(rec, "markdown", only_problems=True)
    assert "http-version-disclosure" not in md and "dns-open-resolver" in md
    assert "| 127.0.0.1 | 9/tcp |" in render(rec, "markdown")
    assert "9/tcp" not in md and "hidden by --only-problems" in md
    html = render(rec, "html", only_problems=True)
    assert "http-version-disclosure" not in html and "dns-open-resolver" in html
    # JSON and SARIF always hold everything.
    assert render(rec, "json", only_problems=True) == render(rec, "json")
    assert render(rec, "sarif", only_problems=True) == render(rec, "sarif")


def test_only_problems_with_nothing_but_passes(stored: tuple[str, ScanRecord, ScanRecord]) -> None:
    _, rec, _ = stored
    clean_run = replace(rec, checks=tuple(c for c in rec.checks
                                           if c.status is CheckStatus.PASSED))
    out = render(clean_run, "table", only_problems=True)
    assert "Summary: no findings" in out and "Findings: none" in out
    assert "hidden by --only-problems: 2 passed" in out
    # A scan that ran no checks says nothing about checks, with or without the option.
    bare = replace(rec, checks=())
    assert "Summary" not in render(bare, "table", only_problems=True)
    assert "passed" not in render(bare, "table", only_problems=True)


def test_cli_show_only_problems_and_every_format(
    stored: tuple[str, ScanRecord, ScanRecord], tmp_path: Path
) -> None:
    db, rec, _ = stored
    proc = run_mamori("show", str(rec.id), "--only-problems", "--db", db, "--lang", "en")
    assert proc.returncode == 0, proc.stderr
    assert "9/tcp" not in proc.stdout and "hidden by --only-problems" in proc.stdout
    assert "ssh-root-login" in proc.stdout and SSH_ROOT.title in proc.stdout
    out = tmp_path / "r.html"
    proc = run_mamori("show", str(rec.id), "-f", "html", "-o", str(out), "--db", db)
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert TLS_EXPIRED.check_id not in out.read_text(encoding="utf-8")  # passed: not a finding
    bad = run_mamori("show", str(rec.id), "-f", "pdf", "--db", db)
    assert bad.returncode == 2 and "html" in bad.stderr and bad.stdout == ""
