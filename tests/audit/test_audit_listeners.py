"""Listeners of this machine: the pure helpers, and the real socket table compared with ss.

Traffic: none leaves loopback. The test binds sockets on 127.0.80.x, ::1 and 0.0.0.0 (random
high ports; nothing connects to the wildcard one) and connects one UDP socket to its own
loopback listener. Port 2024 is never touched.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from mamori.audit.listeners import (
    ProcessInfo,
    RawSocket,
    classify_scope,
    list_listeners,
    listeners_from_sockets,
)
from mamori.model import Proto
from mamori.model.audit import Listener, Scope

SRC = Path(__file__).resolve().parents[2] / "src"

Key = tuple[str, str, int]  # (proto, address, port)


# ---- pure helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "scope"), [
    ("127.0.0.1", Scope.LOOPBACK),
    ("127.0.80.9", Scope.LOOPBACK),
    ("127.255.255.254", Scope.LOOPBACK),
    ("::1", Scope.LOOPBACK),
    ("[::1]", Scope.LOOPBACK),
    ("::ffff:127.0.0.1", Scope.LOOPBACK),
    ("127.0.0.53%lo", Scope.LOOPBACK),
    ("0.0.0.0", Scope.ALL),
    ("::", Scope.ALL),
    ("*", Scope.ALL),
    ("::ffff:0.0.0.0", Scope.ALL),
    ("192.0.2.7", Scope.INTERFACE),
    ("10.0.0.1", Scope.INTERFACE),
    ("128.0.0.1", Scope.INTERFACE),
    ("fe80::1%eth0", Scope.INTERFACE),
    ("2001:db8::5", Scope.INTERFACE),
    ("::ffff:192.0.2.1", Scope.INTERFACE),
    ("not-an-address", Scope.INTERFACE),
])
def test_classify_scope(address: str, scope: Scope) -> None:
    assert classify_scope(address) is scope


def test_dedup_prefers_the_parent_even_with_a_higher_pid() -> None:
    rows = [RawSocket(Proto.TCP, "0.0.0.0", 80, pid) for pid in (90, 91, 500)]
    procs = {
        500: ProcessInfo("nginx", "root", "/usr/sbin/nginx", ppid=1),
        90: ProcessInfo("nginx", "www-data", "/usr/sbin/nginx", ppid=500),
        91: ProcessInfo("nginx", "www-data", "/usr/sbin/nginx", ppid=500),
    }
    [one] = listeners_from_sockets(rows, procs)
    assert one == Listener(Proto.TCP, "0.0.0.0", 80, Scope.ALL, pid=500, process="nginx",
                           user="root", exe="/usr/sbin/nginx")


def test_dedup_lowest_pid_when_no_parent_is_among_owners() -> None:
    rows = [RawSocket(Proto.UDP, "::", 5353, 700), RawSocket(Proto.UDP, "::", 5353, 650),
            RawSocket(Proto.UDP, "::", 5353, None)]
    procs = {650: ProcessInfo("avahi", ppid=1), 700: ProcessInfo("other", ppid=1)}
    [one] = listeners_from_sockets(rows, procs)
    assert (one.pid, one.process, one.scope) == (650, "avahi", Scope.ALL)


def test_dedup_keeps_protocols_addresses_and_ports_apart() -> None:
    rows = [RawSocket(Proto.TCP, "127.0.0.1", 53, 10), RawSocket(Proto.UDP, "127.0.0.1", 53, 10),
            RawSocket(Proto.UDP, "::1", 53, 10), RawSocket(Proto.UDP, "::1", 54, None)]
    result = listeners_from_sockets(rows, {})
    assert [(x.proto.value, x.address, x.port) for x in result] == [
        ("tcp", "127.0.0.1", 53), ("udp", "127.0.0.1", 53), ("udp", "::1", 53), ("udp", "::1", 54)]
    # A pid the process table could not describe keeps the pid, nothing more.
    assert (result[0].pid, result[0].process, result[0].user) == (10, None, None)
    assert result[3].pid is None


# ---- the real socket table -------------------------------------------------------------------

def _normalize(address: str) -> str:
    addr = address.split("%", 1)[0].strip("[]")
    return "::" if addr == "*" else addr  # ss prints a dual-stack :: as "*"


def parse_ss(text: str) -> set[Key]:
    """(proto, address, port) of every line of `ss -lntupH`."""
    keys: set[Key] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        netid, local = fields[0], fields[4]
        host, _, port = local.rpartition(":")
        # "[fe80::1]%eth0:123": the zone sits between the bracket and the port.
        keys.add((netid, _normalize(host), int(port)))
    return keys


def test_parse_ss_spellings() -> None:
    text = (
        "udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:((\"resolved\",pid=5,fd=3))\n"
        "udp UNCONN 0 0 [fe80::1]%eth0:123 [::]:*\n"
        "tcp LISTEN 0 128 *:46809 *:*\n"
        "tcp LISTEN 0 128 [::ffff:127.0.0.1]:80 *:*\n"
        "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
    )
    assert parse_ss(text) == {("udp", "127.0.0.53", 53), ("udp", "fe80::1", 123),
                              ("tcp", "::", 46809), ("tcp", "::ffff:127.0.0.1", 80),
                              ("tcp", "0.0.0.0", 22)}


def ss_listeners() -> set[Key]:
    out = subprocess.run(["ss", "-lntupH"], capture_output=True, text=True, check=True,
                         timeout=20).stdout
    return parse_ss(out)


def keys_of(listeners: list[Listener]) -> set[Key]:
    return {(x.proto.value, x.address, x.port) for x in listeners}


@dataclass
class Mine:
    tcp4: Key
    udp4: Key
    tcp6: Key
    wildcard: Key
    shared: Key  # a listening socket also held by a child process
    connected_udp: Key  # a connected UDP socket: must not be listed
    bound_tcp: Key  # a bound TCP socket that never listens: must not be listed
    child_pid: int


@pytest.fixture
def my_sockets() -> Iterator[Mine]:
    socks: list[socket.socket] = []

    def make(family: int, kind: int, host: str) -> socket.socket:
        s = socket.socket(family, kind)
        socks.append(s)
        s.bind((host, 0))
        return s

    child: subprocess.Popen[bytes] | None = None
    try:
        tcp4 = make(socket.AF_INET, socket.SOCK_STREAM, "127.0.80.1")
        tcp4.listen()
        udp4 = make(socket.AF_INET, socket.SOCK_DGRAM, "127.0.80.2")
        tcp6 = make(socket.AF_INET6, socket.SOCK_STREAM, "::1")
        tcp6.listen()
        wildcard = make(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0")
        wildcard.listen()
        shared = make(socket.AF_INET, socket.SOCK_STREAM, "127.0.80.3")
        shared.listen()
        client = make(socket.AF_INET, socket.SOCK_DGRAM, "127.0.80.4")
        client.connect(udp4.getsockname())
        bound = make(socket.AF_INET, socket.SOCK_STREAM, "127.0.80.5")
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 pass_fds=(shared.fileno(),))

        def key(proto: str, s: socket.socket) -> Key:
            name = s.getsockname()
            return (proto, name[0], name[1])

        yield Mine(key("tcp", tcp4), key("udp", udp4), key("tcp", tcp6), key("tcp", wildcard),
                   key("tcp", shared), key("udp", client), key("tcp", bound), child.pid)
    finally:
        if child is not None:
            child.kill()
            child.wait(timeout=10)
        for s in socks:
            s.close()


def _compare_with_ss() -> tuple[set[Key], list[Listener]]:
    """list_listeners() against ss: exact when ss saw the same table just before and after
    (other test suites on this machine start and stop daemons while we look)."""
    for _ in range(10):
        before = ss_listeners()
        ours = list_listeners()
        after = ss_listeners()
        if before == after:
            assert keys_of(ours) == before
            return before, ours
    # Never stable: what stayed must be listed, and nothing ss never saw.
    assert before & after <= keys_of(ours) <= before | after
    return before & after, ours


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket table")
def test_list_listeners_matches_ss_and_describes_mine(my_sockets: Mine) -> None:
    seen, ours = _compare_with_ss()
    mine = [my_sockets.tcp4, my_sockets.udp4, my_sockets.tcp6, my_sockets.wildcard,
            my_sockets.shared]
    assert set(mine) <= seen
    assert my_sockets.connected_udp not in seen | keys_of(ours)
    assert my_sockets.bound_tcp not in seen | keys_of(ours)

    by_key = {(x.proto.value, x.address, x.port): x for x in ours}
    assert len(by_key) == len(ours)  # one listener per (proto, address, port)
    me = psutil.Process()
    expected_user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else me.username()
    for key, scope in [(my_sockets.tcp4, Scope.LOOPBACK), (my_sockets.udp4, Scope.LOOPBACK),
                       (my_sockets.tcp6, Scope.LOOPBACK), (my_sockets.wildcard, Scope.ALL),
                       (my_sockets.shared, Scope.LOOPBACK)]:
        lst = by_key[key]
        assert lst.scope is scope, key
        assert lst.pid == os.getpid(), key  # the shared one: the parent, not the child
        assert lst.process == me.name()
        assert lst.user == expected_user
        assert lst.exe == os.path.realpath(me.exe())


_UNPRIVILEGED = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from mamori.audit.listeners import list_listeners
os.setgroups([])
os.setgid(int(sys.argv[3]))
os.setuid(int(sys.argv[2]))  # imports done as root: from here on, nobody
print(json.dumps([[x.proto.value, x.address, x.port, x.pid, x.process] for x in list_listeners()]))
"""


@pytest.mark.root
def test_unprivileged_user_still_sees_address_and_port(my_sockets: Mine) -> None:
    """A user who may not inspect our process still gets the socket, with pid None."""
    nobody = pwd.getpwnam("nobody")
    proc = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED, str(SRC), str(nobody.pw_uid), str(nobody.pw_gid)],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    rows = {(p, a, port): (pid, name) for p, a, port, pid, name in json.loads(proc.stdout)}
    assert rows[my_sockets.tcp4] == (None, None)
    assert rows[my_sockets.udp4] == (None, None)
    assert rows[my_sockets.tcp6] == (None, None)
