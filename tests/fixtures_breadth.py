"""Real daemons for the printing and discovery checks of issue #14, vulnerable or hardened.

Every ``start_*`` writes its own config into ``workdir``, binds only the given loopback
address (127.0.85.0/24 in the tests) and returns a ``daemons.Daemon``; they raise
``DaemonUnavailable`` when the binary is missing or the daemon does not come up.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from daemons import Daemon, DaemonUnavailable, _need, _spawn, _started, wait_tcp
from mamori.protocols import sunrpc

__all__ = ["register_rpc_program", "start_cupsd", "start_proftpd", "start_rpcbind"]

PROFTPD = "/opt/mamori-test/proftpd/usr/sbin/proftpd"  # unpacked by scripts/install-test-deps

RPCBIND_PORT = 111


def start_rpcbind(workdir: Path, host: str, *, wrapped: bool) -> Daemon:
    """Debian's rpcbind in the foreground on host:111 (TCP from a socket handed over by
    systemd-socket-activate, UDP with ``-h host``), in its own mount namespace with a private
    /run (its socket, lock and warm-start files are machine-wide otherwise).

    ``wrapped``: the hardened twin. rpcbind is built with TCP wrappers; a private
    /etc/hosts.deny saying ``rpcbind: ALL`` (bind-mounted in that namespace only) makes it
    refuse every call from the network (it answers "authentication error").
    """
    if os.geteuid() != 0:
        raise DaemonUnavailable("rpcbind in a private mount namespace needs root")
    rpcbind = _need("/usr/sbin/rpcbind")
    activate = _need("systemd-socket-activate")
    unshare = _need("unshare")
    work = workdir
    work.mkdir(parents=True, exist_ok=True)
    deny = work / "hosts.deny"
    deny.write_text("rpcbind: ALL\n" if wrapped else "")
    script = (
        "set -e; mount -t tmpfs mamori-rpcbind /run; mkdir -p /run/rpcbind; "
        "chown _rpc /run/rpcbind; "
        f"mount --bind {deny} /etc/hosts.deny; "
        f"exec {activate} -l {host}:{RPCBIND_PORT} {rpcbind} -f -h {host}"
    )
    proc, log = _spawn([unshare, "-m", "sh", "-c", script], work, "rpcbind.log")
    d = Daemon("rpcbind", host, RPCBIND_PORT, proc, work, None, log)

    def ready() -> None:
        wait_tcp(host, RPCBIND_PORT, proc=proc)
        # systemd-socket-activate holds the socket until the first connection, then execs
        # rpcbind: wait until a call is answered at all (accepted or refused).
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if _answers(host):
                return
            time.sleep(0.1)
        raise DaemonUnavailable("rpcbind accepted but never answered a DUMP")

    return _started(d, ready)


def _answers(host: str) -> bool:
    try:
        with socket.create_connection((host, RPCBIND_PORT), timeout=1) as s:
            s.sendall(sunrpc.build_dump(7))
            data = b""
            while not sunrpc.record_complete(data):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return sunrpc.parse_reply(data, 7) is not None or sunrpc.parse_refusal(data, 7) is not None


def register_rpc_program(host: str, program: int, version: int, port: int) -> bool:
    """PMAPPROC_SET from 127.0.0.1 (rpcbind takes registrations from loopback only), as an
    RPC server registering itself would; True when rpcbind accepted it."""
    args = struct.pack(">IIII", program, version, sunrpc.IPPROTO_TCP, port)
    call = sunrpc.build_call(9, sunrpc.PORTMAP, sunrpc.PORTMAP_VERSION, 1, args)
    with socket.socket() as s:
        s.settimeout(2)
        s.bind(("127.0.0.1", 0))
        s.connect((host, RPCBIND_PORT))
        s.sendall(call)
        data = b""
        while not sunrpc.record_complete(data):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    result = sunrpc.parse_reply(data, 9)
    return result is not None and result[-4:] == b"\x00\x00\x00\x01"


def start_proftpd(workdir: Path, host: str, port: int, *, anonymous: bool,
                  greeting: str = "lab file drop") -> Daemon:
    """ProFTPD in the foreground (``-n -c``) on host:port with a greeting that names no
    product (``ServerIdent on``). ``anonymous``: an <Anonymous> block that logs in
    "anonymous" and lets it store and delete in incoming/ (the vulnerable twin); otherwise
    no <Anonymous> block (the hardened twin). ``workdir`` must be world-traversable.
    """
    proftpd = _need(PROFTPD)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    root = workdir / "anon-root"
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text("family photos mirror\n")
    shutil.chown(incoming, "ftp", "nogroup")
    anon = (
        f"<Anonymous {root}>\n  User ftp\n  Group nogroup\n  UserAlias anonymous ftp\n"
        "  RequireValidShell off\n  <Limit WRITE>\n    DenyAll\n  </Limit>\n"
        "  <Directory incoming>\n    <Limit WRITE>\n      AllowAll\n    </Limit>\n"
        "  </Directory>\n</Anonymous>\n"
    ) if anonymous else ""
    pid = workdir / "proftpd.pid"
    cfg = workdir / "proftpd.conf"
    cfg.write_text(
        f'ServerType standalone\nServerName "lab"\nServerIdent on "{greeting}"\n'
        f"DefaultAddress {host}\nSocketBindTight on\nPort {port}\nUseIPv6 off\n"
        "DefaultServer on\nUser nobody\nGroup nogroup\nUmask 022\nMaxInstances 20\n"
        f"PidFile {pid}\nScoreboardFile {workdir}/proftpd.scoreboard\n"
        f"DelayTable {workdir}/proftpd.delay\nSystemLog {workdir}/proftpd.log\n"
        "TransferLog none\nWtmpLog off\nUseReverseDNS off\nAuthPAM off\n"
        "AuthOrder mod_auth_unix.c\nControlsEngine off\nRequireValidShell off\n"
        + anon
    )
    proc, log = _spawn([proftpd, "-n", "-c", str(cfg)], workdir, "proftpd.out")
    d = Daemon("proftpd", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_cupsd(workdir: Path, host: str, *, open_to_all: bool,
                netns: tuple[str, str] | None = None) -> Daemon:
    """cupsd in the foreground on host:631 with its own ServerRoot, spool, cache, state and
    logs under ``workdir`` (world-traversable: CGIs run as lp), one printer "labprinter"
    (a raw queue to file:/dev/null, FileDevice Yes; no job is ever printed).

    ``open_to_all``: the printer is shared and ``<Location />`` and ``<Location /admin>`` say
    ``Allow all`` (printers and remote administration open). Otherwise the hardened twin:
    nothing shared and every location refuses (``Order allow,deny`` with no Allow line).
    ``netns``: (namespace cupsd runs in, namespace a client reaches it from), for clients
    that are not on loopback (CUPS lets every loopback client in, whatever its policy).
    """
    cupsd = _need("/usr/sbin/cupsd")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    dirs = {name: workdir / name for name in ("etc", "spool", "cache", "state", "log", "tmp")}
    for path in dirs.values():
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    dirs["tmp"].chmod(0o1777)
    (dirs["etc"] / "cups-files.conf").write_text(
        f"ServerRoot {dirs['etc']}\nRequestRoot {dirs['spool']}\nCacheDir {dirs['cache']}\n"
        f"StateDir {dirs['state']}\nTempDir {dirs['tmp']}\nErrorLog {dirs['log']}/error_log\n"
        f"AccessLog {dirs['log']}/access_log\nPageLog {dirs['log']}/page_log\n"
        "FileDevice Yes\nSystemGroup root\nSandboxing Relaxed\n"
    )
    allow = "  Allow all\n" if open_to_all else ""
    (dirs["etc"] / "cupsd.conf").write_text(
        f"Listen {host}:631\nListen {workdir}/cups.sock\nBrowsing No\nBrowseLocalProtocols none\n"
        f"WebInterface Yes\nDefaultShared {'Yes' if open_to_all else 'No'}\nLogLevel warn\n"
        f"<Location />\n  Order allow,deny\n{allow}</Location>\n"
        f"<Location /admin>\n  Order allow,deny\n{allow}</Location>\n"
        "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
    )
    (dirs["etc"] / "printers.conf").write_text(
        "<DefaultPrinter labprinter>\nInfo Lab printer\nLocation lab shelf\n"
        "MakeModel Local Raw Printer\nDeviceURI file:/dev/null\nState Idle\nStateTime 0\n"
        f"Type 4\nAccepting Yes\nShared {'Yes' if open_to_all else 'No'}\n"
        "JobSheets none none\nQuotaPeriod 0\nPageLimit 0\nKLimit 0\nOpPolicy default\n"
        "ErrorPolicy stop-printer\n</DefaultPrinter>\n"
    )
    prefix = ["ip", "netns", "exec", netns[0]] if netns else []
    proc, _ = _spawn([*prefix, cupsd, "-f", "-c", str(dirs["etc"] / "cupsd.conf"),
                      "-s", str(dirs["etc"] / "cups-files.conf")], workdir, "cupsd.out")
    d = Daemon("cupsd", host, 631, proc, workdir, None, dirs["log"] / "error_log")
    if netns is None:
        return _started(d, lambda: wait_tcp(host, 631, proc=proc))
    return _started(d, lambda: _wait_tcp_from(netns[1], host, 631, proc))


def _wait_tcp_from(ns: str, host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    """wait_tcp, from inside namespace ``ns`` (this process may not reach ``host``)."""
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], "
             "int(sys.argv[2])), 0.5).close()\nexcept OSError:\n sys.exit(1)\n")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise DaemonUnavailable(f"cupsd exited with {proc.returncode}")
        if subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe, host,
                           str(port)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise DaemonUnavailable(f"{host}:{port} did not accept within 10s (from {ns})")
