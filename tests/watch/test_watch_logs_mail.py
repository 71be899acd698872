"""Failed logins of real mail daemons become brute-force evidence like sshd's: dovecot (IMAP,
POP3) and postfix submission with SASL (Cyrus, an empty password database), each from its own
config on 127.0.146.1, are sent logins with deliberately wrong passwords for an account name
the test makes up, from the source address 127.0.146.2; their own log files are read by a
real ``mamori watch --read-once --auth-log`` and become one ``bruteforce`` incident per
service."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemons import start_or_skip
from fixtures_mail import start_dovecot_mail, start_postfix_mail
from mamori.model.watch import EventType
from mamori.watch.logs.parse import parse_line

pytestmark = pytest.mark.daemon

HOST, PEER = "127.0.146.1", "127.0.146.2"
ROOT = Path(__file__).resolve().parents[2]
TRIES = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def talk(port: int, lines: list[bytes]) -> bytes:
    """Connect from PEER, send each line after reading what the server said, return all."""
    got = b""
    with socket.create_connection((HOST, port), timeout=20, source_address=(PEER, 0)) as s:
        got += s.recv(4096)
        for line in lines:
            s.sendall(line + b"\r\n")
            time.sleep(0.05)
            got += s.recv(4096)
    return got


def imap_login(port: int, i: int) -> bytes:
    return talk(port, [f"a LOGIN mallory wrong-{i}".encode(), b"b LOGOUT"])


def smtp_login(port: int, i: int) -> bytes:
    plain = base64.b64encode(f"\0mallory\0wrong-{i}".encode())
    return talk(port, [b"EHLO peer.test", b"AUTH PLAIN " + plain, b"QUIT"])


def wait_lines(path: Path, needle: str, count: int, timeout: float = 20) -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = path.read_text(errors="replace") if path.exists() else ""
        if text.count(needle) >= count:
            return text
        time.sleep(0.2)
    return text


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """dovecot's unix sockets need a short path (108 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_dovecot_and_postfix_failures_are_brute_force(tmp_path: Path, short_dir: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    imap, pop3 = free_port(), free_port()
    dovecot = start_or_skip(start_dovecot_mail, short_dir, HOST, imap, pop3, mode="cleartext")
    with dovecot, ThreadPoolExecutor(TRIES) as pool:
        answers = list(pool.map(lambda i: imap_login(imap, i), range(TRIES)))
        assert all(b"a NO [AUTHENTICATIONFAILED]" in a for a in answers), answers
        dovecot_log = short_dir / "dovecot-cleartext" / "dovecot.log"
        text = wait_lines(dovecot_log, "auth failed", TRIES)
        (logs / "dovecot.log").write_text(text)
    smtp, submission = free_port(), free_port()
    postfix = start_or_skip(start_postfix_mail, tmp_path, HOST, smtp, submission,
                            hardened=False)
    with postfix, ThreadPoolExecutor(TRIES) as pool:
        answers = list(pool.map(lambda i: smtp_login(submission, i), range(TRIES)))
        assert all(b"535 5.7.8" in a for a in answers), answers
        maillog = Path(postfix.pidfile).parents[2] / "postfix.log"
        text = wait_lines(maillog, "SASL PLAIN authentication failed", TRIES)
        (logs / "postfix.log").write_text(text)

    # the parser on the daemons' own lines: one auth.failure per failed login, from PEER
    for name, service, method in (("dovecot.log", "imap", "PLAIN"),
                                  ("postfix.log", "smtp", "PLAIN")):
        events = [e for line in (logs / name).read_text().splitlines()
                  if (e := parse_line("auth", line)) is not None]
        assert len(events) == TRIES, (name, events)
        assert {(e.type, e.src, e.fields["service"], e.fields["username"],
                 e.fields["method"]) for e in events} == {
            (EventType.AUTH_FAILURE, PEER, service, "mallory", method)}

    db = tmp_path / "w.db"
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "MAMORI_SETTINGS": str(tmp_path / "empty.toml")}
    run = subprocess.run(
        [sys.executable, "-m", "mamori", "watch", "--read-once", "--db", str(db),
         "--auth-log", str(logs / "dovecot.log"), "--auth-log", str(logs / "postfix.log")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "mamori", "incidents", "--db", str(db), "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=True)
    incidents = json.loads(shown.stdout)["incidents"]
    brute = [i for i in incidents if i["kind"] == "bruteforce"]
    assert [i["src"] for i in brute] == [PEER], incidents
    events = subprocess.run(
        [sys.executable, "-m", "mamori", "events", "--db", str(db), "--format", "json",
         "--type", "bruteforce"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=env, check=True)
    services = sorted(e["fields"]["service"] for e in json.loads(events.stdout)["events"])
    assert services == ["imap", "smtp"], events.stdout
