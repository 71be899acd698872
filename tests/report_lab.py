"""A small lab of misconfigured daemons for the report tests and the README screenshot.

Real Debian daemons, each with its own config on one loopback address (127.0.110.1, the
reports range): vsftpd with anonymous login, redis-server without a password, and nginx
serving a site with an exposed .git directory and directory listing. With ``hostile`` two
fake Redis servers join: one on 127.0.110.2 answers INFO with a version string that carries
HTML and script (the report's escaping is tested on text that really came through a scan),
one on 127.0.110.3 answers identification but stays silent on the check (a check not
tested, which the report must list as such).

``scan_lab`` runs the real CLI (``python -m mamori scan``) against the lab and returns the
stored scan id; ``scripts/make-report-screenshot`` and tests/report/test_report_html.py share it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import daemons as dm
import fixtures_remote as fr
import fixtures_web as fw

HOST = "127.0.110.1"
HOSTILE_HOST = "127.0.110.2"
SILENT_HOST = "127.0.110.3"
FTP_PORT, HTTP_PORT, REDIS_PORT = 21, 80, 6379
HOSTILE_PORT = 6379
# Closes attributes and tags, opens a script and an image with an error handler.
HOSTILE_VERSION = '7.0.0"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Lab:
    host: str = HOST  # where the real daemons listen
    ports: dict[str, int] = field(default_factory=dict)  # name -> port on ``host``
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it did not start
    hostile: bool = False

    def targets(self) -> list[str]:
        return [self.host, HOSTILE_HOST, SILENT_HOST] if self.hostile else [self.host]

    def port_spec(self) -> str:
        ports = set(self.ports.values()) | ({HOSTILE_PORT} if self.hostile else set())
        return ",".join(str(p) for p in sorted(ports))


def _info_reply(version: str) -> bytes:
    body = (
        f"# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n"
        "os:Linux\r\nrole:master\r\nconnected_clients:1\r\n"
    ).encode()
    return b"$%d\r\n%s\r\n" % (len(body), body)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def fake_redis(host: str, port: int, version: str, *, silent_on_check: bool = False
               ) -> Iterator[None]:
    """A fake Redis whose INFO reply carries ``version``; with ``silent_on_check`` it answers
    identification ("INFO server") but not the check's bare INFO."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(10)
            try:
                while data := sock.recv(4096):
                    if b"INFO" not in data.upper():
                        return
                    if silent_on_check and b"server" not in data:
                        continue
                    sock.sendall(_info_reply(version))
            except OSError:
                return

    server = _Server((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _protected_mode_off(host: str, port: int) -> None:
    """redis-server answers only loopback clients with protected mode on; turn it off so the
    lab looks like the real misconfiguration (a Redis reachable from the LAN)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"CONFIG SET protected-mode no\r\n")
        sock.recv(64)


@contextlib.contextmanager
def running_lab(work: Path, *, hostile: bool = False, host: str = HOST) -> Iterator[Lab]:
    """Start the lab's daemons on ``host`` (each one that cannot run is listed in
    ``Lab.skipped``)."""
    lab = Lab(host=host, hostile=hostile)
    with contextlib.ExitStack() as stack:
        site_home = fw.world_dir("mamori-report-site-")
        stack.callback(shutil.rmtree, site_home, ignore_errors=True)
        ftp_home = stack.enter_context(fr.world_readable_dir())

        def nginx() -> dm.Daemon:
            site = fw.make_site(site_home / "www")
            server = f"    root {site};\n    autoindex on;\n"
            return fw.start_nginx_site(_mkdir(work / "nginx"), host, {HTTP_PORT: server})

        def redis() -> dm.Daemon:
            daemon = dm.start_redis(_mkdir(work / "redis"), host, REDIS_PORT)
            _protected_mode_off(host, REDIS_PORT)
            return daemon

        starters: list[tuple[str, int, Callable[[], dm.Daemon]]] = [
            ("vsftpd", FTP_PORT, lambda: fr.start_vsftpd(ftp_home / "ftp", host, FTP_PORT,
                                                          anonymous=True)),
            ("redis", REDIS_PORT, redis),
            ("nginx", HTTP_PORT, nginx),
        ]
        started = stack.enter_context(dm.running_lab({name: start for name, _, start in starters}))
        lab.ports = {name: port for name, port, _ in starters if name in started}
        lab.skipped = {name: why.splitlines()[0] for name, why in started.failed.items()}
        if hostile:
            stack.enter_context(fake_redis(HOSTILE_HOST, HOSTILE_PORT, HOSTILE_VERSION))
            stack.enter_context(fake_redis(SILENT_HOST, HOSTILE_PORT, "7.0.1",
                                           silent_on_check=True))
        yield lab


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def scan_lab(lab: Lab, db: Path, *extra: str) -> int:
    """Run the real `mamori scan` of the lab into ``db``; return the stored scan id."""
    proc = subprocess.run(
        [sys.executable, "-m", "mamori", "scan", *lab.targets(), "-p", lab.port_spec(),
         "--exclude-ports", "2024", "-f", "json", "--db", str(db), *extra],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"mamori scan exited {proc.returncode}: {proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout)["scan"]["id"])
