"""Receivers for the alert sink tests (addresses 127.0.145.0/24): a real rsyslogd, a real
postfix delivering to a local Maildir, and a scripted HTTP server for webhooks.

rsyslogd and postfix run from their own config files and directories, never resolve names
(rsyslog ``net.enableDNS="off"``, postfix ``smtpd_peername_lookup = no``), and postfix hands
anything not for the test domain to its discard transport, so no mail ever leaves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from daemons import Daemon, _need, _spawn, _started, wait_tcp, wait_udp
from fixtures_smtp import _master_cf

SYSLOG_HOST = "127.0.145.1"
WEBHOOK_HOST = "127.0.145.2"
SMTP_HOST = "127.0.145.3"
MAIL_DOMAIN = "watch.mamori.test"
FIELDS = ("facility", "severity", "app", "procid", "msgid", "hostname", "sd", "msg")


# --- rsyslog ----------------------------------------------------------------------------------


@dataclass
class Rsyslog:
    daemon: Daemon
    udp: int
    tcp: int
    unix: Path
    out: Path

    def records(self) -> list[dict[str, str]]:
        """What rsyslog parsed, one dict per message (FIELDS)."""
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t", len(FIELDS) - 1)
            if len(parts) == len(FIELDS):
                rows.append(dict(zip(FIELDS, parts, strict=True)))
        return rows

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rows = self.records()
            if len(rows) >= count:
                return rows
            time.sleep(0.05)
        return self.records()


def start_rsyslog(workdir: Path, udp: int, tcp: int) -> Rsyslog:
    rsyslogd = _need("/usr/sbin/rsyslogd")
    sock, out, pid = workdir / "log.sock", workdir / "out.log", workdir / "rsyslogd.pid"
    template = "\\t".join(f"%{p}%" for p in (
        "syslogfacility-text", "syslogseverity-text", "app-name", "procid", "msgid",
        "hostname", "structured-data", "msg"))
    (workdir / "rsyslog.conf").write_text(
        f'global(workDirectory="{workdir}" net.enableDNS="off" maxMessageSize="16k")\n'
        'module(load="imudp")\nmodule(load="imtcp")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imudp" address="{SYSLOG_HOST}" port="{udp}")\n'
        f'input(type="imtcp" address="{SYSLOG_HOST}" port="{tcp}")\n'
        f'input(type="imuxsock" Socket="{sock}" UseSpecialParser="off" ParseHostname="on")\n'
        f'template(name="fields" type="string" string="{template}\\n")\n'
        f'*.* action(type="omfile" file="{out}" template="fields")\n'
    )
    proc, log = _spawn([rsyslogd, "-n", "-f", str(workdir / "rsyslog.conf"), "-i", str(pid)],
                       workdir, "rsyslogd.out")
    d = Daemon("rsyslogd", SYSLOG_HOST, tcp, proc, workdir, pid, log)

    def wait() -> None:
        wait_tcp(SYSLOG_HOST, tcp, proc=proc)
        wait_udp(SYSLOG_HOST, udp, proc=proc)
        end = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < end:
            time.sleep(0.05)

    return Rsyslog(_started(d, wait), udp, tcp, sock, out)


# --- postfix delivering to a Maildir --------------------------------------------------------


@dataclass
class Mailbox:
    daemon: Daemon
    port: int
    maildir: Path
    log: Path

    def messages(self) -> list[bytes]:
        new = self.maildir / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []

    def wait_for(self, count: int, timeout: float = 20.0) -> list[bytes]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.messages()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        return self.messages()


def start_postfix_mailbox(workdir: Path, port: int, cert: Path | None = None,
                          key: Path | None = None) -> Mailbox:
    """Postfix on SMTP_HOST:port accepting mail for owner@MAIL_DOMAIN and delivering it with
    its virtual(8) agent into a Maildir; STARTTLS offered when ``cert``/``key`` are given."""
    postfix = _need("/usr/sbin/postfix")
    home = Path(tempfile.mkdtemp(prefix="mamori-mailbox-"))
    home.chmod(0o755)  # postfix's unprivileged processes must reach their queue
    conf, queue, data, mail = home / "etc", home / "queue", home / "data", home / "mail"
    for d in (conf, queue, data, mail):
        d.mkdir()
    shutil.chown(data, "postfix", "postfix")
    nobody = 65534
    os.chown(mail, nobody, nobody)
    (conf / "vmailbox").write_text(f"owner@{MAIL_DOMAIN} owner/\n")
    tls = (f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
           f"smtpd_tls_key_file = {key}\n" if cert and key else "smtpd_tls_security_level = none\n")
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        f"myhostname = mail.{MAIL_DOMAIN}\nmydomain = {MAIL_DOMAIN}\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        "mydestination =\nlocal_transport = error:local delivery disabled\n"
        "alias_maps =\nalias_database =\nbiff = no\n"
        f"virtual_mailbox_domains = {MAIL_DOMAIN}\nvirtual_mailbox_base = {mail}\n"
        f"virtual_mailbox_maps = texthash:{conf}/vmailbox\n"
        f"virtual_uid_maps = static:{nobody}\nvirtual_gid_maps = static:{nobody}\n"
        "virtual_minimum_uid = 1\nvirtual_transport = virtual\n"
        "mynetworks = 127.0.0.0/8\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "smtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\n"
        "smtp_tls_security_level = none\n" + tls +
        # Whatever is not for the test domain is thrown away: no test mail ever leaves.
        "default_transport = discard:mamori test\nrelay_transport = discard:mamori test\n"
        "bounce_queue_lifetime = 0\nmaximal_queue_lifetime = 0\n"
        f"maillog_file = {home}/postfix.log\nmaillog_file_prefixes = {home}\n"
    )
    (conf / "master.cf").write_text(_master_cf([
        f"{SMTP_HOST}:{port} inet n - n - - smtpd\n",
        "virtual unix - n n - - virtual\n",
        "tlsmgr unix - - n 1000? 1 tlsmgr\n",
    ]))
    env = {"MAIL_CONFIG": str(conf)}
    subprocess.run([postfix, "-c", str(conf), "set-permissions"], capture_output=True,
                   env={**os.environ, **env}, check=False)
    proc, log = _spawn([postfix, "-c", str(conf), "start-fg"], workdir, "postfix.out", env)
    d = Daemon("postfix", SMTP_HOST, port, proc, workdir, queue / "pid" / "master.pid", log)

    def stop_postfix() -> None:
        subprocess.run([postfix, "-c", str(conf), "stop"], capture_output=True, check=False)

    d.cleanup.append(stop_postfix)
    d.cleanup.insert(0, lambda: shutil.rmtree(home, ignore_errors=True))
    _started(d, lambda: wait_tcp(SMTP_HOST, port, timeout=15, proc=proc))
    return Mailbox(d, port, mail / "owner", home / "postfix.log")


# --- a scripted HTTP server (webhooks) --------------------------------------------------------


@dataclass
class Hook:
    """Answers POSTs by ``script`` (one entry per request, the last one repeats): an HTTP
    status, or ``"stall"`` (say nothing for ``stall`` seconds, then 200)."""

    script: list[int | str]
    stall: float = 3.0
    bodies: list[dict[str, object]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> int | str:
        with self.lock:
            n = len(self.times)
            self.times.append(time.monotonic())
            return self.script[min(n, len(self.script) - 1)]


@contextlib.contextmanager
def webhook_server(hook: Hook, port: int = 0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(size, 1 << 20))
            answer = hook.next_answer()
            with hook.lock:
                hook.headers.append(dict(self.headers.items()))
                with contextlib.suppress(ValueError):
                    hook.bodies.append(json.loads(body))
            if answer == "stall":
                time.sleep(hook.stall)
                answer = 200
            assert isinstance(answer, int)
            self.send_response(answer)
            self.send_header("Content-Length", "2")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"ok")

    server = ThreadingHTTPServer((WEBHOOK_HOST, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://{WEBHOOK_HOST}:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
