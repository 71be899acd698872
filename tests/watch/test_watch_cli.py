"""`mamori watch`, `mamori events`, `mamori incidents`, `mamori watch report` as a user runs
them: usage errors (one line, exit 2, nothing stored), JSON that validates against its
documented schema, hostile text kept inert in tables, and the real process's exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import jsonschema
import pytest

from conftest import ROOT, run_mamori
from mamori.cli.app import main
from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.store import Store
from mamori.store.watch import EventQuery, list_events, write_batch

SCHEMAS = ROOT / "docs" / "schema"
HOST = "127.0.140.40"
NOW = datetime.now(UTC).replace(microsecond=0)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (fast) exactly as the console script does."""
    old = sys.argv
    sys.argv = ["mamori", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_user_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text("")
    monkeypatch.setenv("MAMORI_SETTINGS", str(path))
    monkeypatch.delenv("MAMORI_DB", raising=False)
    return path


HOSTILE = "\x1b[2J[bold red]pwned[/bold red]\x07 守り"


def fill(db: str) -> list[int]:
    """A small store: a scan incident, a worm incident, a sensor error. Returns incident ids."""
    def at(s: float) -> datetime:
        return NOW - timedelta(hours=3) + timedelta(seconds=s)

    scan = Incident(src="203.0.113.9", kind="scan.ports", danger=Danger.LOW, first_seen=at(0),
                    last_seen=at(2), count=6, types=("decoy.connect", "scan.ports"),
                    examples=("scan.ports: 5 ports",))
    worm = Incident(src="192.168.1.77", kind="worm.codered", danger=Danger.HIGH,
                    first_seen=at(3600), last_seen=at(3700), count=2,
                    types=("http.request",), signatures=("worm-codered",),
                    examples=(f"http.request: GET {HOSTILE}",))
    events: list[tuple[Event, int | None]] = [
        (Event(time=at(i * 0.4), type=EventType.DECOY_CONNECT, source="decoy:tcp/x",
               src="203.0.113.9", src_port=40000 + i, dst=HOST, dst_port=2320 + i,
               proto="tcp"), 0)
        for i in range(5)
    ]
    events.append((Event(time=at(2), type=EventType.SCAN_PORTS, source="detector:portscan",
                         src="203.0.113.9", danger=Danger.LOW,
                         fields=MappingProxyType({"ports": "2320/tcp", "technique": "connect"})),
                   0))
    for i in range(2):
        events.append((Event(
            time=at(3600 + i * 100), type=EventType.HTTP_REQUEST, source="log:/a.log",
            src="192.168.1.77", danger=Danger.HIGH, signatures=("worm-codered",),
            fields=MappingProxyType({"method": "GET", "path": f"/default.ida?{HOSTILE}",
                                     "user_agent": HOSTILE}),
            excerpt=f"GET /default.ida {HOSTILE}"), 1))
    events.append((Event(time=NOW, type=EventType.SENSOR_ERROR, source="decoy:tcp/1.2.3.4:1",
                         danger=Danger.LOW, fields=MappingProxyType({"reason": "in use"})),
                   None))
    with Store.open(db) as store:
        return write_batch(store, [(scan, "closed"), (worm, "open")], events)


# -- usage errors ------------------------------------------------------------------------------

BAD = [
    (["watch", "--decoy", f"{HOST}:99999"], "decoy"),
    (["watch", "--decoy", f"{HOST}:2323=nosuchpersona"], "persona"),
    (["watch", "--decoy", f"{HOST}:2323", "--decoy", f"{HOST}:2323/tcp=telnet"], "same"),
    (["watch", "--read-once", "--decoy", f"{HOST}:2323", "--access-log", "/dev/null"],
     "read-once"),
    (["watch", "--read-once"], "read-once"),
    (["watch", "--no-knocks"], "nothing to watch"),
    (["watch", "--decoy", f"{HOST}:2323", "--settings", "/nonexistent/settings.toml"],
     "does not exist"),
    (["events", "--since", "yesterday"], "--since"),
    (["events", "--min-danger", "severe"], "--min-danger"),
    (["events", "--format", "xml"], "--format"),
    (["incidents", "--src", "not-an-ip"], "--src"),
    (["incidents", "--limit", "-1"], "--limit"),
    (["events", "--type", "decoy login"], "--type"),
    (["watch", "report", "--format", "pdf"], "--format"),
]


@pytest.mark.parametrize(("args", "word"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_usage_is_one_line_exit_2_nothing_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], word: str
) -> None:
    db = tmp_path / "never.db"
    code, out, err = cli(capsys, *args, "--db", str(db))
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamori: error:") and word in lines[0], err
    assert not db.exists()


def test_a_bad_watch_section_names_the_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_user_settings: Path
) -> None:
    no_user_settings.write_text('[watch]\ndecoys = ["127.0.140.40:2323"]\nbogus = 1\n')
    code, _, err = cli(capsys, "watch", "--db", str(tmp_path / "x.db"))
    assert code == 2
    assert str(no_user_settings) in err and "watch.bogus" in err and len(err.splitlines()) == 1


# -- reading the store -------------------------------------------------------------------------


def test_events_and_incidents_json_validate_and_filter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = str(tmp_path / "w.db")
    scan_id, worm_id = fill(db)
    events_schema = json.loads((SCHEMAS / "watch-events-v1.json").read_text())
    incidents_schema = json.loads((SCHEMAS / "watch-incidents-v1.json").read_text())

    code, out, err = cli(capsys, "events", "--format", "json", "--db", db)
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, events_schema)
    assert doc["count"] == len(doc["events"]) == 9
    assert [e["time"] for e in doc["events"]] == sorted(e["time"] for e in doc["events"])
    worm_events = [e for e in doc["events"] if e["incident_id"] == worm_id]
    assert len(worm_events) == 2 and worm_events[0]["fields"]["user_agent"] == HOSTILE

    code, out, _ = cli(capsys, "incidents", "-f", "json", "--db", db)
    doc = json.loads(out)
    jsonschema.validate(doc, incidents_schema)
    assert [(i["id"], i["kind"], i["status"]) for i in doc["incidents"]] == [
        (scan_id, "scan.ports", "closed"), (worm_id, "worm.codered", "open")]

    def ids(*args: str) -> list[int]:
        c, o, e = cli(capsys, *args, "--format", "json", "--db", db)
        assert c == 0, e
        data = json.loads(o)
        return [x["id"] for x in data.get("events", data.get("incidents", []))]

    assert ids("incidents", "--type", "worm.*") == [worm_id]
    assert ids("incidents", "--min-danger", "high") == [worm_id]
    assert ids("incidents", "--src", "203.0.113.9") == [scan_id]
    assert ids("incidents", "--since", "150m") == [worm_id]  # last seen 2 h ago, not 3 h
    assert ids("incidents", "--since", (NOW - timedelta(minutes=150)).isoformat()) == [worm_id]
    assert len(ids("events", "--type", "decoy.connect,scan.ports")) == 6
    assert len(ids("events", "--type", "sensor.*", "--type", "http.request")) == 3
    assert len(ids("events", "--limit", "2")) == 2
    assert len(ids("events", "--limit", "0")) == 9


def test_tables_keep_hostile_text_inert(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    fill(db)
    for command in ("events", "incidents"):
        code, out, err = cli(capsys, command, "--db", db)
        assert code == 0, err
        assert "\x1b" not in out and "\x07" not in out
        assert "\\x1b" in out  # escaped, visible
        assert "[bold red]" in " ".join(out.split())  # markup stays literal text (wrapped)
    code, out, _ = cli(capsys, "events", "--db", db, "--src", "10.0.0.1")
    assert code == 0 and out == "no events\n"


def test_watch_report_in_three_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    fill(db)
    code, out, err = cli(capsys, "watch", "report", "--format", "json", "--db", db)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["events"] == 9
    code, out, err = cli(capsys, "watch", "report", "--db", db, "--since", "150m")
    assert code == 0 and "worm.codered" in out and "\x1b" not in out
    page = tmp_path / "report.html"
    code, out, err = cli(capsys, "watch", "report", "-f", "html", "-o", str(page), "--db", db)
    assert code == 0 and out == "" and "report written" in err
    html = page.read_text()
    assert "<svg" in html and "<script" not in html and "[bold red]" in html
    assert "\x1b" not in html


# -- the real process --------------------------------------------------------------------------


def test_sigint_stops_cleanly_and_a_busy_port_is_an_error_not_a_crash(tmp_path: Path,
                                                                      no_user_settings: Path
                                                                      ) -> None:
    db = str(tmp_path / "w.db")
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen()
    taken = busy.getsockname()[1]
    err_path = tmp_path / "err.txt"
    try:
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mamori", "watch", "--decoy", f"{HOST}:{taken}",
                 "--decoy", f"{HOST}:0", "--db", db],
                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                env={**os.environ, "MAMORI_SETTINGS": str(no_user_settings)})
        try:
            end = time.monotonic() + 30
            while "watching" not in err_path.read_text() and time.monotonic() < end:
                assert proc.poll() is None, err_path.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, err_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
        text = err_path.read_text()
        assert f"decoy:tcp/{HOST}:{taken}: Address already in use" in text
        assert "stopped:" in text

        # Nothing at all can start: exit 3, the reason on stderr and in the store (knocks,
        # on by default, would start as root: off, so that the busy decoy is all there is).
        result = run_mamori("watch", "--decoy", f"{HOST}:{taken}", "--no-knocks", "--db", db,
                            env={"MAMORI_SETTINGS": str(no_user_settings)})
        assert result.returncode == 3, result.stderr
        assert "nothing to watch could start" in result.stderr
    finally:
        busy.close()
    with Store.open(db) as store:  # both runs recorded why the busy decoy did not start
        errors = list_events(store, EventQuery(types=("sensor.error",)))
    assert [e.event.fields["reason"] for e in errors] == ["Address already in use"] * 2


def test_flags_replace_the_settings_sources_and_keep_the_rest(no_user_settings: Path,
                                                              tmp_path: Path) -> None:
    from mamori.cli.watch import _settings

    no_user_settings.write_text(
        '[watch]\ndecoys = ["127.0.140.40:2323"]\nicmp = true\nincident_window = "5m"\n'
        '[watch.block]\nmin_danger = "critical"\n')
    from_file = _settings(None, [], [], [], [], False, False, False, False)
    assert from_file.decoys == ("127.0.140.40:2323",) and from_file.icmp
    assert not from_file.block.enabled
    log = tmp_path / "a.log"
    flags = _settings(None, ["127.0.140.40:8081"], [log], [], [], False, False, True, False)
    assert flags.decoys == ("127.0.140.40:8081",) and not flags.icmp
    assert [(s.kind, s.path, s.follow) for s in flags.logs] == [("access", log, True)]
    assert flags.incident_window == 300 and flags.block.enabled
    assert flags.block.min_danger == "critical"
    once = _settings(None, [], [log], [log], [], False, False, False, True)
    assert [(s.kind, s.follow) for s in once.logs] == [("access", False), ("auth", False)]


@pytest.mark.parametrize("command", [["watch"], ["watch", "report"], ["events"], ["incidents"]])
def test_help_renders(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = cli(capsys, *command, "--help")
    assert code == 0 and err == ""
    assert "--db" in out and "Traceback" not in out
    if command == ["watch"]:
        assert "ADDR:PORT[/udp][=persona]" in out and "[watch.block]" in out
