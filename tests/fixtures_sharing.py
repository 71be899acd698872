"""File-sharing servers for the sharing checks: real smbd in three configurations, and faithful
ONC RPC (portmapper + mountd) and AFP (DSI) servers where no daemon can run here.

Addresses: 127.0.64.0/24. smbd binds only addresses on an interface, so each instance adds a
/32 alias on lo and removes it when stopped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import daemons as dm
from mamori.protocols import sunrpc
from threaded_server import ThreadedServer

# --- samba -------------------------------------------------------------------------------------

SMB_PROFILES = {
    # Guests welcome: unknown users become guest, a share takes guests, SMB1 still on.
    "open": (
        "  map to guest = bad user\n  server min protocol = NT1\n",
        "[public]\n  path = {share}\n  read only = yes\n  guest ok = yes\n"
        "  comment = Family photos\n"
        "[backup]\n  path = {share}\n  read only = yes\n  guest ok = no\n",
    ),
    # Samba's defaults: no guest mapping, no guest share, SMB2 minimum; but anonymous sessions
    # may still open IPC$ and list the share names (restrict anonymous = 0).
    "default": ("", "[backup]\n  path = {share}\n  read only = yes\n  guest ok = no\n"),
    # Unknown users become guest, but neither anonymous nor guest may enumerate shares
    # (restrict anonymous = 1: samba counts guest as anonymous there).
    "no-enum": (
        "  restrict anonymous = 1\n  map to guest = bad user\n",
        "[backup]\n  path = {share}\n  read only = yes\n  guest ok = no\n",
    ),
    # Session security (issue 14): SMB3 encryption switched off; SMB 2.1 at most (no
    # encryption at all); the hardened twin: signing mandatory, SMB3 only, encryption required.
    "no-encryption": ("  server smb encrypt = off\n", ""),
    "smb2-only": ("  server max protocol = SMB2_10\n", ""),
    "signed-encrypted": (
        "  server signing = mandatory\n  server min protocol = SMB3\n"
        "  server smb encrypt = required\n", ""),
    # Hardened: anonymous may not reach IPC$, unknown users are refused, no guest shares.
    "hardened": (
        "  restrict anonymous = 2\n  map to guest = never\n  server min protocol = SMB2_10\n",
        "[backup]\n  path = {share}\n  read only = yes\n  guest ok = no\n",
    ),
}


def start_samba(workdir: Path, host: str, port: int, profile: str) -> dm.Daemon:
    """smbd on host:port with the named profile (see SMB_PROFILES). Raises DaemonUnavailable."""
    smbd = dm._need("/usr/sbin/smbd")
    undo = dm.add_lo_alias(host)
    dirs = {k: workdir / f"samba-{k}"
            for k in ("lock", "state", "cache", "pid", "private", "share", "ncalrpc")}
    for p in dirs.values():
        p.mkdir(exist_ok=True)
    extra_global, shares = SMB_PROFILES[profile]
    cfg = workdir / "smb.conf"
    cfg.write_text(
        "[global]\n  workgroup = MAMORI\n  server role = standalone server\n"
        f"  interfaces = {host}/32\n  bind interfaces only = yes\n  smb ports = {port}\n"
        f"  lock directory = {dirs['lock']}\n  state directory = {dirs['state']}\n"
        f"  cache directory = {dirs['cache']}\n  pid directory = {dirs['pid']}\n"
        f"  private dir = {dirs['private']}\n  ncalrpc dir = {dirs['ncalrpc']}\n"
        f"  log file = {workdir}/smbd.log\n  disable netbios = yes\n  load printers = no\n"
        "  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n"
        "  server services = -nbt\n" + extra_global
        + shares.format(share=dirs["share"])
    )
    proc, log = dm._spawn(
        [smbd, "-F", "--no-process-group", "--debug-stdout", "-s", str(cfg)], workdir, "smbd.out"
    )
    d = dm.Daemon("smbd", host, port, proc, workdir, dirs["pid"] / "smbd.pid", log,
                  cleanup=[undo, lambda: dm.kill_by_config(cfg)])
    return dm._started(d, lambda: dm.wait_tcp(host, port, timeout=15, proc=proc))


# --- threaded TCP servers (the checks run their own event loop in the test thread) ----------


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


# --- ONC RPC: portmapper and mountd, as rpcbind and rpc.mountd answer ------------------------

_SUCCESS, _PROG_UNAVAIL, _PROG_MISMATCH, _PROC_UNAVAIL = 0, 1, 2, 3


def _rpc_reply(xid: int, accept_stat: int, result: bytes = b"") -> bytes:
    return sunrpc.record(struct.pack(">IIIIII", xid, 1, 0, 0, 0, accept_stat) + result)


class RpcService:
    """Portmapper (program 100000 v2) on one port and mountd (100005 v1-v3) on another, both
    speaking ONC RPC over TCP record marking with real XDR, like rpcbind and rpc.mountd."""

    def __init__(self, host: str, pmap_port: int, mountd_port: int,
                 exports: list[sunrpc.Export], register_mountd: bool = True) -> None:
        self.exports = exports
        self.registrations = [(sunrpc.PORTMAP, 2, sunrpc.IPPROTO_TCP, pmap_port),
                              (sunrpc.PORTMAP, 2, sunrpc.IPPROTO_UDP, pmap_port),
                              (100003, 3, sunrpc.IPPROTO_TCP, 2049)]
        if register_mountd:
            for version in (1, 2, 3):
                self.registrations.append((sunrpc.MOUNT, version, sunrpc.IPPROTO_TCP,
                                           mountd_port))
        self.servers = [ThreadedServer(host, pmap_port, self._serve),
                        ThreadedServer(host, mountd_port, self._serve)]
        self.calls: list[tuple[int, int, int]] = []  # (program, version, procedure) seen

    def _answer(self, call: bytes) -> bytes:
        xid, mtype, rpcvers, prog, vers, proc = struct.unpack_from(">IIIIII", call)
        if mtype != 0 or rpcvers != 2:
            raise ConnectionError("not an RPC call")
        pos = 24
        for _ in range(2):  # credentials, verifier
            _flavor, length = struct.unpack_from(">II", call, pos)
            pos += 8 + ((length + 3) & ~3)
        args = call[pos:]
        self.calls.append((prog, vers, proc))
        if prog == sunrpc.PORTMAP:
            if vers != 2:
                return _rpc_reply(xid, _PROG_MISMATCH, struct.pack(">II", 2, 2))
            if proc == 0:
                return _rpc_reply(xid, _SUCCESS)
            if proc == sunrpc.PMAPPROC_GETPORT:
                want = struct.unpack_from(">III", args)
                port = next((r[3] for r in self.registrations if r[:3] == want), 0)
                return _rpc_reply(xid, _SUCCESS, struct.pack(">I", port))
            if proc == sunrpc.PMAPPROC_DUMP:
                body = b"".join(struct.pack(">IIIII", 1, *r) for r in self.registrations)
                return _rpc_reply(xid, _SUCCESS, body + struct.pack(">I", 0))
            return _rpc_reply(xid, _PROC_UNAVAIL)
        if prog == sunrpc.MOUNT:
            if vers not in (1, 2, 3):
                return _rpc_reply(xid, _PROG_MISMATCH, struct.pack(">II", 1, 3))
            if proc == 0:
                return _rpc_reply(xid, _SUCCESS)
            if proc == sunrpc.MOUNTPROC_EXPORT:
                return _rpc_reply(xid, _SUCCESS, sunrpc.build_exports_result(self.exports))
            return _rpc_reply(xid, _PROC_UNAVAIL)
        return _rpc_reply(xid, _PROG_UNAVAIL)

    def _serve(self, conn: socket.socket) -> None:
        for _ in range(16):
            try:
                mark = int.from_bytes(_recv_exact(conn, 4), "big")
            except ConnectionError:
                return
            call = _recv_exact(conn, mark & 0x7FFFFFFF)
            conn.sendall(self._answer(call))

    def __enter__(self) -> RpcService:
        for s in self.servers:
            s.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self.servers:
            s.__exit__()


# --- AFP over DSI, as netatalk answers DSIGetStatus -------------------------------------------


def _pstr(s: str) -> bytes:
    raw = s.encode()
    return bytes([len(raw)]) + raw


def afp_server_info(name: str, versions: list[str], uams: list[str]) -> bytes:
    """An FPGetSrvrInfo block laid out as netatalk 3 sends it (AFP 3.x, UTF-8 name)."""
    head_len = 10 + len(_pstr(name))
    head_len += head_len % 2
    fixed = head_len + 8  # signature, network-address, directory-name and UTF-8 name offsets
    machine = _pstr("Netatalk3.1.15")
    version_list = bytes([len(versions)]) + b"".join(_pstr(v) for v in versions)
    uam_list = bytes([len(uams)]) + b"".join(_pstr(u) for u in uams)
    machine_off = fixed
    versions_off = machine_off + len(machine)
    uams_off = versions_off + len(version_list)
    signature_off = uams_off + len(uam_list)
    addresses_off = signature_off + 16
    addresses = b"\x01" + b"\x08\x02" + socket.inet_aton("127.0.64.5") + b"\x02\x24"  # IP+port
    utf8_off = addresses_off + len(addresses)
    header = struct.pack(">HHHHH", machine_off, versions_off, uams_off, 0, 0x8F79)
    header += _pstr(name)
    header = header.ljust(head_len, b"\0")
    header += struct.pack(">HHHH", signature_off, addresses_off, 0, utf8_off)
    raw_name = name.encode()
    return (header + machine + version_list + uam_list + b"\x5a" * 16 + addresses
            + struct.pack(">H", len(raw_name)) + raw_name)


def afp_handler(info: bytes) -> Callable[[socket.socket], None]:
    """Serve DSIGetStatus with ``info``; any other DSI command gets an error and a close."""
    def handle(conn: socket.socket) -> None:
        head = _recv_exact(conn, 16)
        flags, command, request_id, _offset, length, _res = struct.unpack(">BBHIII", head)
        _recv_exact(conn, length)
        if flags != 0 or command != 3:
            conn.sendall(struct.pack(">BBHiII", 1, command, request_id, -5019, 0, 0))
            return
        conn.sendall(struct.pack(">BBHIII", 1, 3, request_id, 0, len(info), 0) + info)
    return handle


@contextlib.contextmanager
def afp_server(host: str, port: int, name: str, uams: list[str]) -> Iterator[ThreadedServer]:
    info = afp_server_info(name, ["AFP2.2", "AFPX03", "AFP3.1", "AFP3.2", "AFP3.3", "AFP3.4"],
                           uams)
    with ThreadedServer(host, port, afp_handler(info)) as server:
        yield server
