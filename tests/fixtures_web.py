"""Web servers for the web exposure checks: real nginx and apache2, misconfigured and hardened.

Each daemon gets its own config file, pid file, and loopback address in 127.0.65.0/24. The
document roots live in a world-traversable directory of their own (pytest's tmp_path is
root-only, and the workers run as nobody), removed when the daemon stops.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import daemons as dm
from daemons import Daemon, DaemonUnavailable, _need, _spawn, _started, wait_tcp

__all__ = ["Daemon", "DaemonUnavailable", "ds_store_bytes", "make_site", "start_apache",
           "start_nginx_site"]

ENV_TEXT = (
    "# production settings\nAPP_ENV=production\nAPP_KEY=base64:c2VjcmV0LWtleS1mb3ItdGVzdHM=\n"
    "DB_HOST=127.0.0.1\nDB_PASSWORD=hunter2-never-real\nexport MAIL_PASSWORD='also-secret'\n"
)
SQL_DUMP = (
    "-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)\n--\n"
    "-- Host: localhost    Database: shop\n"
    "DROP TABLE IF EXISTS `users`;\nCREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n"
    "  `email` varchar(255) DEFAULT NULL\n) ENGINE=InnoDB;\n"
    "INSERT INTO `users` VALUES (1,'owner@example.invalid');\n"
)
PHP_SOURCE = "<?php\n$db = new PDO('mysql:host=localhost;dbname=shop', 'shop', 'pw');\n"


def ds_store_bytes() -> bytes:
    """A .DS_Store as Finder writes it: the buddy-allocator header (magic, root block offset
    twice, size) followed by a "DSDB" table of contents, padded to a 4 KiB block."""
    offset, size = 0x800, 0x800
    header = (b"\x00\x00\x00\x01Bud1" + offset.to_bytes(4, "big") + size.to_bytes(4, "big")
              + offset.to_bytes(4, "big") + bytes(16))
    toc = b"\x00\x00\x00\x01\x04DSDB\x00\x00\x00\x01"
    body = header + bytes(offset + 4 - len(header)) + toc
    return body + bytes(0x1000 - len(body))


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("site/index.php", PHP_SOURCE)
    return buf.getvalue()


def make_site(root: Path, *, leaky: bool = True) -> Path:
    """A document root with a custom index page and a /files/ directory; with ``leaky`` also
    a real git repository, .env, .DS_Store and backup files. Returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><title>Our shop</title></head>"
        "<body><h1>Welcome to our shop</h1></body></html>\n"
    )
    files = root / "files"
    files.mkdir(exist_ok=True)
    (files / "price-list.pdf").write_bytes(b"%PDF-1.4\n%mamori test\n")
    (files / "notes.txt").write_text("meeting notes\n")
    if leaky:
        git = shutil.which("git")
        if git is None:
            raise DaemonUnavailable("git not installed")
        subprocess.run([git, "init", "-q", "-b", "main", str(root)], check=True)
        (root / ".env").write_text(ENV_TEXT)
        (root / ".DS_Store").write_bytes(ds_store_bytes())
        (root / "backup.zip").write_bytes(_zip_bytes())
        (root / "dump.sql").write_text(SQL_DUMP)
        (root / "index.php.bak").write_text(PHP_SOURCE)
    dav = root / "dav"
    dav.mkdir(exist_ok=True)
    shutil.chown(dav, "nobody", "nogroup")
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else 0o644)
    shutil.chown(root, "nobody", "nogroup")
    return root


def _world_dir(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    return home


def start_nginx_site(workdir: Path, host: str, servers: dict[int, str],
                     tls_ports: frozenset[int] = frozenset()) -> Daemon:
    """nginx (master + one worker as nobody) with one ``server`` block per port on ``host``.

    ``servers`` maps a port to the directives inside its server block (root, autoindex,
    dav_methods, locations...); ports in ``tls_ports`` listen with ``ssl`` (their block names
    the certificate). The first port is the Daemon's port; all are in ``ports``.
    """
    nginx = _need("/usr/sbin/nginx")
    pid = workdir / "nginx.pid"
    temp = _world_dir("mamori-nginx-temp-")
    blocks = "".join(
        f"  server {{\n    listen {host}:{port}{' ssl' if port in tls_ports else ''};\n"
        f"    server_name _;\n{body}\n  }}\n"
        for port, body in servers.items()
    )
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n"
        f"error_log {workdir}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
        "  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n" + blocks + "}\n"
    )
    proc, log = _spawn(
        [nginx, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(cfg)],
        workdir, "nginx.out",
    )
    ports = list(servers)
    d = Daemon("nginx", host, ports[0], proc, workdir, pid, log,
               ports={str(p): p for p in ports})
    d.cleanup.append(lambda: shutil.rmtree(temp, ignore_errors=True))

    def wait() -> None:
        for port in ports:
            wait_tcp(host, port, proc=proc)

    return _started(d, wait)


_APACHE_MODULES = ("mpm_event", "authz_core", "dir", "mime", "autoindex", "alias")


def start_apache(workdir: Path, host: str, port: int, docroot: Path, *, hardened: bool) -> Daemon:
    """apache2 in the foreground with its own minimal config: misconfigured (TraceEnable On,
    ServerTokens Full with signatures, directory indexes on) or hardened (TraceEnable Off,
    ServerTokens Prod, ServerSignature Off, Options -Indexes)."""
    apache = _need("/usr/sbin/apache2")
    modules = Path("/usr/lib/apache2/modules")
    run = _world_dir("mamori-apache-run-")
    pid = run / "apache2.pid"
    loads = "".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n" for m in _APACHE_MODULES)
    policy = (
        "TraceEnable Off\nServerTokens Prod\nServerSignature Off\n" if hardened
        else "TraceEnable On\nServerTokens Full\nServerSignature On\n"
    )
    indexes = "-Indexes" if hardened else "+Indexes"
    cfg = workdir / "apache2.conf"
    cfg.write_text(
        f"{loads}ServerRoot {run}\nServerName mamori-web.test\nListen {host}:{port}\n"
        f"PidFile {pid}\nDefaultRuntimeDir {run}\nMutex file:{run} default\n"
        f"ErrorLog {workdir}/apache-error.log\nLogLevel warn\nUser nobody\nGroup nogroup\n"
        "TypesConfig /etc/mime.types\nStartServers 1\nServerLimit 1\nThreadsPerChild 8\n"
        f"{policy}DocumentRoot {docroot}\nDirectoryIndex index.html\n"
        f"<Directory />\n  Require all denied\n</Directory>\n"
        f"<Directory {docroot}>\n  Options {indexes}\n  Require all granted\n</Directory>\n"
    )
    proc, log = _spawn([apache, "-f", str(cfg), "-DFOREGROUND"], workdir, "apache.out")
    d = Daemon("apache2", host, port, proc, workdir, pid, log)
    d.cleanup.append(lambda: shutil.rmtree(run, ignore_errors=True))
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def world_dir(prefix: str) -> Path:
    """A fresh directory others (the daemons' nobody workers) may traverse."""
    return _world_dir(prefix)


listeners_on_wildcard = dm.listeners_on_wildcard
