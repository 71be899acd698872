"""JSON output: real stored scans validated against docs/schema/scan-v1.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from mamori.model import (
    JSON_SCHEMA_VERSION,
    CheckStatus,
    Confidence,
    ErrorKind,
    Layer,
    PortState,
    Proto,
    Reason,
    ScanStatus,
    Severity,
)
from mamori.model.audit import Scope, Verdict
from mamori.report import render, render_history
from mamori.store import Store
from store_fixtures import (
    DNS_UNSURE,
    GIT_EXPOSED,
    HOSTILE_LOOPBACK,
    REDIS_INSIDE,
    REDIS_OPEN,
    SAMPLE_CHECKS_ORDERED,
    SAMPLE_ERRORS,
    SAMPLE_LISTENERS_ORDERED,
    SSH_ALL6,
    SSH_ROOT,
    store_check_scan,
    store_sample_scan,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "scan-v1.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(data)
    return data


def _validate(doc: Any, schema: dict[str, Any]) -> None:
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)


@pytest.mark.parametrize("status", [ScanStatus.DONE, ScanStatus.INTERRUPTED, None])
def test_stored_scan_output_matches_schema(
    tmp_path: Path, schema: dict[str, Any], status: ScanStatus | None
) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store_sample_scan(store, status=status)
        rec = store.get_scan(sid)
    assert rec is not None
    out = render(rec, "json")
    doc = json.loads(out)
    _validate(doc, schema)

    assert doc["schema"] == f"mamori.scan/{JSON_SCHEMA_VERSION}"
    scan = doc["scan"]
    assert scan["id"] == sid
    assert scan["status"] == (status or ScanStatus.RUNNING).value
    assert scan["complete"] is (status is ScanStatus.DONE)
    assert (scan["finished_at"] is None) is (status is None)
    assert doc["summary"] == {
        "hosts": 2,
        "endpoints": 6,
        "open_ports": 4,
        "errors": 3,
        "checks": 6,
        "findings": {"critical": 1, "high": 1, "medium": 0, "low": 1, "info": 0},
        "passed": 2,
        "not_tested": 1,
        "listeners": 0,
        "listeners_exposed": 0,
    }
    assert doc["listeners"] == []  # a scan from outside has no inside view

    v4 = doc["hosts"][0]
    assert v4["address"] == "127.0.0.1" and v4["hostname"] == "localhost"
    assert v4["not_shown"] == {"tcp": {"closed": 1019}, "udp": {"closed": 1023}}
    by_port = {(e["proto"], e["port"]): e for e in v4["endpoints"]}
    assert by_port[("tcp", 22)]["service"]["product"] == "OpenSSH"
    assert by_port[("tcp", 443)]["service"]["tls"] is True
    assert by_port[("tcp", 443)]["service"]["extra"] == {"alpn": "h2", "cn": "nas.local"}
    assert by_port[("tcp", 8080)]["service"] is None
    assert by_port[("udp", 53)]["state"] == "open|filtered"
    # Every error is in the output, none dropped.
    assert [(e["kind"], e["detail"]) for e in doc["errors"]] == [
        (e.kind.value, e.detail) for e in SAMPLE_ERRORS
    ]
    # Every check result is in the output, in the store's order (findings worst first).
    assert [(c["check_id"], c["status"]) for c in doc["checks"]] == [
        (c.check_id, c.status.value) for c in SAMPLE_CHECKS_ORDERED
    ]


def test_check_results_in_full(tmp_path: Path, schema: dict[str, Any]) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    doc = json.loads(render(rec, "json"))
    _validate(doc, schema)
    by_id = {c["check_id"]: c for c in doc["checks"]}
    assert by_id["web-git-exposed"] == {
        "check_id": "web-git-exposed",
        "address": "127.0.0.1",
        "port": 443,
        "proto": "tcp",
        "status": "finding",
        "severity": "high",
        "layer": "application",
        "confidence": "confirmed",
        "title": GIT_EXPOSED.title,
        "summary": GIT_EXPOSED.summary,
        "evidence": {
            "test": "GET /.git/HEAD and a random-path baseline; compare",
            "request": "GET /.git/HEAD HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "reply": "HTTP/1.1 200 OK\r\n\r\nref: refs/heads/[red]main[/red]\x1b[31m 守り",
            "facts": {"status": "200", "baseline_status": "404"},
        },
        "remediation": dict(GIT_EXPOSED.remediation),
        "references": list(GIT_EXPOSED.references),
        "texts": {
            lang: {"title": x.title, "summary": x.summary, "why": x.why, "fixes": dict(x.fixes)}
            for lang, x in GIT_EXPOSED.texts.items()
        },
        "exposure": None,
        "accepted": None,
    }
    # 1.3: every language's text is in the record; the Japanese one is what --lang ja shows.
    redis = by_id["redis-unauthenticated"]
    assert set(redis["texts"]) == {"en", "ja"}
    assert redis["texts"]["en"]["summary"] == redis["summary"]
    assert redis["texts"]["ja"]["title"] == REDIS_OPEN.texts["ja"].title
    # A platform the check gives no advice for is null, not missing.
    assert by_id["ssh-root-login"]["remediation"] == {
        "linux": SSH_ROOT.remediation["linux"],
        "macos": None,
        "router": None,
    }
    assert by_id["ssh-root-login"]["address"] == "::1"
    assert by_id["ssh-root-login"]["confidence"] == "likely"
    assert by_id["ssh-root-login"]["evidence"]["request"] is None
    nt = by_id["dns-open-resolver"]
    assert (nt["status"], nt["confidence"], nt["evidence"], nt["proto"]) == (
        "not-tested",
        None,
        None,
        "udp",
    )
    assert nt["summary"] == "not tested: timeout: no answer within 30 s"
    passed = by_id["tls-expired"]
    assert passed["status"] == "passed" and passed["confidence"] is None
    assert passed["remediation"] == {"linux": None, "macos": None, "router": None}
    assert passed["references"] == []


def test_scan_without_checks(tmp_path: Path, schema: dict[str, Any]) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        store.finish_scan(sid, ScanStatus.DONE)
        rec = store.get_scan(sid)
    assert rec is not None
    doc = json.loads(render(rec, "json"))
    _validate(doc, schema)
    assert doc["checks"] == []
    assert doc["summary"]["checks"] == doc["summary"]["passed"] == 0
    assert doc["summary"]["not_tested"] == 0
    assert set(doc["summary"]["findings"].values()) == {0}


def test_a_1_0_document_still_validates(tmp_path: Path, schema: dict[str, Any]) -> None:
    # 1.1 only added fields: what a 1.0 consumer or producer had stays valid.
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    doc = json.loads(render(rec, "json"))
    del doc["checks"]
    for key in ("checks", "findings", "passed", "not_tested"):
        del doc["summary"][key]
    doc["schema"] = "mamori.scan/1.0"
    _validate(doc, schema)


def _check_doc(tmp_path: Path) -> dict[str, Any]:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_check_scan(store))
    assert rec is not None
    doc: dict[str, Any] = json.loads(render(rec, "json"))
    return doc


def test_check_scan_listeners_in_full(tmp_path: Path, schema: dict[str, Any]) -> None:
    doc = _check_doc(tmp_path)
    _validate(doc, schema)
    assert doc["scan"]["kind"] == "check"
    assert doc["summary"]["listeners"] == len(SAMPLE_LISTENERS_ORDERED)
    # sshd on ::, redis on 0.0.0.0 (allowed) and avahi on fe80::1 (no firewall): the DNS one
    # is undetermined, smbd blocked, the rest loopback-only.
    assert doc["summary"]["listeners_exposed"] == 3
    got = [(x["proto"], x["address"], x["port"]) for x in doc["listeners"]]
    assert got == [(r.proto.value, r.address, r.port) for r in SAMPLE_LISTENERS_ORDERED]
    assert doc["listeners"][0] == {
        "proto": "tcp",
        "address": "::",
        "port": 22,
        "scope": "all",
        "pid": 700,
        "process": "sshd",
        "user": "root",
        "exe": "/usr/sbin/sshd",
        "firewall": {
            "verdict": "allowed",
            "backend": "nftables",
            "reason": SSH_ALL6.firewall_reason,
            "rule": "tcp dport 22 accept",
        },
        "service": {"name": "ssh", "product": "OpenSSH"},
        "probe_address": "::1",
        "not_probed": None,
    }
    unsure = doc["listeners"][got.index(("udp", "192.0.2.2", 53))]
    assert unsure["firewall"]["verdict"] == "undetermined"
    assert unsure["firewall"]["reason"] == DNS_UNSURE.firewall_reason
    assert unsure["pid"] is None and unsure["process"] is None and unsure["service"] is None
    assert unsure["not_probed"] == DNS_UNSURE.not_probed
    loopback = doc["listeners"][-1]
    assert loopback["scope"] == "loopback" and loopback["firewall"] is None
    assert loopback["process"] == HOSTILE_LOOPBACK.process  # exact text, escaped by JSON
    # Inside findings (port 0, address "localhost") validate like probe findings.
    assert {"sharing-smb-guest", "exposed-listener"} <= {c["check_id"] for c in doc["checks"]}
    # A finding graded by its listener's exposure says so in its own field (1.3).
    redis = next(c for c in doc["checks"] if c["check_id"] == "redis-unauthenticated")
    assert redis["exposure"] == {"address": "0.0.0.0", "port": 6379, "scope": "all",
                                 "firewall": "allowed", "check_severity": "critical",
                                 "reach": None}
    assert redis["summary"] == REDIS_INSIDE.summary and "[listening" not in redis["summary"]


def test_a_1_2_document_still_validates(tmp_path: Path, schema: dict[str, Any]) -> None:
    # 1.3 only added fields: check results without texts and exposure stay valid.
    doc = _check_doc(tmp_path)
    for c in doc["checks"]:
        del c["texts"], c["exposure"]
    doc["schema"] = "mamori.scan/1.2"
    _validate(doc, schema)


def test_a_1_1_document_still_validates(tmp_path: Path, schema: dict[str, Any]) -> None:
    # 1.2 only added fields: a 1.1 document (no listeners, no listener counts) stays valid.
    doc = _check_doc(tmp_path)
    del doc["listeners"]
    del doc["summary"]["listeners"], doc["summary"]["listeners_exposed"]
    doc["schema"] = "mamori.scan/1.1"
    _validate(doc, schema)


def test_schema_rejects_bad_listeners(tmp_path: Path, schema: dict[str, Any]) -> None:
    good = _check_doc(tmp_path)
    edits = [
        lambda d: d["listeners"][0].update(scope="world"),
        lambda d: d["listeners"][0]["firewall"].update(verdict="maybe"),
        lambda d: d["listeners"][0].update(surprise=1),
        lambda d: d["listeners"][0]["firewall"].update(surprise=1),
        lambda d: d["listeners"][0]["service"].update(version="9.2p1"),
        lambda d: d["listeners"][0].update(port=70000),
        lambda d: d["listeners"][0].pop("firewall"),
        lambda d: d["listeners"][0]["firewall"].pop("reason"),
        lambda d: d["summary"].update(listeners=-1),
    ]
    for edit in edits:
        doc = json.loads(json.dumps(good))
        edit(doc)
        with pytest.raises(jsonschema.ValidationError):
            _validate(doc, schema)


def test_remote_text_cannot_reach_the_terminal_raw(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    out = render(rec, "json")
    assert "\x1b" not in out and "\r" not in out
    assert "\\u001b" in out  # escaped, still there for whoever parses it
    banner = json.loads(out)["hosts"][0]["endpoints"][2]["service"]["banner"]
    assert "\x1b[31m" in banner and "守り" in banner


def test_schema_enums_follow_the_model(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    assert set(defs["scan"]["properties"]["status"]["enum"]) == {s.value for s in ScanStatus}
    assert set(defs["endpoint"]["properties"]["state"]["enum"]) == {s.value for s in PortState}
    assert set(defs["endpoint"]["properties"]["reason"]["enum"]) == {r.value for r in Reason}
    assert set(defs["error"]["properties"]["kind"]["enum"]) == {k.value for k in ErrorKind}
    assert set(defs["proto"]["enum"]) == {p.value for p in Proto}
    assert set(defs["severity"]["enum"]) == {s.value for s in Severity}
    assert set(defs["layer"]["enum"]) == {layer.value for layer in Layer}
    assert set(defs["confidence"]["enum"]) == {c.value for c in Confidence}
    assert set(defs["check_status"]["enum"]) == {s.value for s in CheckStatus}
    assert set(defs["scope"]["enum"]) == {s.value for s in Scope}
    assert set(defs["verdict"]["enum"]) == {v.value for v in Verdict}
    # The summary counts findings for every severity level, no more, no less.
    findings = defs["summary"]["properties"]["findings"]
    assert set(findings["required"]) == set(findings["properties"]) == {s.value for s in Severity}


def test_schema_rejects_what_it_should(tmp_path: Path, schema: dict[str, Any]) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    good = json.loads(render(rec, "json"))
    bad_docs = []
    extra = json.loads(json.dumps(good))
    extra["hosts"][0]["endpoints"][0]["surprise"] = 1  # an undocumented field
    bad_docs.append(extra)
    state = json.loads(json.dumps(good))
    state["hosts"][0]["endpoints"][0]["state"] = "closed-ish"
    bad_docs.append(state)
    version = json.loads(json.dumps(good))
    version["schema"] = "mamori.scan/2.0"
    bad_docs.append(version)
    when = json.loads(json.dumps(good))
    when["scan"]["started_at"] = "yesterday"
    bad_docs.append(when)
    assert good["checks"][0]["status"] == "finding"
    unsure = json.loads(json.dumps(good))
    unsure["checks"][0]["confidence"] = None  # a finding must say how sure it is
    bad_docs.append(unsure)
    overclaim = json.loads(json.dumps(good))
    overclaim["checks"][-1]["confidence"] = "confirmed"  # only findings carry a confidence
    bad_docs.append(overclaim)
    severity = json.loads(json.dumps(good))
    severity["checks"][0]["severity"] = "catastrophic"
    bad_docs.append(severity)
    status = json.loads(json.dumps(good))
    status["checks"][0]["status"] = "skipped"
    bad_docs.append(status)
    no_fix = json.loads(json.dumps(good))
    del no_fix["checks"][0]["remediation"]["linux"]
    bad_docs.append(no_fix)
    evidence = json.loads(json.dumps(good))
    evidence["checks"][0]["evidence"]["raw"] = "..."
    bad_docs.append(evidence)
    counts = json.loads(json.dumps(good))
    del counts["summary"]["findings"]["info"]
    bad_docs.append(counts)
    for doc in bad_docs:
        with pytest.raises(jsonschema.ValidationError):
            _validate(doc, schema)


def test_history_json(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        first = store_sample_scan(store)
        second = store.begin_scan("scan", ["::1"], {})
        out = render_history(store.list_scans(), "json")
    doc = json.loads(out)
    assert [d["id"] for d in doc] == [second, first]
    assert doc[0]["status"] == "running" and doc[0]["finished_at"] is None
    assert doc[0]["duration_s"] is None
    assert doc[1] | {"started_at": None, "finished_at": None, "duration_s": None} == {
        "id": first,
        "kind": "scan",
        "status": "done",
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "targets": ["127.0.0.1", "::1", "nas.invalid"],
        "open_ports": 4,
        "errors": 3,
    }
    assert doc[1]["started_at"].endswith("Z") and doc[1]["duration_s"] >= 0
    assert json.loads(render_history([], "json")) == []


def test_unknown_format_is_a_value_error(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
        summaries = store.list_scans()
    assert rec is not None
    with pytest.raises(ValueError, match="xml"):
        render(rec, "xml")
    with pytest.raises(ValueError, match="sarif"):
        render_history(summaries, "sarif")  # history is table or json only
    with pytest.raises(ValueError, match="xml"):
        render_history(summaries, "xml")


def test_documented_example_matches_schema(schema: dict[str, Any]) -> None:
    text = (SCHEMA_PATH.parents[1] / "json-output.md").read_text()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    _validate(example, schema)
    assert example["schema"] == f"mamori.scan/{JSON_SCHEMA_VERSION}"


def test_documented_listeners_match_schema(schema: dict[str, Any]) -> None:
    text = (SCHEMA_PATH.parents[1] / "json-output.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    (fragment,) = [json.loads(b) for b in blocks if '"listeners": [\n' in b]
    listener = {"$ref": "#/$defs/listener", "$defs": schema["$defs"]}
    assert len(fragment["listeners"]) == 3
    for item in fragment["listeners"]:
        _validate(item, listener)
