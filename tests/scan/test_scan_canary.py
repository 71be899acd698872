"""The SMTP canary end to end, as a deployment would run it: `mamori canary smtp` is the sink
the canary domain's mail reaches, a real postfix open relay relays to it, and `mamori scan
--smtp-canary-*` grades the relay "delivered"."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
import fixtures_smtp as fsm
from conftest import ROOT, run_mamori

pytestmark = pytest.mark.daemon
RELAY, SINK = "127.0.44.1", "127.0.44.2"
RELAY_PORT, SINK_PORT = 2526, 2626


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Path]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "canary", "smtp", "--listen", f"{SINK}:{SINK_PORT}",
         "--inbox", str(inbox)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        dm.wait_tcp(SINK, SINK_PORT, proc=proc)  # type: ignore[arg-type]
        yield inbox
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_open_relay_is_delivered_to_the_mamori_sink(tmp_path: Path, sink: Path) -> None:
    with dm.running(fsm.start_postfix_relay, tmp_path, RELAY, RELAY_PORT, open_relay=True,
                    sink=(SINK, SINK_PORT)):
        started = time.monotonic()
        proc = run_mamori(
            "scan", RELAY, "-p", str(RELAY_PORT), "--checks", "smtp-open-relay",
            "--smtp-canary-domain", fsm.CANARY_DOMAIN, "--smtp-canary-inbox", str(sink),
            "-f", "json", "--db", str(tmp_path / "m.db"), timeout=180,
        )
    assert proc.returncode == 0, proc.stderr
    (check,) = json.loads(proc.stdout)["checks"]
    assert check["status"] == "finding", check["summary"]
    assert check["confidence"] == "confirmed" and check["severity"] == "critical"
    assert check["evidence"]["facts"]["grade"] == "delivered"
    # The message really is in the sink's inbox, with the token the check sent.
    messages = list(sink.iterdir())
    assert messages and time.monotonic() - started < 170


def test_canary_options_must_come_together(tmp_path: Path) -> None:
    proc = run_mamori("scan", RELAY, "-p", "1", "--smtp-canary-domain", "x.test",
                      "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 2 and "go together" in proc.stderr


def test_sink_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    proc = run_mamori("canary", "smtp", "--listen", "nowhere", "--inbox", str(tmp_path))
    assert proc.returncode == 2 and "ADDRESS:PORT" in proc.stderr
