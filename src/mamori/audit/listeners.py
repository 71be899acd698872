"""Which sockets on this machine wait for traffic: TCP in LISTEN and bound, unconnected UDP.

The I/O is two reads (psutil's socket table and, per owning pid, one process description);
everything else is pure: ``classify_scope`` judges a bind address, ``listeners_from_sockets``
turns raw socket rows into deduplicated ``Listener`` records.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import psutil

from mamori.model import Proto
from mamori.model.audit import Listener, Scope


class ListenersUnavailable(RuntimeError):
    """The socket table itself could not be read (e.g. macOS without root); says why."""


@dataclass(frozen=True)
class RawSocket:
    """One row of the socket table, before deduplication (one row per owning process)."""

    proto: Proto
    address: str
    port: int
    pid: int | None


@dataclass(frozen=True)
class ProcessInfo:
    """What could be learnt about one pid; fields the OS would not tell are None."""

    name: str | None = None
    user: str | None = None
    exe: str | None = None
    ppid: int | None = None


def classify_scope(address: str) -> Scope:
    """Who can reach a socket bound to ``address``.

    Returns ``Scope.LOOPBACK`` for 127.0.0.0/8, ::1 and ::ffff:127.x; ``Scope.ALL`` for the
    wildcards 0.0.0.0 and :: (and their ss spelling "*", and ::ffff:0.0.0.0); otherwise
    ``Scope.INTERFACE``. A zone suffix ("fe80::1%eth0") is ignored. Never raises: a string
    that is not an address is judged ``Scope.INTERFACE`` (bound to something specific).
    """
    text = address.strip().strip("[]").split("%", 1)[0]
    if text in ("*", ""):
        return Scope.ALL
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return Scope.INTERFACE
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return Scope.ALL
    if ip.is_loopback:
        return Scope.LOOPBACK
    return Scope.INTERFACE


def _pick_owner(pids: set[int], processes: Mapping[int, ProcessInfo]) -> int:
    """The parent among processes sharing one socket (pre-fork servers), else the lowest pid."""
    roots = [pid for pid in pids if processes.get(pid, ProcessInfo()).ppid not in pids]
    return min(roots) if roots else min(pids)


def listeners_from_sockets(rows: Iterable[RawSocket],
                           processes: Mapping[int, ProcessInfo]) -> list[Listener]:
    """Deduplicate socket rows into listeners, sorted by (proto, address, port).

    Rows with the same (proto, address, port), from workers sharing one socket or from
    SO_REUSEPORT siblings, become one ``Listener`` owned by the parent process (the one whose
    parent is not itself among the owners), or the lowest pid when none is. Process fields
    come from ``processes``; a pid missing there keeps only its pid. Pure; never raises.
    """
    groups: dict[tuple[Proto, str, int], set[int]] = {}
    for row in rows:
        pids = groups.setdefault((row.proto, row.address, row.port), set())
        if row.pid is not None:
            pids.add(row.pid)
    result: list[Listener] = []
    for (proto, address, port), pids in groups.items():
        scope = classify_scope(address)
        if not pids:
            result.append(Listener(proto, address, port, scope))
            continue
        pid = _pick_owner(pids, processes)
        info = processes.get(pid, ProcessInfo())
        result.append(Listener(proto, address, port, scope, pid=pid, process=info.name,
                               user=info.user, exe=info.exe))
    result.sort(key=lambda lst: (lst.proto.value, lst.address, lst.port))
    return result


def _rows_from_psutil() -> list[RawSocket]:
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied as exc:
        raise ListenersUnavailable(
            f"the socket table needs more privileges here (run as root): {exc}") from exc
    except (psutil.Error, OSError) as exc:
        raise ListenersUnavailable(f"the socket table could not be read: {exc}") from exc
    rows: list[RawSocket] = []
    for conn in conns:
        if not conn.laddr:
            continue
        if conn.type == socket.SOCK_STREAM:
            if conn.status != psutil.CONN_LISTEN:
                continue
            proto = Proto.TCP
        elif conn.type == socket.SOCK_DGRAM:
            if conn.raddr:  # a connected UDP socket talks to one peer: it is not listening
                continue
            proto = Proto.UDP
        else:
            continue
        rows.append(RawSocket(proto, conn.laddr.ip, conn.laddr.port, conn.pid))
    return rows


def describe_process(pid: int) -> ProcessInfo:
    """Name, user, executable and parent of ``pid``; each field None when the OS refuses it or
    the process is gone. Never raises."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return ProcessInfo()

    def field(getter: Callable[[], object]) -> object | None:
        try:
            return getter()
        except (psutil.Error, OSError):
            return None

    with proc.oneshot():
        name, user, exe, ppid = (field(proc.name), field(proc.username), field(proc.exe),
                                 field(proc.ppid))
    return ProcessInfo(
        name=str(name) if name else None,
        user=str(user) if user else None,
        exe=str(exe) if exe else None,  # kernel threads and refused reads give ""
        ppid=ppid if isinstance(ppid, int) else None,
    )


def _ancestors_holding(row: RawSocket, max_depth: int = 8) -> list[RawSocket]:
    """Rows for the parents of ``row.pid`` that hold the same listening socket.

    psutil names only one process per socket; a pre-fork server's workers and its master
    share it, and the master is the owner worth naming. Init (pid 1) is never climbed to:
    with socket activation it holds the socket, but the service is what the owner knows.
    """
    found: list[RawSocket] = []
    pid = row.pid
    kind = socket.SOCK_STREAM if row.proto is Proto.TCP else socket.SOCK_DGRAM
    for _ in range(max_depth):
        if pid is None:
            break
        try:
            ppid = psutil.Process(pid).ppid()
            if ppid <= 1:
                break
            held = psutil.Process(ppid).net_connections(kind="inet")
        except (psutil.Error, OSError):
            break
        if not any(c.type == kind and c.laddr and c.laddr.ip == row.address
                   and c.laddr.port == row.port and not c.raddr
                   and (kind == socket.SOCK_DGRAM or c.status == psutil.CONN_LISTEN)
                   for c in held):
            break
        found.append(RawSocket(row.proto, row.address, row.port, ppid))
        pid = ppid
    return found


def list_listeners(
    describe: Callable[[int], ProcessInfo] = describe_process,
) -> list[Listener]:
    """Every TCP socket in LISTEN and every bound, unconnected UDP socket, IPv4 and IPv6.

    Returns listeners sorted by (proto, address, port), one per (proto, address, port), each
    with its scope and, where the OS tells, pid, process name, user and executable (sockets of
    processes this user may not inspect keep address and port, with pid None).
    Raises ``ListenersUnavailable`` when the socket table itself cannot be read.
    """
    rows = _rows_from_psutil()
    rows += [parent for row in list(rows) for parent in _ancestors_holding(row)]
    pids = {row.pid for row in rows if row.pid is not None}
    return listeners_from_sockets(rows, {pid: describe(pid) for pid in pids})
