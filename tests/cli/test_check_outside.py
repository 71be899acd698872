"""`mamori check --outside URL`: the real CLI asks a real mamori serve (on 127.0.153.2, in this
test's process) to probe this host's own address for its non-loopback listeners.

In the test namespace (loopback only) the kernel sends from 127.0.0.1 to 127.0.153.2, so that
is the address the service sees and probes; the service allows 127.0.0.1/32 and excludes
port 2024 (the test settings), as always.
"""

from __future__ import annotations

import socket
from pathlib import Path

from conftest import run_mamori
from serve_helpers import serve
from threaded_server import ThreadedServer

SERVICE = "127.0.153.2"


def _banner(conn: socket.socket) -> None:
    """A listener that says what it is at once (a silent one would cost mamori check's
    identification budget, which is not what these tests are about)."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 mamori-test\r\n")


def test_a_bad_outside_url_is_one_usage_line_and_nothing_stored(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    for url in ("ftp://example.invalid/", "http://user:pw@127.0.0.1/", "http://127.0.0.1:x/",
                "http://127.0.0.1/?target=1.2.3.4"):
        r = run_mamori("check", "--outside", url, env={"MAMORI_DB": str(db)})
        assert r.returncode == 2, (url, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mamori: error: --outside:"), r.stderr
        assert r.stdout == "" and not db.exists()


def test_check_outside_shows_what_the_service_saw_per_family(tmp_path: Path) -> None:
    (tmp_path / "serve").mkdir()
    with serve(tmp_path / "serve", host=SERVICE, allow_networks=["127.0.0.1/32"]) as srv, \
            ThreadedServer("0.0.0.0", 0, _banner) as speaking:
        port = speaking.sock.getsockname()[1]
        r = run_mamori("check", "--no-checks", "--outside", srv.url,
                       env={"MAMORI_DB": str(tmp_path / "m.db")}, timeout=240)
        srv.backend.wait_idle(10)
        assert srv.scanner.addresses() == ["127.0.0.1"]
        (request,) = srv.scanner.requests
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "What the internet sees" in out
    assert f"IPv4 via {srv.url}, seen as 127.0.0.1" in out
    assert f"tcp/{port:<5} open (reachable from outside)" in out
    assert "IPv6 via" in out and "not tested over IPv6: the service URL names an IPv4" in out
    assert port in request.tcp_ports and 2024 not in request.tcp_ports
    assert request.identify is False  # the API reports port states: no identification
    assert f"outside: asking {srv.url}" in r.stderr
