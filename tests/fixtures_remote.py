"""Real daemons for the remote-access checks, each misconfigured or hardened on purpose.

Every ``start_*`` writes its own config (and pid file where the daemon has one) into
``workdir``, binds only the given loopback address and returns an ``daemons.Daemon``
(stop it, or use it as a context manager). They raise ``DaemonUnavailable`` when the binary
is missing or the daemon does not come up. Addresses: 127.0.63.0/24.

``workdir`` must be traversable by unprivileged users (vsftpd serves anonymous sessions as
the ftp user): use ``world_readable_dir``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemons import Daemon, DaemonUnavailable, _need, _spawn, _started, wait_tcp

__all__ = [
    "Daemon", "DaemonUnavailable", "start_mosquitto", "start_rsyncd", "start_vsftpd",
    "start_xvnc", "world_readable_dir",
]


@contextmanager
def world_readable_dir() -> Iterator[Path]:
    """A fresh directory (mode 755, outside pytest's 700 tree), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="mamori-remote-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- mosquitto ---------------------------------------------------------------------------------


def start_mosquitto(workdir: Path, host: str, port: int, *, anonymous: bool) -> Daemon:
    """Mosquitto with ``allow_anonymous true``, or ``false`` plus a password file."""
    mosquitto = _need("/usr/sbin/mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    pid = workdir / "mosquitto.pid"
    cfg = workdir / "mosquitto.conf"
    auth = "allow_anonymous true\n"
    if not anonymous:
        passwd = workdir / "passwd"
        subprocess.run([_need("mosquitto_passwd"), "-b", "-c", str(passwd), "sensor",
                        "long-test-password"], check=True, capture_output=True)
        passwd.chmod(0o600)
        auth = f"allow_anonymous false\npassword_file {passwd}\n"
    cfg.write_text(
        f"listener {port} {host}\n{auth}pid_file {pid}\npersistence false\n"
        "log_dest stderr\nuser root\n"
    )
    proc, log = _spawn([mosquitto, "-c", str(cfg)], workdir, "mosquitto.log")
    d = Daemon("mosquitto", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


# --- rsync -------------------------------------------------------------------------------------


def start_rsyncd(workdir: Path, host: str, port: int, *, auth: bool) -> Daemon:
    """rsync --daemon with one module "backup" holding two files and a directory; with
    ``auth`` the module needs ``auth users`` from a secrets file."""
    rsync = _need("rsync")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "backup"
    (data / "photos").mkdir(parents=True, exist_ok=True)
    (data / "passwords.kdbx").write_bytes(b"not really a keepass file\n")
    (data / "notes.txt").write_text("tax return 2024\n")
    pid = workdir / "rsyncd.pid"
    cfg = workdir / "rsyncd.conf"
    module = (f"[backup]\n  path = {data}\n  read only = yes\n  comment = nightly backup\n"
              "  uid = root\n  gid = root\n")
    if auth:
        secrets_file = workdir / "rsyncd.secrets"
        secrets_file.write_text("backup:long-test-password\n")
        secrets_file.chmod(0o600)
        module += f"  auth users = backup\n  secrets file = {secrets_file}\n"
    cfg.write_text(
        f"pid file = {pid}\nuse chroot = no\nreverse lookup = no\n"
        f"log file = {workdir}/rsyncd.log\n{module}"
    )
    proc, log = _spawn(
        [rsync, "--daemon", "--no-detach", f"--config={cfg}", f"--address={host}",
         f"--port={port}"],
        workdir, "rsyncd.out",
    )
    d = Daemon("rsyncd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


# --- vsftpd ------------------------------------------------------------------------------------


def start_vsftpd(
    workdir: Path, host: str, port: int, *, anonymous: bool, upload: bool = False,
    banner: str | None = None,
) -> Daemon:
    """vsftpd with anonymous login on (a root with a file and an "incoming" directory) or
    off (local users only); ``upload`` lets anonymous users store and delete in incoming/;
    ``banner`` replaces its greeting (``ftpd_banner``: "220 <banner>", no product name)."""
    vsftpd = _need("/usr/sbin/vsftpd")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    empty = workdir / "empty"
    empty.mkdir(exist_ok=True)
    empty.chmod(0o555)
    root = workdir / "ftp-root"
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    root.chmod(0o555)  # vsftpd refuses an anonymous root the ftp user can write
    (root / "README.txt").write_text("family photos mirror\n")
    if upload:
        shutil.chown(incoming, "ftp", "ftp")
        incoming.chmod(0o755)
    if anonymous:
        access = (
            f"anonymous_enable=YES\nlocal_enable=NO\nanon_root={root}\nno_anon_password=NO\n"
            f"write_enable={'YES' if upload else 'NO'}\n"
            f"anon_upload_enable={'YES' if upload else 'NO'}\n"
            f"anon_other_write_enable={'YES' if upload else 'NO'}\n"
            "anon_umask=022\nanon_world_readable_only=NO\n"
        )
    else:
        access = "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\n"
    cfg = workdir / "vsftpd.conf"
    cfg.write_text(
        f"listen=YES\nlisten_ipv6=NO\nlisten_address={host}\nlisten_port={port}\n"
        f"background=NO\n{access}pam_service_name=vsftpd\npasv_enable=YES\n"
        f"secure_chroot_dir={empty}\nxferlog_enable=NO\nvsftpd_log_file={workdir}/vsftpd.log\n"
        "seccomp_sandbox=NO\nrun_as_launching_user=NO\n"
        + (f"ftpd_banner={banner}\n" if banner else "")
    )
    proc, log = _spawn([vsftpd, str(cfg)], workdir, "vsftpd.out")
    d = Daemon("vsftpd", host, port, proc, workdir, None, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


# --- TigerVNC ----------------------------------------------------------------------------------


def start_xvnc(workdir: Path, host: str, port: int, display: int, *, password: bool,
               extra: tuple[str, ...] = ()) -> Daemon:
    """TigerVNC's standalone X server (Xvnc) offering security type None, or VncAuth only
    with a password file. No X11 TCP or Unix socket: only the RFB port on ``host``.
    ``extra``: more Xvnc arguments (e.g. its blacklist threshold)."""
    xvnc = _need("/usr/bin/Xvnc")
    workdir.mkdir(parents=True, exist_ok=True)
    if password:
        # Xvnc decrypts whatever 8 bytes the file holds into its password: random bytes
        # make a password nobody knows, without needing vncpasswd.
        pwfile = workdir / "vncpasswd"
        pwfile.write_bytes(secrets.token_bytes(8))
        pwfile.chmod(0o600)
        security = ["-SecurityTypes", "VncAuth", "-PasswordFile", str(pwfile)]
    else:
        security = ["-SecurityTypes", "None"]
    lock = Path(f"/tmp/.X{display}-lock")
    if lock.exists():
        raise DaemonUnavailable(f"display :{display} is in use ({lock})")
    argv = [xvnc, f":{display}", "-interface", host, "-rfbport", str(port), *security,
            "-nolisten", "tcp", "-nolisten", "unix", "-desktop", "mamori-test-desktop",
            "-geometry", "640x480", "-depth", "24", "-NeverShared=0", "-AlwaysShared=1",
            *extra]
    proc, log = _spawn(argv, workdir, "xvnc.log", env={"HOME": str(workdir)})
    d = Daemon("Xvnc", host, port, proc, workdir, None, log)
    d.cleanup.append(lambda: lock.unlink(missing_ok=True) if not _alive(proc.pid) else None)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
