"""Real daemons for the exposure checks of issue 14 (X11, git, LDAP, TFTP, zone transfer,
rsync uploads): Xvfb, git daemon, slapd, tftpd-hpa, named and rsync --daemon, each
misconfigured or hardened on purpose.

Every ``start_*`` writes its own config (and pid file where the daemon has one) into
``workdir``, binds only the given loopback address (Xvfb cannot choose its address: it
listens on every address of the test's loopback-only namespace, on 6000 + display) and
returns a ``daemons.Daemon``. They raise ``DaemonUnavailable`` when the binary is missing or
the daemon does not come up. Addresses: 127.0.83.0/24.

Zone transfers are tested against bind9 only: unbound's auth-zone (for-downstream) answers AXFR
with REFUSED whatever its config (tried with unbound 1.17.1), and nsd is not installed here.
"""

from __future__ import annotations

import os
import secrets
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from daemons import (
    Daemon,
    DaemonUnavailable,
    _need,
    _spawn,
    _started,
    add_lo_alias,
    wait_tcp,
    wait_udp,
)

__all__ = ["start_git_daemon", "start_named_xfr", "start_rsyncd_drop", "start_slapd", "start_tftpd",
           "start_xvfb"]


def _xauth_entry(display: int, cookie: bytes) -> bytes:
    """One Xauthority record (family Wild) for ``display`` with ``cookie``."""
    def field(raw: bytes) -> bytes:
        return struct.pack(">H", len(raw)) + raw
    return (struct.pack(">H", 0xFFFF) + field(b"") + field(str(display).encode())
            + field(b"MIT-MAGIC-COOKIE-1") + field(cookie))


def _drop_stale_x_lock(display: int) -> None:
    """Remove /tmp/.X<display>-lock when the pid it names is no X server (a killed run's
    leftover; Xvfb would refuse the display, also when that pid was reused)."""
    lock = Path(f"/tmp/.X{display}-lock")
    try:
        pid = int(lock.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        comm = ""
    if lock.exists() and comm not in ("Xvfb", "Xorg", "Xvnc"):
        lock.unlink(missing_ok=True)


def start_xvfb(workdir: Path, host: str, display: int, *, open_access: bool) -> Daemon:
    """Xvfb on TCP 6000 + ``display``, with ``-ac`` (no access control) or without it and
    with an auth file holding one random MIT-MAGIC-COOKIE-1 (then only its holders get in;
    with an empty auth file the server would let every local address in)."""
    xvfb = _need("Xvfb")
    workdir.mkdir(parents=True, exist_ok=True)
    auth = workdir / "Xauthority"
    auth.write_bytes(_xauth_entry(display, secrets.token_bytes(16)))
    argv = [xvfb, f":{display}", "-listen", "tcp", "-nolisten", "unix", "-screen", "0",
            "320x200x8", "-auth", str(auth)]
    if open_access:
        argv.append("-ac")
    _drop_stale_x_lock(display)
    proc, log = _spawn(argv, workdir, "xvfb.log")
    d = Daemon("xvfb", host, 6000 + display, proc, workdir, None, log)
    d.cleanup.append(lambda: Path(f"/tmp/.X{display}-lock").unlink(missing_ok=True))
    return _started(d, lambda: wait_tcp(host, 6000 + display, proc=proc))


def start_git_daemon(workdir: Path, host: str, port: int, *, export_all: bool) -> Daemon:
    """git daemon over ``workdir/srv`` holding srv/repo.git (one commit on main); with
    ``export_all`` every repository is served, else none (no git-daemon-export-ok file)."""
    git = _need("git")
    base = workdir / "srv"
    repo = base / "repo.git"
    if not repo.exists():
        src = workdir / "src"
        src.mkdir(parents=True)
        env = ["-c", "user.name=lab", "-c", "user.email=lab@lab.invalid"]
        subprocess.run([git, "init", "-q", "-b", "main", str(src)], check=True)
        (src / "README").write_text("lab repository\n")
        subprocess.run([git, "-C", str(src), "add", "README"], check=True)
        subprocess.run([git, *env, "-C", str(src), "commit", "-q", "-m", "first"], check=True)
        subprocess.run([git, "clone", "-q", "--bare", str(src), str(repo)], check=True)
    pid = workdir / "git-daemon.pid"
    argv = [git, "daemon", "--reuseaddr", f"--listen={host}", f"--port={port}",
            f"--base-path={base}", f"--pid-file={pid}", str(base)]
    if export_all:
        argv.insert(2, "--export-all")
    proc, log = _spawn(argv, workdir, "git-daemon.log")
    d = Daemon("git-daemon", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


LDAP_SUFFIX = "dc=lab84,dc=test"
_LDIF = f"""dn: {LDAP_SUFFIX}
objectClass: dcObject
objectClass: organization
dc: lab84
o: Lab 84

dn: ou=people,{LDAP_SUFFIX}
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,{LDAP_SUFFIX}
objectClass: inetOrgPerson
uid: alice
cn: Alice Example
sn: Example
mail: alice@lab84.test
userPassword: {{SSHA}}bm90LWEtcmVhbC1oYXNoLWF0LWFsbA==
"""


def start_slapd(workdir: Path, host: str, port: int, *, anonymous: bool) -> Daemon:
    """slapd (slapd.conf, mdb) with a three-entry directory, one user with userPassword;
    ``anonymous`` keeps OpenLDAP's default (anonymous may read everything), otherwise
    ``disallow bind_anon`` and an ACL that lets anonymous users only authenticate."""
    slapd = _need("/usr/sbin/slapd")
    slapadd = _need("/usr/sbin/slapadd")
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "db"
    db.mkdir(exist_ok=True)
    pid = workdir / "slapd.pid"
    cfg = workdir / "slapd.conf"
    schema = "".join(f"include /etc/ldap/schema/{s}.schema\n"
                     for s in ("core", "cosine", "nis", "inetorgperson"))
    acl = ("access to * by * read\n" if anonymous else
           "access to attrs=userPassword by self write by anonymous auth by * none\n"
           "access to * by users read by anonymous auth\n")
    cfg.write_text(
        f"{schema}pidfile {pid}\nargsfile {workdir}/slapd.args\n"
        "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        + ("" if anonymous else "disallow bind_anon\n")
        + f'database mdb\nmaxsize 10485760\nsuffix "{LDAP_SUFFIX}"\n'
        f'rootdn "cn=admin,{LDAP_SUFFIX}"\nrootpw long-test-password\n'
        f"directory {db}\n{acl}"
    )
    ldif = workdir / "data.ldif"
    ldif.write_text(_LDIF)
    if not (db / "data.mdb").exists():
        done = subprocess.run([slapadd, "-q", "-f", str(cfg), "-l", str(ldif)],
                              capture_output=True, text=True)
        if done.returncode:
            raise DaemonUnavailable(f"slapadd failed: {done.stderr[-500:]}")
    proc, log = _spawn([slapd, "-d", "0", "-f", str(cfg), "-h", f"ldap://{host}:{port}/"],
                       workdir, "slapd.log")
    d = Daemon("slapd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def _ipv4_anchor() -> Callable[[], None]:
    """tftpd-hpa resolves its -a address with AI_ADDRCONFIG, which ignores loopback: in the
    loopback-only test namespace it finds no IPv4 address and exits 66. Give the namespace one
    non-loopback address (198.18.83.1/32, benchmark range, on a veth whose peer stays down:
    no route leads anywhere); returns undo. Needs root."""
    if os.geteuid() != 0:
        raise DaemonUnavailable("tftpd-hpa in a loopback-only namespace needs root (veth)")
    have = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                          text=True).stdout
    if any(" lo " not in f" {line.split()[1]} " for line in have.splitlines() if line.split()):
        return lambda: None
    subprocess.run(["ip", "link", "add", "m83a", "type", "veth", "peer", "name", "m83b"],
                   check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", "198.18.83.1/32", "dev", "m83a"], check=True)
    subprocess.run(["ip", "link", "set", "m83a", "up"], check=True)
    return lambda: subprocess.run(["ip", "link", "del", "m83a"], check=False,
                                  capture_output=True) and None


def start_tftpd(workdir: Path, host: str, port: int, *, files: dict[str, bytes]) -> Daemon:
    """tftpd-hpa in the foreground serving ``workdir/tftp`` (read-only, chrooted, as nobody)
    with ``files`` in it (names may hold one directory level)."""
    tftpd = _need("/usr/sbin/in.tftpd")
    root = workdir / "tftp"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_bytes(data)
        path.chmod(0o644)
    pid = workdir / "tftpd.pid"
    undo = _ipv4_anchor()
    proc, log = _spawn([tftpd, "-L", "-a", f"{host}:{port}", "-u", "nobody", "-P", str(pid),
                        "-s", str(root)], workdir, "tftpd.log")
    d = Daemon("tftpd", host, port, proc, workdir, pid, log, cleanup=[undo])
    return _started(d, lambda: wait_udp(host, port, proc=proc))


RSYNC_DROP_FILES = {"keep.txt": b"someone's file\n", "sub/inner.txt": b"nested\n",
                    ".hidden": b"dot file\n"}


def start_rsyncd_drop(workdir: Path, host: str, port: int, *, writable: bool,
                      extra: str = "") -> Daemon:
    """rsync --daemon with a module "drop" (``read only = no`` when ``writable``, else yes)
    holding RSYNC_DROP_FILES, a read-only module "pub" listed first, then ``extra`` (more
    module sections, verbatim)."""
    rsync = _need("rsync")
    for sub in ("drop", "pub"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    for rel, body in RSYNC_DROP_FILES.items():
        (workdir / "drop" / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "drop" / rel).write_bytes(body)
    pid = workdir / "rsyncd.pid"
    cfg = workdir / "rsyncd.conf"
    cfg.write_text(
        f"pid file = {pid}\nuse chroot = no\nreverse lookup = no\n"
        f"log file = {workdir}/rsyncd.log\n"
        f"[pub]\n  path = {workdir}/pub\n  read only = yes\n  uid = root\n  gid = root\n"
        f"[drop]\n  path = {workdir}/drop\n  read only = {'no' if writable else 'yes'}\n"
        "  uid = root\n  gid = root\n" + extra)
    proc, log = _spawn([rsync, "--daemon", "--no-detach", f"--config={cfg}",
                        f"--address={host}", f"--port={port}"], workdir, "rsyncd.out")
    d = Daemon("rsyncd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


XFR_ZONE = "lab84.test"


def start_named_xfr(workdir: Path, host: str, port: int, *, transfer: str) -> Daemon:
    """named, authoritative only, for lab84.test and the reverse zone of ``host`` (whose PTR
    names ns1.lab84.test), with ``allow-transfer { <transfer>; }`` on both ("any" / "none")."""
    named = _need("/usr/sbin/named")
    workdir.mkdir(parents=True, exist_ok=True)
    undo = add_lo_alias(host)
    octets = host.split(".")
    rev_zone = ".".join(reversed(octets[:3])) + ".in-addr.arpa"
    soa = ("$TTL 300\n@ IN SOA ns1.lab84.test. hostmaster.lab84.test. 1 3600 600 86400 300\n"
           "@ IN NS ns1.lab84.test.\n")
    (workdir / "lab84.zone").write_text(
        soa + f"ns1 IN A {host}\nwww IN A 127.0.83.200\nvpn IN A 127.0.83.201\n"
        "mail IN A 127.0.83.202\n@ IN MX 10 mail\n")
    (workdir / "rev.zone").write_text(soa + f"{octets[3]} IN PTR ns1.lab84.test.\n")
    pid = workdir / "named.pid"
    cfg = workdir / "named.conf"
    cfg.write_text(
        "options {\n"
        f'  directory "{workdir}";\n  pid-file "{pid}";\n'
        f'  session-keyfile "{workdir}/session.key";\n'
        f'  managed-keys-directory "{workdir}";\n'
        f"  listen-on port {port} {{ {host}; }};\n  listen-on-v6 {{ none; }};\n"
        "  recursion no;\n  dnssec-validation no;\n  notify no;\n  version none;\n"
        f"  allow-transfer {{ {transfer}; }};\n"
        "};\ncontrols { };\n"
        f'zone "{XFR_ZONE}" {{ type primary; file "lab84.zone"; }};\n'
        f'zone "{rev_zone}" {{ type primary; file "rev.zone"; }};\n'
    )
    proc, log = _spawn([named, "-g", "-4", "-n", "1", "-c", str(cfg)], workdir, "named.log")
    d = Daemon("named", host, port, proc, workdir, pid, log, cleanup=[undo])
    return _started(d, lambda: wait_tcp(host, port, proc=proc))
