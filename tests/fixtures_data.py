"""Open-data-store daemons for the exposure-check tests, each misconfigured or hardened.

Real Debian daemons where Debian has them (memcached, PostgreSQL, MariaDB), each with its own
config, pid file and loopback address in 127.0.62.0/24; faithful small servers (real reply
bytes, threads, no asyncio so ``run_check``'s own loop is free) for MongoDB,
Elasticsearch/OpenSearch, CouchDB and the Docker Engine API, which Debian does not ship.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import daemons as dm
from threaded_server import ThreadedServer

# --- memcached ------------------------------------------------------------------------------------


def _world_dir(prefix: str) -> Path:
    """A private directory a daemon that drops to "nobody" can still write its pid file in."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o777)  # a throwaway directory; the daemon runs as nobody
    return path


def start_memcached(host: str, port: int, *, auth: bool) -> dm.Daemon:
    """memcached on TCP host:port only (UDP off). ``auth``: an ASCII auth file (``-Y``), so
    every command before a login gets "CLIENT_ERROR unauthenticated"."""
    binary = dm._need("memcached")
    home = _world_dir("mamori-mc-")
    pid = home / "memcached.pid"
    config = home / "memcached.conf"  # the options, kept as Debian keeps them, one a line
    options = ["-l", host, "-p", str(port), "-U", "0", "-m", "16", "-c", "64", "-P", str(pid)]
    if auth:
        users = home / "auth"
        users.write_text("mamori:a-long-random-test-secret\n")
        users.chmod(0o644)
        options += ["-Y", str(users)]
    config.write_text("\n".join(options) + "\n")
    proc, log = dm._spawn([binary, "-u", "nobody", *options], home, "memcached.log")
    d = dm.Daemon("memcached", host, port, proc, home, pid, log)
    d.cleanup.append(lambda: shutil.rmtree(home, ignore_errors=True))
    return dm._started(d, lambda: dm.wait_tcp(host, port, proc=proc))


# --- PostgreSQL -----------------------------------------------------------------------------------

PG_PASSWORD = "a-long-random-test-secret"  # the hardened cluster's


def start_postgres(host: str, port: int, *, trust: bool) -> dm.Daemon:
    """A fresh cluster on host:port. ``trust``: pg_hba lets every user in from loopback
    without a password (the misconfiguration); otherwise scram-sha-256 with a password."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not bins:
        raise dm.DaemonUnavailable("postgresql not installed")
    bindir = bins[-1].parent
    # pytest's tmp_path is root-only; the cluster lives where the postgres user may write.
    home = Path(tempfile.mkdtemp(prefix="mamori-pg-"))
    shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    method = "trust" if trust else "scram-sha-256"
    argv = [*run, str(bindir / "initdb"), "-D", str(data), "-A", method, "-U", "postgres",
            "--no-sync", "-E", "UTF8"]
    if not trust:
        pwfile = home / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        argv += ["--pwfile", str(pwfile)]
    r = subprocess.run(argv, capture_output=True)
    if r.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise dm.DaemonUnavailable(f"initdb failed: {r.stderr[-800:]!r}")
    (data / "pg_hba.conf").write_text(
        f"local all all {method}\nhost all all 127.0.0.0/8 {method}\n"
    )
    # The daemon's own config file: this address only, no Unix socket in /var/run.
    (data / "postgresql.auto.conf").write_text(
        f"listen_addresses = '{host}'\nport = {port}\nunix_socket_directories = '{home}'\n"
        "logging_collector = off\nfsync = off\nshared_buffers = 8MB\nmax_connections = 10\n"
    )
    proc, log = dm._spawn([*run, str(bindir / "postgres"), "-D", str(data)], home, "pg.log")
    d = dm.Daemon("postgres", host, port, proc, home, data / "postmaster.pid", log,
                  stop_signal=signal.SIGINT)  # "fast" shutdown: do not wait for clients
    d.cleanup.append(lambda: shutil.rmtree(home, ignore_errors=True))
    return dm._started(d, lambda: dm.wait_tcp(host, port, timeout=20, proc=proc))


# --- MariaDB --------------------------------------------------------------------------------------

MARIADB_PASSWORD = "a-long-random-test-secret"  # the hardened server's root


def mariadb_datadir(workdir: Path) -> Path:
    """A freshly installed data directory (root@localhost by unix_socket only), made once
    per module and copied per server: installing takes seconds, copying does not."""
    install = dm._need("mariadb-install-db")
    data = workdir / "mariadb-template"
    r = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        capture_output=True, cwd=workdir,
    )
    if r.returncode != 0:
        raise dm.DaemonUnavailable(f"mariadb-install-db failed: {r.stderr[-800:]!r}")
    return data


def start_mariadb(template: Path, workdir: Path, host: str, port: int,
                  *, root_password: str) -> dm.Daemon:
    """mariadbd on host:port with root@'%' reachable over TCP, its password ``root_password``
    ("" is the misconfiguration), set by an init file the server runs at start."""
    mariadbd = dm._need("/usr/sbin/mariadbd")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    shutil.copytree(template, data, symlinks=True)
    init = workdir / "init.sql"
    quoted = root_password.replace("\\", "\\\\").replace("'", "\\'")
    init.write_text(
        f"CREATE OR REPLACE USER 'root'@'%' IDENTIFIED BY '{quoted}';\n"
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
    )
    config = workdir / "my.cnf"
    pid = workdir / "mariadb.pid"
    config.write_text(
        "[mariadbd]\n"
        f"datadir = {data}\nsocket = {workdir}/mysql.sock\nbind-address = {host}\n"
        f"port = {port}\npid-file = {pid}\nuser = root\nskip-name-resolve\n"
        f"init-file = {init}\ninnodb-buffer-pool-size = 16M\nskip-log-bin\n"
        f"log-error = {workdir}/mariadb.err\n"
    )
    proc, _ = dm._spawn([mariadbd, f"--defaults-file={config}"], workdir, "mariadb.out")
    d = dm.Daemon("mariadb", host, port, proc, workdir, pid, workdir / "mariadb.err")
    return dm._started(d, lambda: dm.wait_tcp(host, port, timeout=30, proc=proc))


# --- small faithful servers -----------------------------------------------------------------------

Handler = Callable[[socket.socket], None]


class FakeServer(ThreadedServer):
    """A threaded TCP server on host:port running ``handler`` per connection."""

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        super().__init__(host, port, handler)
        self.handler = handler
        self.requests: list[bytes] = []


# HTTP: a route is (status line, headers, body); the path includes the query string.
Route = tuple[str, tuple[tuple[str, str], ...], bytes]


NOT_FOUND: Route = ("404 Not Found", (("Content-Type", "application/json"),),
                    b'{"message":"page not found"}\n')


def http_handler(routes: Mapping[str, Route], seen: list[bytes],
                 default: Route = NOT_FOUND) -> Handler:
    """Answer one HTTP/1.x request per connection from ``routes`` (``default`` otherwise:
    Docker's own 404, or a soft 200 to play a server that says yes to everything)."""

    def handle(conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 16384:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        seen.append(buf)
        path = buf.split(b" ", 2)[1].decode("latin-1") if buf.count(b" ") >= 2 else "/"
        status, headers, body = routes.get(path, default)
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode("latin-1") + body)

    return handle


def json_body(value: Any, pretty: bool = False) -> bytes:
    return (json.dumps(value, indent=2 if pretty else None,
                       separators=None if pretty else (",", ":")) + "\n").encode()


# MongoDB: real BSON (int32/int64/double/bool/string/document/array) and OP_MSG framing.


def bson(doc: Mapping[str, Any]) -> bytes:
    body = b""
    for key, value in doc.items():
        name = key.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + name + (b"\x01" if value else b"\x00")
        elif isinstance(value, Int64):
            body += b"\x12" + name + struct.pack("<q", int(value))
        elif isinstance(value, int):
            body += b"\x10" + name + struct.pack("<i", value)
        elif isinstance(value, float):
            body += b"\x01" + name + struct.pack("<d", value)
        elif isinstance(value, str):
            raw = value.encode() + b"\0"
            body += b"\x02" + name + struct.pack("<i", len(raw)) + raw
        elif isinstance(value, list):
            body += b"\x04" + name + bson({str(i): v for i, v in enumerate(value)})
        else:
            body += b"\x03" + name + bson(value)
    return struct.pack("<i", len(body) + 5) + body + b"\0"


class Int64(int):
    """An int the BSON encoder writes as int64 (mongod's sizes are "Long")."""


def op_msg_reply(request_id: int, doc: Mapping[str, Any]) -> bytes:
    payload = struct.pack("<I", 0) + b"\x00" + bson(doc)
    return struct.pack("<iiii", 16 + len(payload), 0x1B2C, request_id, 2013) + payload


MONGO_DATABASES = {
    "databases": [
        {"name": "admin", "sizeOnDisk": Int64(40960), "empty": False},
        {"name": "config", "sizeOnDisk": Int64(61440), "empty": False},
        {"name": "customers", "sizeOnDisk": Int64(8192000), "empty": False},
        {"name": "local", "sizeOnDisk": Int64(73728), "empty": False},
    ],
    "totalSize": Int64(8367360),
    "totalSizeMb": Int64(7),
    "ok": 1.0,
}
MONGO_UNAUTHORIZED = {
    "ok": 0.0,
    "errmsg": "command listDatabases requires authentication",
    "code": 13,
    "codeName": "Unauthorized",
}


def mongo_handler(reply_doc: Mapping[str, Any], seen: list[bytes]) -> Handler:
    """Answer each OP_MSG with ``reply_doc`` (as mongod answers listDatabases)."""

    def handle(conn: socket.socket) -> None:
        while True:
            head = conn.recv(16, socket.MSG_WAITALL)
            if len(head) < 16:
                return
            length, request_id, _, opcode = struct.unpack("<iiii", head)
            rest = conn.recv(length - 16, socket.MSG_WAITALL)
            seen.append(head + rest)
            if opcode != 2013:
                return  # mongod 6+ closes on legacy opcodes
            conn.sendall(op_msg_reply(request_id, reply_doc))

    return handle


@contextlib.contextmanager
def fake(host: str, port: int, make: Callable[[list[bytes]], Handler]
         ) -> Iterator[list[bytes]]:
    """Serve ``make(seen)`` on host:port; yields the list of requests the server received."""
    seen: list[bytes] = []
    with FakeServer(host, port, make(seen)):
        yield seen
