"""`mamori check --outside URL` joins the outside result into one verdict per listener, stores
it with the run (migration 0008), and `mamori show` renders it again, in JSON and as a table.

A real mamori serve on 127.0.163.2 (this test's address) probes the requester (127.0.0.1 in the
loopback-only namespace): the listener on 0.0.0.0 is proven reachable ("internet" for this
service's point of view), the loopback one stays "host" and is never sent.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from conftest import run_mamori
from serve_helpers import serve
from threaded_server import ThreadedServer

SERVICE = "127.0.163.2"


def _banner(conn: socket.socket) -> None:
    """A listener that says what it is at once (a silent one would cost mamori check's
    identification budget, which is not what these tests are about)."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 mamori-test\r\n")


def test_check_outside_verdicts_are_stored_and_shown_again(tmp_path: Path) -> None:
    (tmp_path / "serve").mkdir()
    env = {"MAMORI_DB": str(tmp_path / "m.db")}
    with serve(tmp_path / "serve", host=SERVICE, allow_networks=["127.0.0.1/32"]) as srv, \
            ThreadedServer("0.0.0.0", 0, _banner) as speaking, \
            ThreadedServer("127.0.0.1", 0, _banner) as local:
        port, lo_port = speaking.sock.getsockname()[1], local.sock.getsockname()[1]
        r = run_mamori("check", "--no-checks", "--outside", srv.url, "--format", "json",
                       env=env, timeout=240)
        srv.backend.wait_idle(10)
        (request,) = srv.scanner.requests
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    verdicts = {(v["port"], v["family"]): v for v in doc["paths"]["verdicts"]}
    v = verdicts[(port, 4)]
    assert v["reach"] == "internet" and v["proven"] is True
    assert [s["name"] for s in v["steps"]][-1] == "outside" and v["steps"][-1]["verdict"] == "open"
    assert verdicts[(lo_port, 4)]["reach"] == "host" and lo_port not in request.tcp_ports
    assert [o["family"] for o in doc["paths"]["outside"]] == [4, 6]
    (exposed,) = [c for c in doc["checks"]
                  if c["check_id"] == "exposed-listener" and c["port"] == port]
    assert exposed["severity"] == "high" and "reachable from the internet" in exposed["summary"]

    scan_id = str(doc["scan"]["id"])
    shown = run_mamori("show", scan_id, "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["paths"] == doc["paths"]
    table = run_mamori("show", scan_id, env={**env, "COLUMNS": "300"})
    assert "What the internet sees: who reaches each listener" in table.stdout
    line = next(x for x in table.stdout.splitlines() if x.startswith(f"tcp/{port} on 0.0.0.0"))
    assert "internet" in line and "proven from outside" in line
    ja = run_mamori("show", scan_id, "--lang", "ja", env={**env, "COLUMNS": "300"})
    assert "インターネットから見えるもの" in ja.stdout and "外部から確認済み" in ja.stdout
