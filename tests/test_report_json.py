"""JSON output: real stored scans validated against docs/schema/scan-v1.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from mamori.model import JSON_SCHEMA_VERSION, ErrorKind, PortState, Proto, Reason, ScanStatus
from mamori.report import render, render_history
from mamori.store import Store
from store_fixtures import SAMPLE_ERRORS, store_sample_scan

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "schema" / "scan-v1.json"


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
    assert doc["summary"] == {"hosts": 2, "endpoints": 6, "open_ports": 4, "errors": 3}

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
    with pytest.raises(ValueError, match="sarif"):
        render(rec, "sarif")
    with pytest.raises(ValueError, match="xml"):
        render_history(summaries, "xml")
