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
import time
from pathlib import Path

from daemons import Daemon, DaemonUnavailable, _need, _spawn, _started, wait_tcp
from mamori.protocols import sunrpc

__all__ = ["register_rpc_program", "start_proftpd", "start_rpcbind"]

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
