"""Suite-wide guards and helpers.

The network guard: every socket this test process opens may only reach loopback, and never
port 2024 (the machine's own listener answers there on every 127.x address). A test that tries
anything else fails loudly instead of sending a packet. Subprocesses are held to the same rule
by review and by the CLI tests' own assertions.
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
