"""Reports render stored records only (issue 11, item 3): every finding of a real `mamori check`
and a real `mamori scan` shows in Japanese in table, Markdown and HTML, its Japanese title and
summary being the catalog's Japanese text stored with the record when the check ran, not the
English summary. A finding re-graded by its listener's exposure (the case the old
catalog-matching rebuild lost: its English summary had "[listening on ...]" appended) keeps
the catalog's summary and shows the exposure in words of the report's language.

Records stored before texts existed (migration 0006) still render, from their English fields.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import report_lab
from conftest import ROOT
from mamori.audit.notes import default_notes
from mamori.checks.catalog import default_catalog
from mamori.checks.spec import Text
from mamori.model import CheckResult, ScanRecord, Severity
from mamori.model.audit import Scope
from mamori.report import render
from mamori.report.diff import diff_records, render_diff_table
from mamori.store import Store
from mamori.store.migrate import SCHEMA_HEAD, alembic_config
from mamori.store.models import Base
from store_fixtures import REDIS_OPEN, store_check_scan, store_sample_scan

LAB_HOST = "127.0.113.7"  # this file's own address for the scan lab
FORMATS = ("table", "markdown", "html")
_PLACEHOLDER = re.compile(r"\$\{([a-z0-9_]+)\}")
_MD_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#!|~$^.+=:-])")


def _shown(record: ScanRecord, fmt: str, lang: str = "ja") -> str:
    """The report as a reader sees its text: HTML entities and Markdown escapes undone."""
    out = render(record, fmt, lang=lang, width=2000)
    if fmt == "markdown":
        out = html.unescape(_MD_ESCAPED.sub(r"\1", out))
    elif fmt == "html":
        out = html.unescape(out)
    return out


def _spec(check_id: str) -> Any:
    return {**default_catalog(), **default_notes()}[check_id]


def _summary_templates(spec: Any) -> list[Text]:
    out = [spec.summary] if getattr(spec, "summary", None) is not None else []
    return out + [g.summary for g in getattr(spec, "grades", {}).values() if g.summary]


def _template_regex(template: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(template)
    # Even parts are literal text, odd parts placeholder names (an observed value).
    return re.compile("".join(re.escape(p) if i % 2 == 0 else ".+?" for i, p in enumerate(parts))
                      + r"\Z", re.S)


def _assert_findings_in_japanese(record: ScanRecord) -> list[CheckResult]:
    """For each finding: the catalog's Japanese title, and the Japanese summary it stored
    (a fill of the catalog's Japanese template for probe checks) appear in every format; the
    English summary does not (inside checks: their summary is the machine's own words, the
    evidence, in every language). Returns the findings."""
    findings = list(record.findings)
    assert findings
    shown = {fmt: _shown(record, fmt) for fmt in FORMATS}
    for c in findings:
        spec = _spec(c.check_id)
        ja = c.texts["ja"]
        assert ja.title == spec.title.ja and c.texts["en"].title == spec.title.en
        templates = _summary_templates(spec)
        if templates:  # a probe check: the summary is the catalog's, filled
            assert any(_template_regex(t.ja).match(ja.summary) for t in templates), ja.summary
            assert any(_template_regex(t.en).match(c.summary) for t in templates), c.summary
            assert ja.summary != c.summary
        else:  # an inside check: the note's detail
            assert ja.summary == c.summary
        assert "[listening on" not in c.summary
        for fmt, out in shown.items():
            assert spec.title.ja in out, (fmt, c.check_id)
            assert " ".join(ja.summary.split())[:200] in out, (fmt, c.check_id)
            if templates:
                assert c.summary not in out, (fmt, c.check_id)
                assert spec.title.en not in out, (fmt, c.check_id)
    return findings


# -- mamori scan: the report lab (anonymous vsftpd, open redis, nginx with .git) ---------------


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> ScanRecord:
    work = tmp_path_factory.mktemp("records-ja-scan")
    db = work / "m.db"
    with report_lab.running_lab(work, host=LAB_HOST) as lab:
        if not lab.ports:
            pytest.skip(f"no lab daemon could start: {lab.skipped}")
        scan_id = report_lab.scan_lab(lab, db)
    with Store.open(str(db)) as store:
        record = store.get_scan(scan_id)
    assert record is not None
    return record


@pytest.mark.daemon
def test_every_finding_of_a_real_scan_renders_in_japanese(scanned: ScanRecord) -> None:
    findings = _assert_findings_in_japanese(scanned)
    ids = {c.check_id for c in findings}
    assert "redis-unauthenticated" in ids  # the lab's open redis at least
    assert all(c.exposure is None for c in findings)  # a scan from outside grades nothing
    # English stays English, from the same record.
    for fmt in FORMATS:
        en = _shown(scanned, fmt, "en")
        for c in findings:
            assert c.texts["en"].title in en and c.texts["ja"].title not in en, (fmt, c.check_id)


# -- mamori check: an open redis on all interfaces, let in by nftables ---------------------------


RULESET = """
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
    tcp dport 6379 accept
  }
}
"""


def _ns(name: str, *argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                          check=False, **kw)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScanRecord]:
    """A real `mamori check` in a network namespace of its own (only its loopback), where a
    redis-server without a password listens on 0.0.0.0:6379 and nftables lets 6379 in."""
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("redis-server") is None:
        pytest.skip("needs root, nft and redis-server")
    work = tmp_path_factory.mktemp("records-ja-check")
    name = f"rja-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    daemon = None
    try:
        _ns(name, "ip", "link", "set", "lo", "up")
        (work / "rules.nft").write_text(RULESET)
        assert _ns(name, "nft", "-f", str(work / "rules.nft")).returncode == 0
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", name, "redis-server", "--bind", "0.0.0.0", "--port", "6379",
             "--protected-mode", "no", "--save", "", "--dir", str(work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while ":6379 " not in _ns(name, "ss", "-lntH").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        db = work / "m.db"
        proc = _ns(name, sys.executable, "-m", "mamori", "check", "-f", "json", "--db", str(db),
                   cwd=ROOT, timeout=300)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert proc.returncode in (0, 1), proc.stderr
    scan_id = json.loads(proc.stdout)["scan"]["id"]
    with Store.open(str(db)) as store:
        record = store.get_scan(scan_id)
    assert record is not None and record.kind == "check"
    yield record


@pytest.mark.daemon
@pytest.mark.root
def test_every_finding_of_a_real_check_renders_in_japanese(checked: ScanRecord) -> None:
    findings = _assert_findings_in_japanese(checked)
    ids = {c.check_id for c in findings}
    assert {"redis-unauthenticated", "exposed-listener"} <= ids


@pytest.mark.daemon
@pytest.mark.root
def test_a_finding_graded_by_exposure_keeps_its_summary_and_says_its_exposure(
    checked: ScanRecord,
) -> None:
    (redis,) = [c for c in checked.findings if c.check_id == "redis-unauthenticated"]
    spec = default_catalog()["redis-unauthenticated"]
    assert redis.exposure is not None
    assert (redis.exposure.address, redis.exposure.port) == ("0.0.0.0", 6379)
    assert redis.exposure.scope.value == "all" and redis.exposure.firewall is not None
    assert redis.exposure.firewall.value == "allowed"
    # Re-graded one step worse than the check said (reachable and let in).
    assert redis.exposure.check_severity == spec.severity
    assert redis.severity.rank == min(spec.severity.rank + 1, 4)
    assert _template_regex(spec.summary.en).match(redis.summary)
    ja_where = "0.0.0.0:6379 (すべてのインターフェース) で待ち受け、ファイアウォール: 許可"
    en_where = "listening on 0.0.0.0:6379 (all interfaces), firewall: allowed"
    for fmt in FORMATS:
        ja, en = _shown(checked, fmt, "ja"), _shown(checked, fmt, "en")
        assert redis.texts["ja"].summary in ja and ja_where in ja, fmt
        assert en_where not in ja, fmt
        assert redis.summary in en and en_where in en, fmt
    doc = json.loads(render(checked, "json"))
    (got,) = [c for c in doc["checks"] if c["check_id"] == "redis-unauthenticated"]
    assert got["exposure"] == {"address": "0.0.0.0", "port": 6379, "scope": "all",
                               "firewall": "allowed", "check_severity": spec.severity.value,
                               "reach": None}
    assert got["texts"]["ja"]["summary"] == redis.texts["ja"].summary


def test_a_diff_says_the_exposure_that_raised_a_finding(tmp_path: Path) -> None:
    """Two `mamori check` runs: the same open Redis, first on loopback, then on all interfaces
    let in by the firewall: the diff names the exposure in the report's language."""
    with Store.open(str(tmp_path / "m.db")) as store:
        record = store.get_scan(store_check_scan(store))
    assert record is not None
    (inside,) = [c for c in record.checks if c.check_id == "redis-unauthenticated"]
    assert inside.exposure is not None
    before = replace(inside, severity=Severity.LOW,
                     exposure=replace(inside.exposure, address="127.0.0.1",
                                      scope=Scope.LOOPBACK, firewall=None))
    diff = diff_records(replace(record, id=1, checks=(before,)),
                        replace(record, id=2, checks=(inside,)))
    assert diff.worse
    ja = render_diff_table(diff, "ja")
    assert inside.texts["ja"].summary in ja
    assert "0.0.0.0:6379 (すべてのインターフェース) で待ち受け、ファイアウォール: 許可" in ja
    assert "listening on" not in ja
    assert "listening on 0.0.0.0:6379 (all interfaces), firewall: allowed" in render_diff_table(
        diff, "en")


# -- records stored before texts; the migration --------------------------------------------------


def test_a_record_stored_without_texts_still_renders(tmp_path: Path) -> None:
    """A row from before 0006 has no texts: every format shows its English fields."""
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store_sample_scan(store)
        old = replace(REDIS_OPEN, port=6390, texts={}, summary="an old English summary")
        store.add_check_result(sid, old)
        record = store.get_scan(sid)
    assert record is not None
    (got,) = [c for c in record.checks if c.port == 6390]
    assert got.texts == {} and got.exposure is None
    for fmt in FORMATS:
        out = _shown(record, fmt, "ja")
        assert "an old English summary" in out and old.title in out, fmt
    assert "an old English summary" in render(record, "sarif", lang="ja")


def test_migration_0006_adds_texts_and_exposure_and_downgrades(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(ctx, Base.metadata) == []
        sid = store_sample_scan(store)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0005")
        columns = {c["name"] for c in inspect(store.engine).get_columns("check_results")}
        assert "texts" not in columns and "exposure" not in columns
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        record = store.get_scan(sid)
    assert record is not None
    # Rows that lived through the downgrade lost their texts and render from English.
    assert all(c.texts == {} for c in record.checks)
    shown = _shown(record, "markdown")
    assert REDIS_OPEN.summary in shown and REDIS_OPEN.title in shown
