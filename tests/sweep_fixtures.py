"""Helpers for the sweep tests: loopback listeners, a sweep runner, network namespaces.

Addresses: 127.0.10.0/24 and ::1 on loopback; 10.200.x.0/30 only *inside* the network
namespaces that ``netns_pair`` creates (and deletes) itself. Port 2024 is never probed.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mamori.model import PortResult, ProbeError
from mamori.net.sweep import SweepOptions, SweepStats, tcp_sweep
from mamori.net.udp import udp_sweep
from netns import veth_pair

FORBIDDEN = 2024
ALL_PORTS = [p for p in range(1, 65536) if p != FORBIDDEN]
SRC = str(Path(__file__).resolve().parent.parent / "src")


class TcpListeners:
    """Listening sockets that accept and drop every connection (accept queues never fill)."""

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.endpoints: list[tuple[str, int]] = []
        for host, port in endpoints:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(256)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
            self.endpoints.append((host, s.getsockname()[1]))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.05):
                with contextlib.suppress(OSError):
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.socks:
            s.close()
        self.sel.close()

    def __enter__(self) -> TcpListeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_tcp_ports(host: str, n: int, low: int = 20000, high: int = 30000) -> list[int]:
    """Return ``n`` ports of ``host`` that nothing listens on right now (by binding them)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    found: list[int] = []
    port = low
    while len(found) < n and port < high:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                found.append(port)
            except OSError:
                pass
        port += 97
    assert len(found) == n
    return found


def wildcard_tcp_listeners() -> set[int]:
    """Ports some process listens on for every address (0.0.0.0 or ::), from /proc."""
    ports: set[int] = set()
    for path, wild in (
        ("/proc/net/tcp", "00000000"),
        ("/proc/net/tcp6", "00000000000000000000000000000000"),
    ):
        with contextlib.suppress(OSError), open(path, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                addr, port_hex = fields[1].split(":")
                if fields[3] == "0A" and addr == wild:  # 0A = LISTEN
                    ports.add(int(port_hex, 16))
    return ports


@dataclass
class SweepRun:
    results: list[PortResult] = field(default_factory=list)
    errors: list[ProbeError] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)
    stats: SweepStats | None = None

    def by_state(self, state: str) -> set[tuple[str, int]]:
        return {(r.address, r.port) for r in self.results if r.state.value == state}

    def ports(self, state: str) -> set[int]:
        return {r.port for r in self.results if r.state.value == state}


def run_tcp(
    addresses: Sequence[str], ports: Sequence[int], opts: SweepOptions | None = None, **kw: object
) -> SweepRun:
    run = SweepRun()
    run.stats = tcp_sweep(
        addresses,
        ports,
        opts or SweepOptions(),
        run.results.append,
        run.errors.append,
        run.progress.append,
        **kw,  # type: ignore[arg-type]
    )
    return run


def run_udp(
    addresses: Sequence[str], ports: Sequence[int], opts: SweepOptions | None = None, **kw: object
) -> SweepRun:
    run = SweepRun()
    run.stats = udp_sweep(
        addresses,
        ports,
        opts or SweepOptions(),
        run.results.append,
        run.errors.append,
        run.progress.append,
        **kw,  # type: ignore[arg-type]
    )
    return run


def run_python(code: str, *, netns: str | None = None, timeout: float = 60) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (optionally inside ``netns``); parse its JSON stdout.

    The subprocess has no test guard: its code must target only what the test owns.
    """
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


# ---- network namespaces -----------------------------------------------------------------


@dataclass
class NetnsPair:
    near: str
    far: str
    near_ip: str
    far_ip: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def sh(self, ns: str, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *args], check=True, capture_output=True)

    def nft(self, ns: str, script: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=script,
            text=True,
            check=True,
            capture_output=True,
        )

    def serve(self, code: str) -> None:
        """Start ``code`` (Python) in the far namespace; it must print a line when ready."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.far, sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"


def netns_available() -> str | None:
    """Return None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"mamori-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns unavailable: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@contextlib.contextmanager
def netns_pair(subnet: int) -> Iterator[NetnsPair]:
    """Two namespaces joined by a veth pair: near 10.200.<subnet>.1, far 10.200.<subnet>.2.

    Neither namespace has any other interface or route: traffic cannot leave them.
    """
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    tag = f"{os.getpid() % 100000}-{subnet}"
    near, far = f"mamori-n{tag}", f"mamori-f{tag}"
    veth_n, veth_f = f"mvn{tag}"[:15], f"mvf{tag}"[:15]
    pair = NetnsPair(near, far, f"10.200.{subnet}.1", f"10.200.{subnet}.2")

    with veth_pair(near, far, (veth_n, veth_f),
                   ([f"{pair.near_ip}/30"], [f"{pair.far_ip}/30"]), pair.procs):
        yield pair
