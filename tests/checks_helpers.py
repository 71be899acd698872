"""Helpers for exposure-check tests: run one check against one endpoint, and the honeypot."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

from mamori.checks.catalog import default_catalog
from mamori.checks.engine import run_checks
from mamori.checks.observation import CheckOptions
from mamori.model import CheckResult, CheckStatus, Endpoint, PortState, Proto, Reason, Service


def run_check(
    check_id: str, address: str, port: int, service: str, *, proto: Proto = Proto.TCP,
    tls: bool = False, options: CheckOptions | None = None, hostname: str | None = None,
) -> CheckResult:
    """Run one catalog check against a live endpoint; return its single result."""
    spec = default_catalog()[check_id]
    ep = Endpoint(address, port, proto, PortState.OPEN, Reason.SYN_ACK)
    svc = Service(name=service, tls=tls)
    results = asyncio.run(run_checks([spec], ep, svc, hostname=hostname, options=options))
    assert len(results) == 1, results
    return results[0]


def assert_finding(result: CheckResult) -> None:
    assert result.status is CheckStatus.FINDING, result.summary
    assert result.evidence is not None and result.evidence.test
    assert result.remediation.get("linux") and result.references


def assert_passed(result: CheckResult) -> None:
    assert result.status is CheckStatus.PASSED, result.summary


# --- the "yes to everything" honeypot ---------------------------------------------------------
# It greets like every protocol at once and answers every line with a success code. A check
# whose matchers accept this is over-broad (nuclei's CI does the same with its templates).

YES_GREETING = (
    b"220 yes.example ESMTP FTP ready\r\n+OK POP3 ready\r\n* OK IMAP4rev1 ready\r\n"
    b"SSH-2.0-OpenSSH_9.2p1 yes\r\nRFB 003.008\n@RSYNCD: 31.0\n"
)


def _yes_reply(line: bytes) -> bytes:
    upper = line.strip().upper()
    if upper.startswith((b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"TRACE", b"DELETE",
                         b"CONNECT", b"PROPFIND")):
        body = b"OK yes everything " + line.strip()[:200]
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)
    return b"+OK\r\n250 OK\r\n230 OK\r\n$2\r\nOK\r\n"


class YesServer:
    """TCP server on (host, port) that says yes to everything, and a UDP twin echoing "OK"."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.tcp = socket.create_server((host, port), reuse_port=False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._tcp_loop, daemon=True),
                        threading.Thread(target=self._udp_loop, daemon=True)]

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.sendall(YES_GREETING)
                for _ in range(64):
                    data = conn.recv(4096)
                    if not data:
                        return
                    for line in data.split(b"\n"):
                        if line.strip():
                            conn.sendall(_yes_reply(line))

    def _tcp_loop(self) -> None:
        self.tcp.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _udp_loop(self) -> None:
        self.udp.settimeout(0.2)
        while not self.stop.is_set():
            try:
                _, peer = self.udp.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                self.udp.sendto(b"OK yes", peer)

    def __enter__(self) -> YesServer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.tcp.close()
        self.udp.close()
        for t in self.threads:
            t.join(timeout=2)


@contextlib.contextmanager
def yes_server(host: str, port: int) -> Iterator[YesServer]:
    with YesServer(host, port) as server:
        yield server
