"""``mamori serve`` as a user runs it: settings errors, --hash-password, and the real server
process, which must take the peer from the connection even when the peer is 127.0.0.1
(uvicorn by default trusts X-Forwarded-For from 127.0.0.1; mamori switches that off)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import ROOT, run_mamori
from mamori.serve.passwords import verify_password
from mamori.settings import load_settings
from serve_helpers import free_port

HOST = "127.0.152.1"


def test_bad_serve_settings_are_one_line_usage_errors(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[serve]\nallow_loopback = "perhaps"\n')
    proc = run_mamori("serve", env={"MAMORI_SETTINGS": str(settings)}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "allow_loopback" in proc.stderr
    settings.write_text('[serve]\nchecks = ["no-such-check"]\n')
    proc = run_mamori("serve", "--db", str(tmp_path / "m.db"),
                      env={"MAMORI_SETTINGS": str(settings)}, timeout=60)
    assert proc.returncode == 2 and "no-such-check" in proc.stderr
    # The [serve] table does not upset the other commands' settings.
    settings.write_text('exclude_ports = "2024"\n[serve]\nport = 8081\n')
    assert load_settings(settings).exclude_ports == "2024"


def test_unusable_port_table_stops_serve_at_start(tmp_path: Path) -> None:
    # The profiles take their ports from nmap-services or mamori's own table; a file the
    # operator names that is not a usable nmap-services is a usage error before anything binds.
    proc = run_mamori("serve", "--db", str(tmp_path / "m.db"), "--bind", HOST,
                      "--port", str(free_port(HOST)), timeout=30,
                      env={"MAMORI_NMAP_SERVICES": str(tmp_path / "missing")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mamori: error: MAMORI_NMAP_SERVICES=")
    assert proc.stderr.count("\n") == 1


def test_hash_password_prints_a_verifiable_hash() -> None:
    proc = run_mamori("serve", "--hash-password", input="a long admin password\n", timeout=60)
    assert proc.returncode == 0, proc.stderr
    stored = proc.stdout.strip()
    assert stored.startswith("scrypt$") and "a long admin password" not in stored
    assert verify_password("a long admin password", stored)
    proc = run_mamori("serve", "--hash-password", input="short\n", timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""


def test_the_server_takes_the_peer_from_the_connection(tmp_path: Path) -> None:
    port = free_port(HOST)
    settings = tmp_path / "settings.toml"
    settings.write_text(
        "[serve]\nallow_loopback = true\n"
        f'public_url = "http://{HOST}:{port}"\nsecret_key = "{"s" * 40}"\n')
    env = {**os.environ, "MAMORI_SETTINGS": str(settings), "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    env.pop("MAMORI_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "serve", "--bind", HOST, "--port", str(port),
         "--db", str(tmp_path / "serve.db")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        transport = httpx.HTTPTransport(local_address="127.0.0.1")
        with httpx.Client(base_url=f"http://{HOST}:{port}", transport=transport,
                          timeout=10) as c:
            end = time.monotonic() + 30
            while True:
                try:
                    r = c.get("/", headers={"x-forwarded-for": "127.0.151.41"})
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < end, "mamori serve did not start"
                    time.sleep(0.1)
            assert r.status_code == 200
            assert '<strong id="peer">127.0.0.1</strong>' in r.text
            assert "127.0.151.41" not in r.text
            assert "server" not in r.headers  # no server banner
            assert c.get("/", headers={"host": "evil.example"}).status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    # uvicorn ends cleanly, then re-raises SIGTERM (systemd reads that as a clean stop).
    assert proc.returncode in (0, -signal.SIGTERM), err[-2000:]
    assert "Application shutdown complete" in err
    assert "no secret_key" not in err  # it was set


def test_a_missing_serve_extra_is_one_line_naming_the_pip_extra(tmp_path: Path) -> None:
    """On a plain `pip install .` (no fastapi, no celery) `mamori serve` and `mamori worker`
    say which extra to install, exit 3, and never start anything."""
    settings = tmp_path / "settings.toml"
    settings.write_text("", encoding="utf-8")
    env = {**os.environ, "MAMORI_SETTINGS": str(settings)}
    for command, blocked in (("serve", "fastapi"), ("worker", "celery")):
        code = (f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['mamori', {command!r}]; "
                "from mamori.cli.app import main; main()")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, env=env, check=False)
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"({blocked} is missing)" in lines[0], proc.stderr
        assert "pip install '.[serve]'" in lines[0]
        assert proc.stdout == ""
