"""`mamori diff` claims "fixed" or "closed" only for what the new run covered.

Real runs against a real redis and a real memcached (TCP and UDP) on 127.0.89.1: a full scan,
then an nmap import without UDP (real nmap), a scan that ran one check only, a scan of fewer
ports, and a scan after redis got a password and memcached stopped. What the new run did not
probe or check is "not compared", never fixed, closed, better or worse."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import daemons as dm
from conftest import run_mamori

HOST = "127.0.89.1"
REDIS, MEMC = 16891, 16892
FULL = f"T:{REDIS},{MEMC},U:{MEMC}"


def _scan(db: str, *args: str) -> None:
    proc = run_mamori("scan", HOST, "--db", db, "-f", "json", *args)
    assert proc.returncode == 0, proc.stderr


def _nmap_import(db: str, tmp: Path) -> None:
    xml = tmp / "tcp-only.xml"
    # -n: no name lookups; -Pn: no host discovery; -sT: a connect scan any user may run.
    subprocess.run(["nmap", "-n", "-Pn", "-sT", "-p", f"{REDIS},{MEMC}", HOST, "-oX", str(xml)],
                   check=True, capture_output=True, timeout=120)
    proc = run_mamori("import", str(xml), "--db", db, "-f", "json")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """1: full scan (redis open, memcached TCP+UDP). 2: nmap import, TCP only, no checks.
    3: scan with --checks redis-unauthenticated. 4: scan of the redis port only.
    5: full scan after redis got a password and memcached stopped."""
    if subprocess.run(["which", "nmap"], capture_output=True, check=False).returncode:
        pytest.skip("nmap is not installed (scripts/install-test-deps)")
    tmp = tmp_path_factory.mktemp("diffcov")
    db = str(tmp / "m.db")
    (tmp / "r1").mkdir()
    (tmp / "r2").mkdir()
    (tmp / "m").mkdir()
    with dm.running(dm.start_memcached, tmp / "m", HOST, MEMC, udp=True):
        with dm.running(dm.start_redis, tmp / "r1", HOST, REDIS):
            _scan(db, "-p", FULL)
            _nmap_import(db, tmp)
            _scan(db, "-p", f"{REDIS},{MEMC}", "--checks", "redis-unauthenticated")
            _scan(db, "-p", str(REDIS))
    with dm.running(dm.start_redis, tmp / "r2", HOST, REDIS, password="s3cret-pass"):
        _scan(db, "-p", FULL)
    yield db


def _diff(db: str, old: int, new: int, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    return run_mamori("diff", str(old), str(new), "--db", db, "-f", fmt)


def _doc(db: str, old: int, new: int) -> dict[str, Any]:
    proc = _diff(db, old, new)
    assert proc.returncode in (0, 1), proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["diff_version"] == "2"
    return doc


def _keys(rows: list[dict[str, Any]]) -> set[tuple[str, int, str]]:
    return {(r["proto"], r["port"], r["check_id"]) for r in rows}


def _old_findings(db: str) -> set[tuple[str, int, str]]:
    proc = run_mamori("show", "1", "--db", db, "-f", "json")
    doc = json.loads(proc.stdout)
    return {(c["proto"], c["port"], c["check_id"]) for c in doc["checks"]
            if c["status"] == "finding"}


def test_the_first_run_has_findings_on_every_service(runs: str) -> None:
    found = _old_findings(runs)
    assert ("tcp", REDIS, "redis-unauthenticated") in found
    assert any(p == MEMC and proto == "tcp" for proto, p, _ in found)
    assert any(p == MEMC and proto == "udp" for proto, p, _ in found)


def test_an_import_without_udp_closes_no_udp_port_and_fixes_nothing(runs: str) -> None:
    doc = _doc(runs, 1, 2)
    assert doc["ports"]["closed"] == []
    assert [(p["proto"], p["port"]) for p in doc["ports"]["not_compared"]] == [("udp", MEMC)]
    # nmap ran no mamori check: every old finding is "not compared", none fixed.
    assert doc["findings"]["fixed"] == []
    assert _keys(doc["findings"]["not_compared"]) == _old_findings(runs)
    reasons = {(r["proto"], r["port"], r["check_id"]): r["reason"]
               for r in doc["findings"]["not_compared"]}
    udp = [k for k in reasons if k[0] == "udp"]
    assert udp and all(reasons[k] == "port-not-probed" for k in udp)
    assert reasons[("tcp", REDIS, "redis-unauthenticated")] == "check-not-run"
    assert doc["worse"] is False


def test_one_check_run_fixes_nothing_it_did_not_run(runs: str) -> None:
    proc = _diff(runs, 1, 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["findings"]["fixed"] == [] and doc["findings"]["new"] == []
    compared = _old_findings(runs) - {("tcp", REDIS, "redis-unauthenticated")}
    assert _keys(doc["findings"]["not_compared"]) == compared
    assert doc["ports"]["closed"] == []
    table = _diff(runs, 1, 3, "table").stdout
    assert "fixed findings" not in table
    assert "not compared" in table and "memcached" in table


def test_fewer_ports_close_nothing(runs: str) -> None:
    doc = _doc(runs, 1, 4)
    assert doc["ports"]["closed"] == []
    assert {(p["proto"], p["port"]) for p in doc["ports"]["not_compared"]} == {
        ("tcp", MEMC), ("udp", MEMC)}
    assert doc["findings"]["fixed"] == []


def test_a_passed_check_and_a_closed_port_are_fixed(runs: str) -> None:
    doc = _doc(runs, 1, 5)
    fixed = _keys(doc["findings"]["fixed"])
    assert ("tcp", REDIS, "redis-unauthenticated") in fixed
    assert fixed == _old_findings(runs)
    assert doc["findings"]["not_compared"] == []
    assert {(p["proto"], p["port"]) for p in doc["ports"]["closed"]} == {
        ("tcp", MEMC), ("udp", MEMC)}
    assert doc["ports"]["not_compared"] == []


@pytest.mark.parametrize("fmt", ["markdown", "html", "table"])
def test_every_people_format_names_the_not_compared_section(runs: str, fmt: str) -> None:
    proc = _diff(runs, 1, 2, fmt)
    assert proc.returncode == 0, proc.stderr
    assert "not compared" in proc.stdout
    assert "fixed findings" not in proc.stdout and "ports closed" not in proc.stdout
    ja = run_mamori("diff", "1", "2", "--db", runs, "-f", fmt, "--lang", "ja")
    assert "比較していない" in ja.stdout


def test_sarif_reports_nothing_worse_for_what_was_not_compared(runs: str) -> None:
    proc = _diff(runs, 1, 2, "sarif")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["runs"][0]["results"] == []
    props = doc["runs"][0]["invocations"][0]["properties"]
    assert props["notCompared"]["findings"] == len(_old_findings(runs))


# -- `mamori check` runs: every listener is read, so a port no listener holds is closed, but a
# listener that was not probed covers nothing. Pure, on records as `mamori check` stores them.

def _check_run(run_id: int, listeners: tuple[Any, ...], checks: tuple[Any, ...]) -> Any:
    from mamori.model import ScanRecord, ScanStatus
    from mamori.report.coverage import probed_option

    return ScanRecord(
        id=run_id, kind="check", status=ScanStatus.DONE,
        started_at=datetime(2026, 12, 8, tzinfo=UTC), finished_at=None, targets=("localhost",),
        options={"probed": probed_option(range(1, 65536), range(1, 65536))}, hosts=(),
        errors=(), checks=checks, listeners=listeners,
    )


def _redis_finding() -> Any:
    from mamori.model import CheckResult, CheckStatus, Confidence, Layer, Proto, Severity

    return CheckResult(check_id="redis-unauthenticated", address="127.0.0.1", port=6379,
                       proto=Proto.TCP, status=CheckStatus.FINDING, severity=Severity.HIGH,
                       layer=Layer.APPLICATION, confidence=Confidence.CONFIRMED,
                       title="Redis answers without a password", summary="open")


def _listener(probed: bool) -> Any:
    from mamori.model import ListenerRecord, Proto, Scope

    return ListenerRecord(proto=Proto.TCP, address="127.0.0.1", port=6379, scope=Scope.LOOPBACK,
                          probe_address="127.0.0.1" if probed else None,
                          not_probed=None if probed else "probe bound reached")


def test_a_check_run_that_did_not_probe_a_listener_fixes_nothing_there() -> None:
    from mamori.report import diff_records

    old = _check_run(1, (_listener(True),), (_redis_finding(),))
    unprobed = _check_run(2, (_listener(False),), ())
    d = diff_records(old, unprobed)
    assert d.fixed == () and [n.reason for n in d.not_compared] == ["port-not-probed"]
    gone = _check_run(3, (), ())
    assert [c.check_id for c in diff_records(old, gone).fixed] == ["redis-unauthenticated"]
