"""Suite-wide guards and helpers.

Two network guards. The suite runs in a network namespace that holds only loopback
(scripts/test runs pytest through scripts/isolated): no test, browser, daemon or subprocess can
send a packet anywhere else, and a session started outside such a namespace stops before the
first test (set MAMORI_TESTS_OUTSIDE_NETNS=1 to override, knowing what that means). Inside it,
every socket this test process opens may only reach loopback, and never port 2024 (the machine's
own listener answers there on every 127.x address): a test that tries anything else fails loudly
instead of sending a packet.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FORBIDDEN_PORT = 2024
ROOT = Path(__file__).resolve().parent.parent


class ForbiddenDestination(AssertionError):
    pass


def _check_destination(address: Any) -> None:
    if not isinstance(address, tuple) or len(address) < 2:
        return  # AF_UNIX paths, netlink
    host, port = address[0], address[1]
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise ForbiddenDestination(f"tests must use literal loopback addresses: {host!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise ForbiddenDestination(f"test traffic to {host}:{port} is forbidden (loopback only)")
    if port == FORBIDDEN_PORT:
        raise ForbiddenDestination(f"port {FORBIDDEN_PORT} belongs to the machine: never probe it")


_orig_connect = socket.socket.connect
_orig_connect_ex = socket.socket.connect_ex
_orig_sendto = socket.socket.sendto


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_destination(address)
    return _orig_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_destination(address)
    return _orig_connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check_destination(args[-1])
    return _orig_sendto(self, data, *args)


# Name lookups go to the system resolver, which is off this machine: a test may resolve only
# literal addresses and "localhost" (/etc/hosts). Reverse lookups are never needed; Python's
# http.server calls getfqdn() on bind, which would ask the outside resolver for a PTR record.
_orig_getaddrinfo = socket.getaddrinfo


def _is_literal(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    return True


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host not in (None, "", "localhost", b"localhost") and not _is_literal(
        host.decode() if isinstance(host, bytes) else host
    ):
        raise ForbiddenDestination(f"tests must not look up the name {host!r}")
    return _orig_getaddrinfo(host, *args, **kwargs)


def _no_reverse_lookup(*args: Any, **kwargs: Any) -> Any:
    raise ForbiddenDestination("tests must not make reverse DNS lookups")


socket.getaddrinfo = _guarded_getaddrinfo
socket.gethostbyaddr = _no_reverse_lookup
socket.getnameinfo = _no_reverse_lookup
socket.getfqdn = lambda name="": name or "localhost"
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]


def off_loopback_routes() -> list[str]:
    """Routes of this network namespace that lead anywhere but loopback ("iface dest"): none
    inside scripts/isolated, at least a default route on an ordinary machine."""
    routes: list[str] = []
    try:
        v4 = Path("/proc/net/route").read_text().splitlines()[1:]
        v6 = Path("/proc/net/ipv6_route").read_text().splitlines()
    except OSError:
        return ["unknown: /proc/net unreadable"]
    routes += [f"{c[0]} {c[1]}" for c in (line.split() for line in v4) if c and c[0] != "lo"]
    routes += [f"{c[9]} {c[0]}" for c in (line.split() for line in v6)
               if len(c) >= 10 and c[9] != "lo"]
    return routes


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("MAMORI_TESTS_OUTSIDE_NETNS") == "1":
        return
    routes = off_loopback_routes()
    if routes:
        pytest.exit(
            "the tests run only in a loopback-only network namespace: use scripts/test, or "
            "`bash scripts/isolated python3 -m pytest ...` (this namespace routes via "
            f"{', '.join(sorted(set(r.split()[0] for r in routes)))})", returncode=4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(reason="needs root (network namespaces / raw sockets)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite store for one test."""
    return f"sqlite:///{tmp_path / 'mamori.db'}"


def run_mamori(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MAMORI_DB", None) if env is None or "MAMORI_DB" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "mamori", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, input=input,
        cwd=ROOT, check=False,
    )


@pytest.fixture
def mamori() -> Iterator[Any]:
    yield run_mamori
