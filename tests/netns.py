"""Two network namespaces joined by one veth pair: the test hosts of the suite.

Neither namespace gets any other interface or route, so nothing in them can reach beyond
the pair. Both are deleted on the way out, and the helper processes the test started in
them are stopped, whatever happens.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def stop_helpers(procs: Sequence[subprocess.Popen[str]]) -> None:
    """Close each helper's stdin (its signal to leave), then wait; kill what lingers."""
    for proc in procs:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def veth_pair(
    near: str, far: str, devs: tuple[str, str],
    addresses: tuple[Sequence[str], Sequence[str]], procs: list[subprocess.Popen[str]],
) -> Iterator[None]:
    """Create namespaces ``near`` and ``far``, the veth ``devs`` between them, and put
    ``addresses`` (CIDR strings, near side then far side) on each end; lo is up in both.
    IPv6 addresses are added without duplicate-address detection so they work at once."""
    try:
        for ns in (near, far):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            ip("netns", "add", ns)
        ip("link", "add", devs[0], "netns", near, "type", "veth", "peer", "name", devs[1],
           "netns", far)
        for ns, dev, addrs in ((near, devs[0], addresses[0]), (far, devs[1], addresses[1])):
            for addr in addrs:
                ip("-n", ns, "addr", "add", addr, "dev", dev, *(["nodad"] if ":" in addr else []))
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        stop_helpers(procs)
        for ns in (near, far):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
