"""SARIF 2.1.0 from a real scan: validated against the official schema (a copy in tests/data),
rules, levels, locations, stable fingerprints, and checks not tested as notifications.

The scan is the real CLI against three listeners on 127.0.97.x: a real redis-server without a
password (a high finding), a fake Redis whose INFO reply carries hostile text in its version
(a finding whose summary and banner are attacker-controlled), and a fake Redis that answers
identification but stays silent on the check's INFO (a check not tested).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft4Validator

import daemons as dm
from conftest import run_mamori
from mamori.model import CheckStatus, ScanRecord, Severity
from mamori.report.sarif import fingerprint, render_sarif
from mamori.store import Store
from store_fixtures import store_check_scan

pytestmark = pytest.mark.daemon

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"
REAL_HOST, HOSTILE_HOST, SILENT_HOST = "127.0.97.1", "127.0.97.2", "127.0.97.3"
PORT = 16497
HOSTILE = '7.0.0<img src=x onerror=alert(1)>[click me](http://evil.example/x)"`|**'


def _info_reply(version: str) -> bytes:
    body = (
        f"# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n"
        "os:Linux\r\nrole:master\r\nconnected_clients:1\r\n"
    ).encode()
    return b"$%d\r\n%s\r\n" % (len(body), body)


def hostile_redis(data: bytes) -> bytes | None:
    """A fake Redis that answers every INFO with a version carrying HTML and a link."""
    return _info_reply(HOSTILE) if b"INFO" in data else None


def silent_redis(data: bytes) -> bytes | None:
    """Answers identification ("INFO server"); stays silent on a bare INFO (the check)."""
    return _info_reply("7.0.1") if b"INFO" in data and b"server" in data else b""


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def fake_server(host: str, port: int, answer: Callable[[bytes], bytes | None]) -> Iterator[None]:
    """A TCP server on ``host:port`` that reads requests and writes ``answer(request)``;
    b"" says nothing, None closes the connection."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(10)
            try:
                while data := sock.recv(4096):
                    reply = answer(data)
                    if reply is None:
                        return
                    if reply:
                        sock.sendall(reply)
            except OSError:
                return

    server = _Server((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def scan_and_load(tmp_path: Path) -> ScanRecord:
    """Start the three listeners, run the real `mamori scan`, return what the store holds."""
    db = tmp_path / "m.db"
    with (
        dm.running(dm.start_redis, tmp_path, REAL_HOST, PORT),
        fake_server(HOSTILE_HOST, PORT, hostile_redis),
        fake_server(SILENT_HOST, PORT, silent_redis),
    ):
        proc = run_mamori("scan", f"{REAL_HOST}-3", "-p", str(PORT), "-f", "json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    scan_id = json.loads(proc.stdout)["scan"]["id"]
    store = Store.open(str(db))
    try:
        record = store.get_scan(scan_id)
    finally:
        store.close()
    assert record is not None
    return record


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> ScanRecord:
    return scan_and_load(tmp_path_factory.mktemp("sarif"))


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def _valid(doc: dict[str, Any], validator: Draft4Validator) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_the_scan_has_what_the_report_needs(record: ScanRecord) -> None:
    by_host = {c.address: c for c in record.checks if c.check_id == "redis-unauthenticated"}
    assert by_host[REAL_HOST].status is CheckStatus.FINDING
    assert by_host[HOSTILE_HOST].status is CheckStatus.FINDING
    assert "<img" in by_host[HOSTILE_HOST].summary  # the hostile text reached the record
    assert by_host[SILENT_HOST].status is CheckStatus.NOT_TESTED


def test_real_scan_validates_against_the_official_schema(
    record: ScanRecord, validator: Draft4Validator
) -> None:
    doc = json.loads(render_sarif(record))
    _valid(doc, validator)
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "mamori" and driver["version"] == record.mamori_version
    assert "informationUri" not in driver  # no project URL exists yet: none is invented


def test_rules_are_the_checks_that_found_something(record: ScanRecord) -> None:
    run = json.loads(render_sarif(record))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["redis-unauthenticated"]
    (rule,) = rules
    assert rule["shortDescription"]["text"] == "Redis answers without a password"
    assert "crypto-miners" in rule["fullDescription"]["text"]  # why, from the catalog
    assert "requirepass" in rule["help"]["text"] and "Linux:" in rule["help"]["text"]
    assert rule["properties"]["security-severity"] == "8.0"
    assert "layer:application" in rule["properties"]["tags"]


def test_results_levels_locations_and_fingerprints(record: ScanRecord) -> None:
    results = json.loads(render_sarif(record))["runs"][0]["results"]
    assert len(results) == len(record.findings) == 2
    uris = set()
    for r in results:
        assert r["ruleId"] == "redis-unauthenticated" and r["ruleIndex"] == 0
        assert r["level"] == "error"  # high
        (loc,) = r["locations"]
        uri = loc["physicalLocation"]["artifactLocation"]["uri"]
        parts = urlsplit(uri)
        assert (parts.scheme, parts.port) == ("tcp", PORT)
        assert loc["logicalLocations"][0]["name"] == uri
        uris.add(parts.hostname)
        (fp,) = r["partialFingerprints"].values()
        assert len(fp) == 64
    assert uris == {REAL_HOST, HOSTILE_HOST}
    real = next(
        r
        for r in results
        if REAL_HOST in r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    )
    assert real["message"]["text"].startswith("Redis 7.")
    assert real["properties"]["evidence"]["facts"]["role"] == "master"


def test_fingerprints_are_stable_per_target_proto_port_check(
    record: ScanRecord, tmp_path: Path
) -> None:
    finding = next(c for c in record.findings if c.address == REAL_HOST)
    # Another run: another summary and severity, same key -> same fingerprint.
    again = replace(finding, summary="Redis 7.9.9 (master) gave out ...", severity=Severity.LOW)
    assert fingerprint(again) == fingerprint(finding)
    assert fingerprint(replace(finding, port=PORT + 1)) != fingerprint(finding)
    assert fingerprint(replace(finding, check_id="x")) != fingerprint(finding)
    assert fingerprint(replace(finding, address=HOSTILE_HOST)) != fingerprint(finding)
    first = json.loads(render_sarif(record))["runs"][0]["results"]
    second = json.loads(render_sarif(record))["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in first] == [r["partialFingerprints"] for r in second]


def test_severity_maps_to_level(record: ScanRecord) -> None:
    finding = record.findings[0]
    expected = {
        "critical": "error",
        "high": "error",
        "medium": "warning",
        "low": "note",
        "info": "note",
    }
    for sev, level in expected.items():
        rec = replace(record, checks=(replace(finding, severity=Severity(sev)),))
        (result,) = json.loads(render_sarif(rec))["runs"][0]["results"]
        assert result["level"] == level, sev


def test_not_tested_checks_are_notifications(record: ScanRecord) -> None:
    (inv,) = json.loads(render_sarif(record))["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is True
    notes = [
        n
        for n in inv["toolExecutionNotifications"]
        if n["descriptor"]["id"] == "redis-unauthenticated"
    ]
    assert len(notes) == 1
    assert notes[0]["message"]["text"].startswith("not tested: redis-unauthenticated")
    assert SILENT_HOST in notes[0]["message"]["text"]
    not_tested = sum(1 for c in record.checks if c.status is CheckStatus.NOT_TESTED)
    assert inv["properties"]["checksNotTested"] == not_tested >= 1


def test_hostile_text_stays_data(record: ScanRecord, validator: Draft4Validator) -> None:
    doc = json.loads(render_sarif(record))
    _valid(doc, validator)
    hostile = next(
        r for r in doc["runs"][0]["results"] if HOSTILE_HOST in json.dumps(r["locations"])
    )
    assert "<img" in hostile["message"]["text"]  # plain text in SARIF: kept, as data
    assert "\n" not in hostile["message"]["text"]


def test_check_scan_and_empty_scan_validate(
    tmp_path: Path, record: ScanRecord, validator: Draft4Validator
) -> None:
    store = Store.open(str(tmp_path / "c.db"))
    try:
        check = store.get_scan(store_check_scan(store))
    finally:
        store.close()
    assert check is not None
    doc = json.loads(render_sarif(check))
    _valid(doc, validator)
    inside = [r for r in doc["runs"][0]["results"] if r["properties"]["port"] == 0]
    assert all(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("host://")
        for r in inside
    )
    # A probe that could not finish is a notification too.
    notes = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any(n["descriptor"]["id"] == "probe-error/idle" for n in notes)
    empty = replace(record, checks=(), errors=())
    doc = json.loads(render_sarif(empty))
    _valid(doc, validator)
    assert doc["runs"][0]["results"] == [] and doc["runs"][0]["tool"]["driver"]["rules"] == []


def test_schema_copy_rejects_a_broken_log(record: ScanRecord, validator: Draft4Validator) -> None:
    doc = json.loads(render_sarif(record))
    doc["runs"][0]["results"][0]["level"] = "severe"
    assert not validator.is_valid(doc)
    del doc["runs"][0]["tool"]
    assert not validator.is_valid(doc)
