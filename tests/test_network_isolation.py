"""The suite cannot reach past loopback: a connect to a non-loopback address and a name lookup
both fail inside the run with "network unreachable", because the namespace has no route.

Each probe first asks the kernel for a route (`ip route get` sends nothing); only when there is
none does it try, so outside the isolated namespace this test fails without sending a packet.
The probes run in a subprocess: this process's own socket guard (conftest.py) would stop them
before the kernel could say anything.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import off_loopback_routes

# TEST-NET-1 (RFC 5737) and the IPv6 documentation prefix: never anyone's host.
NOWHERE_V4 = "192.0.2.1"
NOWHERE_V6 = "2001:db8::1"


def _no_route(address: str) -> bool:
    done = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True,
                          timeout=10, check=False)
    return done.returncode != 0 and "unreachable" in done.stderr.lower()


def _resolvers() -> list[str]:
    try:
        lines = open("/etc/resolv.conf", encoding="utf-8").read().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


def test_this_namespace_routes_only_loopback() -> None:
    assert off_loopback_routes() == []
    assert _no_route(NOWHERE_V4)
    assert _no_route(NOWHERE_V6)


def test_a_connect_off_loopback_is_network_unreachable() -> None:
    for address in (NOWHERE_V4, NOWHERE_V6):
        assert _no_route(address), f"{address} has a route: not sending anything"
        family = "AF_INET6" if ":" in address else "AF_INET"
        code = (
            "import errno, socket\n"
            f"s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
            "s.settimeout(5)\n"
            f"try:\n    s.connect(({address!r}, 9))\nexcept OSError as e:\n"
            "    print(errno.errorcode.get(e.errno, e.errno))\nelse:\n    print('CONNECTED')\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=20, check=False)
        assert done.stdout.strip() == "ENETUNREACH", done.stdout + done.stderr


def test_a_name_lookup_fails_at_once() -> None:
    for server in _resolvers():
        if not server.startswith("127.") and server != "::1":
            assert _no_route(server), f"the resolver {server} has a route: not asking it"
    done = subprocess.run(
        [sys.executable, "-c",
         "import socket\ntry:\n    socket.getaddrinfo('mamori-isolation-check.example.org', 80)\n"
         "except OSError as e:\n    print('FAILED', e)\nelse:\n    print('RESOLVED')"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.stdout.startswith("FAILED"), done.stdout + done.stderr
