"""``probe_from_outside`` against services that lie, stall, flood or redirect: every failure is
a bounded, recorded error in ``OutsideResult.error``, never an exception or a hang.

Addresses: hostile services on 127.0.154.1, the "other host" a redirect names 127.0.154.2.
(The real ``mamori serve`` end to end is in tests/serve/test_serve_api.py.)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mamori.audit.outside import probe_from_outside
from mamori.model.base import Proto
from mamori.model.path import OutsideState
from threaded_server import ThreadedServer

HOST = "127.0.154.1"
OTHER = "127.0.154.2"
PORTS = [(Proto.TCP, 22), (Proto.TCP, 80)]
CHECK_ID = "c" * 40


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            want = int(line.split(b":", 1)[1])
            while len(rest) < want:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                rest += chunk
    return head


def _answer(conn: socket.socket, status: str, body: bytes, *extra: str) -> None:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}",
            "Content-Type: application/json", "Connection: close", *extra]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


@contextmanager
def service(handle: Callable[[socket.socket], None], host: str = HOST) -> Iterator[str]:
    with socket.socket() as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    with ThreadedServer(host, port, handle, timeout=30):
        yield f"http://{host}:{port}"


def _created() -> bytes:
    return json.dumps({"api": 1, "id": CHECK_ID, "status": "queued", "seen_address": "127.0.0.1",
                       "poll": f"/api/v1/checks/{CHECK_ID}",
                       "not_tested": [{"proto": "tcp", "port": 80, "state": "not-tested",
                                       "reason": "over the service's cap of 1 ports a check"}]}
                      ).encode()


def _fast(url: str, **kw: float) -> tuple[str | None, float]:
    start = time.monotonic()
    (result,) = probe_from_outside(url, PORTS, [4], timeout=kw.get("timeout", 2.0),
                                   deadline=kw.get("deadline", 10.0), sleep=lambda s: None)
    return result.error, time.monotonic() - start


def test_a_well_behaved_service_is_polled_until_done_and_cap_ports_merged() -> None:
    polls: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        head = _read_request(conn)
        if head.startswith(b"POST /api/v1/checks "):
            assert b"Content-Type: application/json" in head
            _answer(conn, "202 Accepted", _created())
            return
        polls.append(head.split(b"\r\n", 1)[0])
        status = "running" if len(polls) < 3 else "done"
        body = {"api": 1, "id": CHECK_ID, "status": status, "seen_address": "127.0.0.1",
                "percent": 50}
        if status == "done":
            body["ports"] = [{"proto": "tcp", "port": 22, "state": "open"}]
        _answer(conn, "200 OK", json.dumps(body).encode())

    with service(handle) as url:
        (result,) = probe_from_outside(url, PORTS, [4], sleep=lambda s: None)
    assert result.error is None and result.family == 4 and result.check_id == CHECK_ID
    assert result.seen_address == "127.0.0.1"
    assert [(p.port, p.state) for p in result.ports] == [
        (80, OutsideState.NOT_TESTED), (22, OutsideState.OPEN)]
    assert result.ports[0].reason.startswith("over the service's cap")
    assert polls == [f"GET /api/v1/checks/{CHECK_ID} HTTP/1.1".encode()] * 3


def test_garbage_json_is_an_error() -> None:
    def handle(conn: socket.socket) -> None:
        _read_request(conn)
        _answer(conn, "202 Accepted", b"{not json at all")

    with service(handle) as url:
        error, _ = _fast(url)
    assert error is not None and "not the API's" in error


def test_a_huge_body_is_refused_by_its_length_and_without_one() -> None:
    def declared(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 50000000\r\n\r\n" + b"{" * 1000)

    def endless(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n")
        for _ in range(1000):  # 64 MiB unless the client stops reading
            conn.sendall(b"[" * 65536)

    for handle, words in ((declared, "too large"), (endless, "larger than")):
        with service(handle) as url:
            error, took = _fast(url)
        assert error is not None and words in error, error
        assert took < 10


def test_a_stalled_or_trickling_service_is_bounded() -> None:
    gate = threading.Event()

    def stall(conn: socket.socket) -> None:
        _read_request(conn)
        gate.wait(20)

    def trickle(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\n")
        for _ in range(100):  # one header byte every 0.5 s: never a whole read timeout
            if gate.wait(0.5):
                return
            conn.sendall(b"X")

    try:
        with service(stall) as url:
            error, took = _fast(url, timeout=1.0)
        assert error is not None and "stalled" in error and took < 5
        with service(trickle) as url:
            error, took = _fast(url, timeout=1.0)  # whole-request deadline: 3 x timeout
        assert error is not None and "within" in error and took < 6, (error, took)
    finally:
        gate.set()


def test_a_redirect_to_another_host_is_not_followed() -> None:
    hits: list[int] = []

    def other(conn: socket.socket) -> None:
        hits.append(1)
        _read_request(conn)
        _answer(conn, "202 Accepted", _created())

    with service(other, OTHER) as elsewhere:
        def redirect(conn: socket.socket) -> None:
            _read_request(conn)
            _answer(conn, "307 Temporary Redirect", b"", f"Location: {elsewhere}/api/v1/checks")

        with service(redirect) as url:
            error, _ = _fast(url)
    assert error is not None and "redirect" in error and "not followed" in error
    assert OTHER in error and hits == []


def test_rate_limited_refused_and_out_of_scope_are_named() -> None:
    def limited(conn: socket.socket) -> None:
        _read_request(conn)
        _answer(conn, "429 Too Many Requests",
                b'{"api": 1, "error": "too many checks from 127.0.0.1"}', "Retry-After: 1800")

    def scope(conn: socket.socket) -> None:
        _read_request(conn)
        _answer(conn, "403 Forbidden", b'{"api": 1, "error": "it is a loopback address"}')

    with service(limited) as url:
        error, _ = _fast(url)
    assert error is not None and "rate-limited" in error and "retry after 60 s" in error
    with service(scope) as url:
        error, _ = _fast(url)
    assert error is not None and "refused to check" in error and "loopback" in error
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        error, _ = _fast(f"http://{HOST}:{port}")
    assert error is not None and "refused the connection" in error


def test_a_family_the_url_cannot_reach_is_not_tested_with_the_reason() -> None:
    v4, v6 = probe_from_outside(f"http://{HOST}:1", PORTS, [4, 6], timeout=1.0,
                                sleep=lambda s: None)
    assert v4.family == 4 and v6.family == 6
    assert v6.error is not None and "names an IPv4 address" in v6.error
    assert v6.error.startswith("not tested over IPv6")
    (bad,) = probe_from_outside("ftp://example.invalid/", PORTS, [4])
    assert bad.error is not None and "http://" in bad.error


def test_an_out_of_scope_refusal_keeps_the_address_the_service_saw() -> None:
    """A service refusing a CGNAT address still says which address it saw: that is how the
    internet sees the line (the joined verdict names it in the router step)."""
    def scope(conn: socket.socket) -> None:
        _read_request(conn)
        _answer(conn, "403 Forbidden", json.dumps({
            "api": 1, "error": "it is a carrier-grade NAT address (100.64.0.0/10)",
            "seen_address": "100.64.1.2"}).encode())

    def liar(conn: socket.socket) -> None:
        _read_request(conn)
        _answer(conn, "403 Forbidden", json.dumps({
            "api": 1, "error": "no", "seen_address": "x" * 500}).encode())

    with service(scope) as url:
        (result,) = probe_from_outside(url, PORTS, [4], timeout=2.0, deadline=10.0,
                                       sleep=lambda s: None)
    assert result.seen_address == "100.64.1.2"
    assert result.error is not None and "carrier-grade NAT" in result.error
    with service(liar) as url:
        (result,) = probe_from_outside(url, PORTS, [4], timeout=2.0, deadline=10.0,
                                       sleep=lambda s: None)
    assert result.seen_address is None and result.error is not None
