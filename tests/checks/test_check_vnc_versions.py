"""vnc-no-authentication across RFB 3.3, 3.7 and 3.8, and a refusal sent with the version line.

TigerVNC's Xvnc (tests/checks/test_check_remote.py) always announces RFB 3.8, so the older
versions' layouts (3.3: the server picks one u32 type; 3.7: a list, no SecurityResult for None)
come from faithful fakes here, each on its own 127.0.85.x address. A server that sends its
version line and its refusal in one segment must be reported with the server's reason, never
"incomplete RFB security message" (issue #14).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import pytest

from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    PortState,
    Proto,
    Reason,
    Service,
)
from threaded_server import ThreadedServer

HOST = "127.0.85.20"
REASON = b"Too many security failures"
NAME = b"fake-desktop"
SERVER_INIT = struct.pack(">HHBBBBHHHBBB3xI", 800, 600, 32, 24, 0, 1, 255, 255, 255,
                          16, 8, 0, len(NAME)) + NAME


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def rfb(version: bytes, types: tuple[int, ...]) -> Callable[[socket.socket], None]:
    """An RFB server announcing ``version`` that offers ``types`` the way that version does."""
    def handle(conn: socket.socket) -> None:
        conn.sendall(b"RFB " + version + b"\n")
        _recv_exact(conn, 12)
        if version == b"003.003":
            conn.sendall(struct.pack(">I", types[0]))
            chosen = types[0]
        else:
            conn.sendall(bytes([len(types), *types]))
            chosen = _recv_exact(conn, 1)[0]
        if chosen != 1:
            conn.recv(64)  # a VncAuth client would answer a challenge; we never send one
            return
        if version == b"003.008":
            conn.sendall(b"\x00\x00\x00\x00")
        _recv_exact(conn, 1)  # ClientInit
        conn.sendall(SERVER_INIT)
        conn.recv(64)
    return handle


def refuse_in_one_segment(conn: socket.socket) -> None:
    # Version line and refusal (count 0, reason) in one write, before the client's version.
    conn.sendall(b"RFB 003.008\n\x00" + struct.pack(">I", len(REASON)) + REASON)


def check(port: int) -> CheckResult:
    spec = load_check(CATALOG_DIR / "vnc-no-authentication.yaml")
    ep = Endpoint(HOST, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name="vnc")))
    assert len(results) == 1, results
    return results[0]


@pytest.mark.parametrize("version,port", [(b"003.003", 15901), (b"003.007", 15902),
                                          (b"003.008", 15903)])
def test_security_none_is_confirmed_in_every_rfb_version(version: bytes, port: int) -> None:
    with ThreadedServer(HOST, port, rfb(version, (1,) if version == b"003.003" else (2, 1))):
        result = check(port)
    assert result.status is CheckStatus.FINDING, result.summary
    assert result.confidence is Confidence.CONFIRMED, result.summary
    assert result.evidence is not None
    assert result.evidence.facts["desktop_name"] == "fake-desktop"
    assert result.evidence.facts["version"] == version.decode().replace("00", "").lstrip("0")


@pytest.mark.parametrize("version,port", [(b"003.003", 15904), (b"003.007", 15905)])
def test_vnc_auth_only_passes_in_older_rfb_versions(version: bytes, port: int) -> None:
    with ThreadedServer(HOST, port, rfb(version, (2,))):
        result = check(port)
    assert result.status is CheckStatus.PASSED, result.summary
    assert result.evidence is not None
    assert result.evidence.facts["security_types"] == "VNC Authentication"


def test_refusal_sent_with_the_version_line_is_read() -> None:
    with ThreadedServer(HOST, 15906, refuse_in_one_segment):
        result = check(15906)
    # The server told us nothing about its security types: not tested, with its reason.
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "incomplete" not in result.summary
    assert "Too many security failures" in result.summary


def test_rfb_3_3_refusal_in_one_segment_is_read() -> None:
    # TigerVNC's blacklist answer: "RFB 003.003\n", then type 0 and the reason, in one write.
    def refuse(conn: socket.socket) -> None:
        conn.sendall(b"RFB 003.003\n\x00\x00\x00\x00" + struct.pack(">I", len(REASON)) + REASON)

    with ThreadedServer(HOST, 15907, refuse):
        result = check(15907)
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "Too many security failures" in result.summary


@pytest.mark.daemon
def test_real_xvnc_blacklisting_us_is_not_tested_with_its_reason() -> None:
    """Xvnc's blacklist answer is "RFB 003.003\\n" and the refusal in one segment."""
    import fixtures_remote as fr
    from daemons import running

    host, port = "127.0.85.21", 15910
    with fr.world_readable_dir() as base, running(
        fr.start_xvnc, base / "vnc", host, port, 23, password=True,
        extra=("-BlacklistThreshold", "1", "-BlacklistTimeout", "60"),
    ):
        # TigerVNC counts a connection that ends before authenticating as a failure; with
        # a threshold of 1 the fixture's readiness probe was one: now it refuses us.
        socket.create_connection((host, port), timeout=5).close()
        spec = load_check(CATALOG_DIR / "vnc-no-authentication.yaml")
        ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
        result = asyncio.run(run_checks([spec], ep, Service(name="vnc")))[0]
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "Too many security failures" in result.summary, result.summary
