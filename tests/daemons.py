"""The one way a test starts a real Debian daemon.

Every ``start_*`` function (here and in the ``fixtures_*.py`` modules, which build on
``_need``/``_spawn``/``_started``) writes the daemon's config into ``workdir``, starts it bound to
the given loopback ``host``/``port`` only, waits (bounded) until it accepts (TCP) or has bound
(UDP) and returns a ``Daemon``; ``Daemon.stop()`` ends it (SIGTERM to it and its process group,
SIGKILL after a bound, reaped) and undoes what start did (lo aliases, helpers it forked). They
raise ``DaemonUnavailable`` when the binary is missing or the daemon does not come up.

Tests never catch that themselves; they use the factory, which skips the test with the reason:

    with running(start_redis, tmp_path, HOST, 16390) as redis: ...        # in a test
    yield from daemon_fixture(lambda: start_redis(tmp_path, HOST, 16390))  # in a fixture
    with running_all({"weak": lambda: ..., "hardened": lambda: ...}) as ds: ...  # several

Addresses: 127.0.20.0/24 for daemons, 127.0.21.0/24 for hostile servers (see tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


class DaemonUnavailable(RuntimeError):
    """The daemon is not installed here or did not start; the message says why."""


@dataclass
class Daemon:
    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    pidfile: Path | None = None
    log: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)  # extra named ports (imap, pop3, https)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    stop_signal: int = signal.SIGTERM

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 5 s) and undo what start did."""
        pids = {self.proc.pid}
        if self.pidfile is not None and self.pidfile.exists():
            with contextlib.suppress(ValueError, OSError):
                pids.add(int(self.pidfile.read_text().split()[0]))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, self.stop_signal)
        # The daemon runs in its own session: its workers get the signal too, so masters
        # that wait for their children (dovecot) do not wait long.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=5)
        for undo in reversed(self.cleanup):
            undo()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _need(binary: str) -> str:
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if path is None:
        raise DaemonUnavailable(
            f"{Path(binary).name} not installed: run scripts/install-test-deps"
        )
    return path


def wait_tcp(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until host:port accepts a TCP connection; raise DaemonUnavailable on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise DaemonUnavailable(
                f"daemon exited with {proc.returncode} before {host}:{port} opened"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise DaemonUnavailable(f"{host}:{port} did not accept within {timeout}s")


def _udp_bound(host: str, port: int) -> bool:
    want_port = f"{port:04X}"
    want_addr = "".join(f"{int(o):02X}" for o in reversed(host.split(".")))
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        local = line.split()[1]
        addr, _, p = local.partition(":")
        if p == want_port and addr in (want_addr, "00000000"):
            return True
    return False


def wait_udp(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something has bound UDP host:port (read from /proc/net/udp)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise DaemonUnavailable(
                f"daemon exited with {proc.returncode} before udp {host}:{port}"
            )
        if _udp_bound(host, port):
            return
        time.sleep(0.05)
    raise DaemonUnavailable(f"udp {host}:{port} not bound within {timeout}s")


def _spawn(
    argv: Sequence[str], workdir: Path, log_name: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / log_name
    out = open(log, "wb")  # handed to the child
    proc = subprocess.Popen(
        list(argv),
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    out.close()
    return proc, log


def _started(daemon: Daemon, wait: Callable[[], None]) -> Daemon:
    try:
        wait()
    except DaemonUnavailable as exc:
        daemon.stop()
        tail = (
            daemon.log.read_text(errors="replace")[-1500:]
            if daemon.log and daemon.log.exists()
            else ""
        )
        raise DaemonUnavailable(f"{daemon.name}: {exc}\n{tail}") from None
    return daemon


def add_lo_alias(host: str) -> Callable[[], None]:
    """Add host/32 on lo (daemons that bind only interface addresses need it); returns undo."""
    if os.geteuid() != 0:
        raise DaemonUnavailable("adding a loopback alias needs root")
    have = subprocess.run(
        ["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True
    ).stdout
    if f" {host}/32 " in have:
        return lambda: None
    subprocess.run(["ip", "addr", "add", f"{host}/32", "dev", "lo"], check=True)
    return lambda: subprocess.run(["ip", "addr", "del", f"{host}/32", "dev", "lo"], check=False)


# --- daemons ----------------------------------------------------------------------------------


def start_sshd(workdir: Path, host: str, port: int) -> Daemon:
    sshd = _need("/usr/sbin/sshd")
    key = workdir / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    pid = workdir / "sshd.pid"
    cfg = workdir / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress {host}:{port}\nHostKey {key}\nPidFile {pid}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin no\nAuthorizedKeysFile none\n"
    )
    proc, log = _spawn([sshd, "-D", "-e", "-f", str(cfg)], workdir, "sshd.log")
    d = Daemon("sshd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_vsftpd(workdir: Path, host: str, port: int) -> Daemon:
    vsftpd = _need("/usr/sbin/vsftpd")
    empty = workdir / "empty"
    empty.mkdir(exist_ok=True)
    cfg = workdir / "vsftpd.conf"
    cfg.write_text(
        f"listen=YES\nlisten_ipv6=NO\nlisten_address={host}\nlisten_port={port}\nbackground=NO\n"
        "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\npam_service_name=vsftpd\n"
        f"secure_chroot_dir={empty}\nxferlog_enable=NO\nvsftpd_log_file={workdir}/vsftpd.log\n"
        "seccomp_sandbox=NO\nrun_as_launching_user=NO\n"
    )
    os.chmod(empty, 0o555)
    proc, log = _spawn([vsftpd, str(cfg)], workdir, "vsftpd.out")
    d = Daemon("vsftpd", host, port, proc, workdir, None, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_postfix(
    workdir: Path, host: str, port: int, submission_port: int | None = None,
    banner: str = "$myhostname ESMTP $mail_name (Debian/GNU)",
) -> Daemon:
    """Postfix's master in the foreground (``postfix start-fg``) with its own config,
    queue and data directories; smtpd on host:port (and submission on host:submission_port);
    ``banner`` is its ``smtpd_banner``."""
    postfix = _need("/usr/sbin/postfix")
    # Postfix's unprivileged processes must traverse to their queue and data directories,
    # and pytest's tmp_path is root-only: use a world-traversable directory of our own.
    home = Path(tempfile.mkdtemp(prefix="mamori-postfix-"))
    home.chmod(0o755)
    conf = home / "etc"
    conf.mkdir(exist_ok=True)
    queue = home / "queue"
    data = home / "data"
    for d in (queue, data):
        d.mkdir(exist_ok=True)
    shutil.chown(data, "postfix", "postfix")
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = mamori-test.localdomain\nmydomain = localdomain\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        f"smtpd_banner = {banner}\n"
        "mydestination =\nlocal_transport = error:local delivery disabled\n"
        "alias_maps =\nalias_database =\nbiff = no\n"
        "smtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\n"
        f"maillog_file = {home}/postfix.log\nmaillog_file_prefixes = {home}\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "mynetworks = 127.0.0.0/8\n"
    )
    master = f"{host}:{port} inet n - n - - smtpd\n"
    if submission_port:
        master += (
            f"{host}:{submission_port} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n"
        )
    master += (
        "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n"
        "qmgr unix n - n 300 1 qmgr\ntlsmgr unix - - n 1000? 1 tlsmgr\n"
        "rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\n"
        "defer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n"
        "verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\n"
        "proxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\n"
        "relay unix - - n - - smtp\nshowq unix n - n - - showq\nerror unix - - n - - error\n"
        "retry unix - - n - - error\ndiscard unix - - n - - discard\n"
        "local unix - n n - - local\nvirtual unix - n n - - virtual\n"
        "lmtp unix - - n - - lmtp\nanvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\n"
        "postlog unix-dgram n - n - 1 postlogd\n"
    )
    (conf / "master.cf").write_text(master)
    env = {"MAIL_CONFIG": str(conf)}
    subprocess.run(
        [postfix, "-c", str(conf), "set-permissions"],
        capture_output=True,
        env={**os.environ, **env},
        check=False,
    )
    proc, log = _spawn([postfix, "-c", str(conf), "start-fg"], workdir, "postfix.out", env)
    pid = queue / "pid" / "master.pid"
    d = Daemon("postfix", host, port, proc, workdir, pid, log)
    if submission_port:
        d.ports["submission"] = submission_port

    def stop_postfix() -> None:
        subprocess.run([postfix, "-c", str(conf), "stop"], capture_output=True, check=False)

    d.cleanup.append(stop_postfix)
    d.cleanup.insert(0, lambda: shutil.rmtree(home, ignore_errors=True))
    return _started(d, lambda: wait_tcp(host, port, timeout=15, proc=proc))


def start_dovecot(
    workdir: Path, host: str, imap_port: int, pop3_port: int, greeting: str | None = None
) -> Daemon:
    """Dovecot with IMAP and POP3 on host (no TLS); ``greeting`` is its ``login_greeting``."""
    dovecot = _need("/usr/sbin/dovecot")
    base = workdir / "dovecot-run"
    state = workdir / "dovecot-state"
    for d in (base, state):
        d.mkdir(exist_ok=True)
    cfg = workdir / "dovecot.conf"
    cfg.write_text(
        f"base_dir = {base}\nstate_dir = {state}\nprotocols = imap pop3\nlisten = {host}\n"
        f"log_path = {workdir}/dovecot.log\nssl = no\ndisable_plaintext_auth = yes\n"
        "auth_mechanisms = plain\n"
        + (f"login_greeting = {greeting}\n" if greeting else "")
        # No stats service here: login processes would wait 5 s for it when stopping.
        + "stats_writer_socket_path =\n"
        "passdb {\n  driver = static\n  args = password=never-used-" + os.urandom(8).hex() + "\n}\n"
        "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
        "service imap-login {\n"
        f"  inet_listener imap {{\n    address = {host}\n    port = {imap_port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n}\n"
        "service pop3-login {\n"
        f"  inet_listener pop3 {{\n    address = {host}\n    port = {pop3_port}\n  }}\n"
        "  inet_listener pop3s {\n    port = 0\n  }\n}\n"
        "service submission-login {\n  inet_listener submission {\n    port = 0\n  }\n}\n"
        "service lmtp {\n  unix_listener lmtp {\n    mode = 0600\n  }\n}\n"
    )
    proc, log = _spawn([dovecot, "-F", "-c", str(cfg)], workdir, "dovecot.out")
    d = Daemon(
        "dovecot",
        host,
        imap_port,
        proc,
        workdir,
        base / "master.pid",
        log,
        ports={"imap": imap_port, "pop3": pop3_port},
        # On SIGTERM its login processes wait 5 s for a stats handshake; nothing here needs
        # a clean shutdown (state lives in workdir), so end the whole group at once.
        stop_signal=signal.SIGKILL,
    )
    return _started(
        d,
        lambda: (
            (wait_tcp(host, imap_port, proc=proc), wait_tcp(host, pop3_port, proc=proc)) and None
        ),
    )


def start_redis(workdir: Path, host: str, port: int, password: str | None = None) -> Daemon:
    redis = _need("redis-server")
    pid = workdir / "redis.pid"
    argv = [
        redis,
        "--bind",
        host,
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(workdir),
        "--pidfile",
        str(pid),
        "--protected-mode",
        "yes",
    ]
    if password:
        argv += ["--requirepass", password]
    proc, log = _spawn(argv, workdir, "redis.log")
    d = Daemon("redis", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_memcached(workdir: Path, host: str, port: int, udp: bool = False) -> Daemon:
    memcached = _need("memcached")
    pid = workdir / "memcached.pid"
    argv = [
        memcached,
        "-u",
        "nobody",
        "-l",
        host,
        "-p",
        str(port),
        "-U",
        str(port if udp else 0),
        "-P",
        str(pid),
        "-m",
        "16",
    ]
    proc, log = _spawn(argv, workdir, "memcached.log")
    d = Daemon("memcached", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def make_cert(workdir: Path, cn: str = "mamori.test") -> tuple[Path, Path]:
    """A self-signed certificate and key (openssl) in workdir; returns (cert, key)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={cn}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    return cert, key


def start_nginx(workdir: Path, host: str, http_port: int, https_port: int | None = None,
                also_v6: bool = False) -> Daemon:
    """nginx on host:http_port (and TLS on https_port); ``also_v6``: on [::]:http_port too
    (a v6-only socket beside the IPv4 one, as Debian's default site does)."""
    nginx = _need("/usr/sbin/nginx")
    pid = workdir / "nginx.pid"
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    tls = ""
    if https_port:
        cert, key = make_cert(workdir)
        tls = (
            f"  server {{\n    listen {host}:{https_port} ssl;\n    ssl_certificate {cert};\n"
            f"    ssl_certificate_key {key};\n"
            '    location / { return 200 "hello tls\\n"; }\n  }\n'
        )
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n"
        f"error_log {workdir}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
        f"  server {{\n    listen {host}:{http_port};\n"
        + (f"    listen [::]:{http_port};\n" if also_v6 else "")
        + '    location / { return 200 "hello\\n"; }\n  }\n' + tls + "}\n"
    )
    proc, log = _spawn(
        [nginx, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(cfg)],
        workdir,
        "nginx.out",
    )
    d = Daemon("nginx", host, http_port, proc, workdir, pid, log)
    if https_port:
        d.ports["https"] = https_port
    return _started(
        d,
        lambda: (
            (
                wait_tcp(host, http_port, proc=proc),
                https_port and wait_tcp(host, https_port, proc=proc),
            )
            and None
        ),
    )


def start_unbound(workdir: Path, host: str, port: int) -> Daemon:
    unbound = _need("/usr/sbin/unbound")
    pid = workdir / "unbound.pid"
    cfg = workdir / "unbound.conf"
    cfg.write_text(
        "server:\n"
        f'  interface: {host}@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: ""\n'
        f'  username: ""\n  directory: "{workdir}"\n  pidfile: "{pid}"\n'
        '  use-syslog: no\n  logfile: ""\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n'
        '  module-config: "iterator"\n  hide-version: no\n  hide-identity: yes\n'
        "  num-threads: 1\n  outgoing-range: 16\n  do-not-query-localhost: no\n"
        # Never the Internet: every name is "delegated" to a loopback address where nothing
        # answers, so a recursive query (an open-resolver check) fails here, on this machine.
        "  outgoing-interface: 127.0.0.1\n"
        'stub-zone:\n  name: "."\n  stub-addr: 127.0.20.254@53\n'
        "remote-control:\n  control-enable: no\n"
    )
    proc, log = _spawn([unbound, "-d", "-c", str(cfg)], workdir, "unbound.log")
    d = Daemon("unbound", host, port, proc, workdir, pid, log)
    return _started(
        d, lambda: (wait_tcp(host, port, proc=proc), wait_udp(host, port, proc=proc)) and None
    )


def start_mosquitto(workdir: Path, host: str, port: int) -> Daemon:
    mosquitto = _need("/usr/sbin/mosquitto")
    pid = workdir / "mosquitto.pid"
    cfg = workdir / "mosquitto.conf"
    cfg.write_text(
        f"listener {port} {host}\nallow_anonymous true\npid_file {pid}\n"
        "persistence false\nlog_dest stderr\nuser root\n"
    )
    proc, log = _spawn([mosquitto, "-c", str(cfg)], workdir, "mosquitto.log")
    d = Daemon("mosquitto", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_rsyncd(workdir: Path, host: str, port: int) -> Daemon:
    rsync = _need("rsync")
    pub = workdir / "rsync-pub"
    pub.mkdir(exist_ok=True)
    pid = workdir / "rsyncd.pid"
    cfg = workdir / "rsyncd.conf"
    cfg.write_text(
        f"pid file = {pid}\nuse chroot = no\nreverse lookup = no\nlog file = {workdir}/rsyncd.log\n"
        f"[pub]\n  path = {pub}\n  read only = yes\n  comment = test module\n"
    )
    proc, log = _spawn(
        [
            rsync,
            "--daemon",
            "--no-detach",
            f"--config={cfg}",
            f"--address={host}",
            f"--port={port}",
        ],
        workdir,
        "rsyncd.out",
    )
    d = Daemon("rsyncd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_snmpd(workdir: Path, host: str, port: int, community: str = "public") -> Daemon:
    snmpd = _need("/usr/sbin/snmpd")
    pid = workdir / "snmpd.pid"
    cfg = workdir / "snmpd.conf"
    cfg.write_text(
        f"rocommunity {community} 127.0.0.0/8\nsysLocation mamori test\n"
        "sysContact nobody@localhost\n"
    )
    persist = workdir / "snmp-persist"
    persist.mkdir(exist_ok=True)
    proc, log = _spawn(
        [
            snmpd,
            "-f",
            "-Lo",
            "-I",
            "-smux",
            "-C",
            "-c",
            str(cfg),
            "-p",
            str(pid),
            f"udp:{host}:{port}",
        ],
        workdir,
        "snmpd.log",
        env={"SNMP_PERSISTENT_DIR": str(persist), "MIBS": ""},
    )
    d = Daemon("snmpd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_udp(host, port, proc=proc))


def start_ntpd(workdir: Path, host: str) -> Daemon:
    """ntpsec's ntpd on host:123 only (ntpd cannot change its port); adds host/32 on lo."""
    ntpd = _need("/usr/sbin/ntpd")
    undo = add_lo_alias(host)
    pid = workdir / "ntpd.pid"
    cfg = workdir / "ntp.conf"
    cfg.write_text(
        "interface ignore all\n"
        f"interface listen {host}\n"
        # Without these ntpd still binds 0.0.0.0:123 and [::]:123 (the last match rules).
        "interface ignore wildcard\ninterface ignore ipv6\n"
        f"driftfile {workdir}/ntp.drift\n"
        "restrict default kod nomodify nopeer noquery limited\n"
        "restrict 127.0.0.0 mask 255.0.0.0\n"
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n"
    )
    proc, log = _spawn(
        [ntpd, "-n", "-c", str(cfg), "-p", str(pid), "-u", "root"], workdir, "ntpd.log"
    )
    d = Daemon("ntpd", host, 123, proc, workdir, pid, log, cleanup=[undo])
    return _started(d, lambda: wait_udp(host, 123, proc=proc))


def start_mariadb(workdir: Path, host: str, port: int) -> Daemon:
    mariadbd = _need("/usr/sbin/mariadbd")
    install = _need("mariadb-install-db")
    data = workdir / "mariadb-data"
    if not data.exists():
        r = subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            capture_output=True,
            cwd=workdir,
        )
        if r.returncode != 0:
            raise DaemonUnavailable(f"mariadb-install-db failed: {r.stderr[-800:]!r}")
    pid = workdir / "mariadb.pid"
    proc, _log = _spawn(
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={workdir}/mysql.sock",
            f"--bind-address={host}",
            f"--port={port}",
            f"--pid-file={pid}",
            "--user=root",
            "--skip-name-resolve",
            "--skip-grant-tables",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
            f"--log-error={workdir}/mariadb.err",
        ],
        workdir,
        "mariadb.out",
    )
    d = Daemon("mariadb", host, port, proc, workdir, pid, workdir / "mariadb.err")
    return _started(d, lambda: wait_tcp(host, port, timeout=30, proc=proc))


def start_postgres(workdir: Path, host: str, port: int) -> Daemon:
    """initdb + postgres as the postgres user, in a directory that user owns.

    pytest's tmp_path is root-only, so the cluster lives in a private mkdtemp directory.
    """
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not bins:
        raise DaemonUnavailable("postgresql not installed")
    bindir = bins[-1].parent
    home = Path(tempfile.mkdtemp(prefix="mamori-pg-"))
    shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    run = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    r = subprocess.run(
        [
            *run,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        capture_output=True,
    )
    if r.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise DaemonUnavailable(f"initdb failed: {r.stderr[-800:]!r}")
    # Reject the probe's role so the reply is an ErrorResponse, as on a real server.
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\nhost all postgres 127.0.0.0/8 trust\n"
    )
    proc, log = _spawn(
        [
            *run,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(home),
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            "logging_collector=off",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=8MB",
        ],
        workdir,
        "postgres.log",
    )
    d = Daemon(
        "postgres",
        host,
        port,
        proc,
        workdir,
        data / "postmaster.pid",
        log,
        stop_signal=signal.SIGINT,
    )  # "fast" shutdown: do not wait for clients
    d.cleanup.append(lambda: shutil.rmtree(home, ignore_errors=True))
    return _started(d, lambda: wait_tcp(host, port, timeout=20, proc=proc))


def pg_bindir() -> Path | None:
    """Directory holding initdb, postgres and pg_ctl, or None when not installed."""
    for cand in (shutil.which("initdb"), "/usr/lib/postgresql/15/bin/initdb"):
        if cand and Path(cand).exists():
            bindir = Path(cand).resolve().parent
            if all((bindir / b).exists() for b in ("postgres", "pg_ctl")):
                return bindir
    return None


def start_postgres_store(host: str, port: int, max_connections: int = 20) -> Daemon:
    """A throw-away PostgreSQL for mamori's store: role ``mamori`` with trust auth, answering
    on ``host``:``port`` (waited for by logging in); its URL without a database name is
    ``postgresql+psycopg://mamori@host:port``. As root it runs as the ``postgres`` user (it
    refuses root). Stopped "immediate" (SIGQUIT): a test server keeps nothing."""
    bindir = pg_bindir()
    if bindir is None:
        raise DaemonUnavailable(
            "PostgreSQL server (initdb, postgres, pg_ctl) not installed: run "
            "scripts/install-test-deps"
        )
    # Not tmp_path: pytest's base dir is 0700 root-only, and the socket path must stay short.
    base = Path(tempfile.mkdtemp(prefix="mamori-pg-"))
    datadir = base / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    initdb = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(datadir), "-U", "mamori", "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        capture_output=True, timeout=120, check=False,
    )
    if initdb.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise DaemonUnavailable(f"initdb failed: {initdb.stderr[-800:]!r}")
    proc, log = _spawn(
        [*prefix, str(bindir / "postgres"), "-D", str(datadir), "-k", str(base), "-h", host,
         "-p", str(port), "-F", "-c", f"max_connections={max_connections}",
         "-c", "shared_buffers=16MB"],
        base, "server.log",
    )
    d = Daemon("postgres", host, port, proc, base, datadir / "postmaster.pid", log,
               stop_signal=signal.SIGQUIT)
    d.cleanup.append(lambda: shutil.rmtree(base, ignore_errors=True))
    return _started(d, lambda: _wait_postgres_login(host, port, proc))


def _wait_postgres_login(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    import psycopg

    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise DaemonUnavailable(f"postgres exited with {proc.returncode}")
        try:
            psycopg.connect(
                host=host, port=port, user="mamori", dbname="postgres", connect_timeout=2
            ).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise DaemonUnavailable(f"postgres did not let mamori in within {timeout}s")
            time.sleep(0.1)


def start_smbd(workdir: Path, host: str, port: int, extra: str = "") -> Daemon:
    """smbd on host:port with a read-only [share]; ``extra`` lines go into [global] (e.g.
    ``log level = 1 auth_audit:3``); it logs to smbd.out in ``workdir``."""
    smbd = _need("/usr/sbin/smbd")
    undo = add_lo_alias(host)
    dirs = {
        k: workdir / f"samba-{k}"
        for k in ("lock", "state", "cache", "pid", "private", "share", "ncalrpc")
    }
    for p in dirs.values():
        p.mkdir(exist_ok=True)
    cfg = workdir / "smb.conf"
    cfg.write_text(
        "[global]\n  workgroup = MAMORI\n  server role = standalone server\n"
        f"  interfaces = {host}/32\n  bind interfaces only = yes\n  smb ports = {port}\n"
        f"  lock directory = {dirs['lock']}\n  state directory = {dirs['state']}\n"
        f"  cache directory = {dirs['cache']}\n  pid directory = {dirs['pid']}\n"
        f"  private dir = {dirs['private']}\n  ncalrpc dir = {dirs['ncalrpc']}\n"
        f"  log file = {workdir}/smbd.log\n  disable netbios = yes\n  load printers = no\n"
        "  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n"
        "  server services = -nbt\n" + extra
        + f"[share]\n  path = {dirs['share']}\n  read only = yes\n  guest ok = no\n"
    )
    proc, log = _spawn(
        [smbd, "-F", "--no-process-group", "--debug-stdout", "-s", str(cfg)], workdir, "smbd.out"
    )
    d = Daemon(
        "smbd", host, port, proc, workdir, dirs["pid"] / "smbd.pid", log,
        cleanup=[undo, lambda: kill_by_config(cfg)],
    )
    return _started(d, lambda: wait_tcp(host, port, timeout=15, proc=proc))


def kill_by_config(cfg: Path) -> None:
    """Kill what a daemon started on its own and left behind (samba-dcerpcd and its rpcd_*
    workers detach from smbd): every process whose command line names ``cfg``."""
    import psutil

    needle = str(cfg)
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(needle in part for part in p.info["cmdline"] or ()):
                p.kill()


_TELNET_WRAPPER = r"""
import os, signal, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies: we never wait for sessions
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port))
srv.listen(16)
while True:
    conn, _ = srv.accept()
    if os.fork() == 0:
        srv.close()
        fd = conn.fileno()
        os.dup2(fd, 0); os.dup2(fd, 1); os.dup2(fd, 2)
        os.execv("/usr/sbin/telnetd", ["telnetd"])
    conn.close()
"""


def start_caddy(workdir: Path, host: str, port: int, access_log: Path) -> Daemon:
    """Caddy (Debian's) on http://host:port answering 404 "nothing here" to everything and
    writing its JSON access log to ``access_log``; no admin endpoint, no automatic HTTPS, its
    data and config dirs under ``workdir``."""
    caddy = _need("/usr/bin/caddy")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "Caddyfile"
    cfg.write_text(
        "{\n  admin off\n  auto_https off\n}\n"
        f"http://{host}:{port} {{\n  bind {host}\n"
        f"  log {{\n    output file {access_log}\n    format json\n  }}\n"
        '  respond "nothing here" 404\n}\n')
    env = {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CONFIG_HOME": str(workdir / "config")}
    proc, log = _spawn([caddy, "run", "--config", str(cfg), "--adapter", "caddyfile"],
                       workdir, "caddy.out", env)
    d = Daemon("caddy", host, port, proc, workdir, None, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_telnetd(workdir: Path, host: str, port: int) -> Daemon:
    """inetutils telnetd run inetd-style by a tiny Python acceptor."""
    _need("/usr/sbin/telnetd")
    script = workdir / "telnet_wrapper.py"
    script.write_text(_TELNET_WRAPPER)
    proc, log = _spawn([sys.executable, str(script), host, str(port)], workdir, "telnetd.log")
    d = Daemon("telnetd", host, port, proc, workdir, None, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


# --- the factory: start or skip, stop after --------------------------------------------------


def start_or_skip(start: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``start(*args, **kwargs)``; skip the calling test with the reason when the daemon is
    not installed or does not come up (or, for a preparation step such as a database
    template, cannot be made). The caller stops the daemon."""
    try:
        return start(*args, **kwargs)
    except DaemonUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def running(start: Callable[..., Daemon], *args: object, **kwargs: object) -> Iterator[Daemon]:
    """A daemon for the ``with`` block: started by ``start(*args, **kwargs)`` (the test is
    skipped with the reason when it cannot run), stopped and reaped on exit."""
    daemon = start_or_skip(start, *args, **kwargs)
    try:
        yield daemon
    finally:
        daemon.stop()


@contextlib.contextmanager
def running_all(starts: Mapping[str, Callable[[], Daemon]]) -> Iterator[dict[str, Daemon]]:
    """Several daemons by name, started in order; when one cannot run, those already started
    are stopped and the test is skipped with the reason. All are stopped on exit."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(running(start)) for name, start in starts.items()}


class Lab(dict[str, Daemon]):
    """The daemons of ``running_lab`` that run, by name; ``failed`` says why the others did not."""

    def __init__(self, started: dict[str, Daemon], failed: dict[str, str]) -> None:
        super().__init__(started)
        self.failed = failed

    def need(self, *names: str) -> None:
        """Skip the calling test unless every named daemon runs."""
        for name in names:
            if name not in self:
                pytest.skip(f"{name}: {self.failed.get(name, 'not started')}")


@contextlib.contextmanager
def running_lab(
    starts: Mapping[str, Callable[[], Daemon]],
    errors: tuple[type[Exception], ...] = (DaemonUnavailable,),
) -> Iterator[Lab]:
    """Every daemon that can run, started in order, for a module of tests that each need a few:
    one that cannot (``errors``) is recorded in ``Lab.failed`` instead of skipping them all;
    the tests call ``lab.need(name)``. All are stopped on exit."""
    with contextlib.ExitStack() as stack:
        started: dict[str, Daemon] = {}
        failed: dict[str, str] = {}
        for name, start in starts.items():
            try:
                daemon = start()
            except errors as exc:
                failed[name] = str(exc)
                continue
            stack.callback(daemon.stop)
            started[name] = daemon
        yield Lab(started, failed)


def daemon_fixture(start: Callable[[], Daemon]) -> Iterator[Daemon]:
    """``yield from daemon_fixture(lambda: start_x(...))`` in a pytest fixture: the daemon for
    the fixture's scope, or the tests skipped with the reason."""
    with running(start) as daemon:
        yield daemon


def listeners_on_wildcard(pids: Sequence[int]) -> list[str]:
    """Lines of ``ss -lntupH`` where one of ``pids`` listens on 0.0.0.0, [::] or *."""
    out = subprocess.run(["ss", "-lntupH"], capture_output=True, text=True).stdout
    bad = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        local = cols[4]
        if not (local.startswith(("0.0.0.0:", "[::]:", "*:"))):
            continue
        if any(f"pid={p}," in line for p in pids):
            bad.append(line)
    return bad
