"""The JSON API of mamori serve (/api/v1) over real HTTP, and ``mamori check --outside``'s client
against it: the real app under uvicorn on 127.0.153.1, requesters are clients bound to
127.0.153.x, a real nginx on the requester's own address.

Scope in this module: loopback is refused except 127.0.153.0/25 (the operator's allow-list),
so 127.0.153.200 is an out-of-scope requester. 127.0.153.120 is the trusted proxy; 127.0.153.100
is the decoy a request tries to name: it is in scope, and a listener there counts every
connection it gets, so "nothing probed there" is proven, not assumed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

import daemons as dm
from mamori.audit.outside import probe_from_outside
from mamori.model.base import Proto
from mamori.model.path import OutsideState
from mamori.store.models import WebCheckRow
from serve_helpers import Served, serve, start_check, wait_done

SERVER = "127.0.153.1"
PROXY = "127.0.153.120"
DECOY = "127.0.153.100"
OUT_OF_SCOPE = "127.0.153.200"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-api")
    with serve(tmp, host=SERVER, allow_networks=["127.0.153.0/25"], trusted_proxies=[PROXY],
               checks_per_hour=2, requests_per_minute=200, excluded_ports="2024,2222",
               api_max_ports=2) as served:
        yield served


def _rows_for(srv: Served, *peers: str) -> int:
    with srv.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(WebCheckRow)
                                .where(WebCheckRow.peer.in_(peers))).scalar_one())


def _closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class CountingListener:
    """Accepts on host:port in a thread and counts connections (and closes them)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.count = 0
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _wait_api(c: httpx.Client, poll: str, timeout: float = 60) -> dict[str, object]:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        body: dict[str, object] = c.get(poll).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{poll} did not finish")


def test_the_client_gets_its_own_address_probed_against_a_real_nginx(
        srv: Served, tmp_path: Path) -> None:
    me = "127.0.153.10"
    closed, over_cap = _closed_port(me), _closed_port(me)
    with dm.running(dm.start_nginx, tmp_path, me, _closed_port(me)) as nginx:
        (result,) = probe_from_outside(
            srv.url, [(Proto.TCP, nginx.port), (Proto.TCP, 2222), (Proto.TCP, closed),
                      (Proto.TCP, over_cap)], [4], sources={4: me}, deadline=60)
    assert result.error is None, result.error
    assert result.family == 4 and result.seen_address == me and result.check_id
    states = {p.port: (p.state, p.reason) for p in result.ports}
    assert states == {
        over_cap: (OutsideState.NOT_TESTED, "over the service's cap of 2 ports a check"),
        nginx.port: (OutsideState.OPEN, ""),
        closed: (OutsideState.CLOSED, ""),
        2222: (OutsideState.NOT_TESTED, "excluded by the operator of the service"),
    }
    srv.backend.wait_idle(10)
    (request,) = [r for r in srv.scanner.requests if r.address == me]
    assert request.tcp_ports == (nginx.port, closed)  # neither the excluded nor the capped one
    assert request.udp_ports == () and request.checks == ()


def test_the_api_describes_itself_and_answers_in_its_schema(srv: Served) -> None:
    me = "127.0.153.11"
    with srv.client(me) as c:
        about = c.get("/api/v1").json()
        assert about["api"] == 1 and about["seen_address"] == me and about["allowed"] is True
        assert about["limits"]["max_ports"] == 2
        assert about["limits"]["excluded_ports"] == "2024,2222"
        assert about["limits"]["checks_per_hour"] == 2
        port = _closed_port(me)
        r = c.post("/api/v1/checks", json={"ports": [{"proto": "udp", "port": port}]})
        assert r.status_code == 202, r.text
        created = r.json()
        assert r.headers["location"] == created["poll"] == f"/api/v1/checks/{created['id']}"
        assert created["seen_address"] == me and created["status"] == "queued"
        done = _wait_api(c, created["poll"])
        assert done["status"] == "done" and done["seen_address"] == me
        assert done["ports"] == [{"proto": "udp", "port": port, "state": "closed"}]
        assert c.delete(created["poll"]).status_code == 204
        assert c.get(created["poll"]).status_code == 404
        assert c.get("/api/v1/checks/not-an-id").status_code == 404


@pytest.mark.parametrize("field", ["target", "host", "address", "ip", "url", "targets"])
def test_a_body_field_naming_a_target_is_refused_and_nothing_probed(
        srv: Served, field: str) -> None:
    me = "127.0.153.12"
    decoy = CountingListener(DECOY)
    try:
        with srv.client(me) as c:
            body = {"ports": [{"proto": "tcp", "port": decoy.port}], field: DECOY}
            r = c.post("/api/v1/checks", json=body)
            assert r.status_code == 400 and field in r.json()["error"]
            inner = {"ports": [{"proto": "tcp", "port": decoy.port, field: DECOY}]}
            assert c.post("/api/v1/checks", json=inner).status_code == 400
        srv.backend.wait_idle(5)
    finally:
        decoy.close()
    assert decoy.count == 0
    assert _rows_for(srv, me, DECOY) == 0 and DECOY not in srv.scanner.addresses()


def test_headers_and_query_naming_a_target_are_ignored_or_refused(srv: Served) -> None:
    me = "127.0.153.13"
    decoy = CountingListener(DECOY)
    body = {"ports": [{"proto": "tcp", "port": decoy.port}]}
    try:
        with srv.client(me) as c:
            r = c.post(f"/api/v1/checks?target={DECOY}", json=body)
            assert r.status_code == 400 and "query" in r.json()["error"]
            spoof = {"x-forwarded-for": DECOY, "forwarded": f"for={DECOY}", "x-real-ip": DECOY}
            r = c.post("/api/v1/checks", json=body, headers=spoof)
            assert r.status_code == 202 and r.json()["seen_address"] == me
            done = _wait_api(c, r.json()["poll"])
            assert done["seen_address"] == me
            assert done["ports"] == [{"proto": "tcp", "port": decoy.port, "state": "closed"}]
    finally:
        decoy.close()
    assert decoy.count == 0  # the port is open on the decoy: a probe there would have shown
    assert DECOY not in srv.scanner.addresses() and _rows_for(srv, DECOY) == 0
    assert srv.scanner.addresses().count(me) == 1


def test_a_trusted_proxy_names_the_requester_like_for_the_page(srv: Served) -> None:
    behind = "127.0.153.14"
    with srv.client(PROXY, headers={"x-forwarded-for": f"{DECOY}, {behind}"}) as c:
        about = c.get("/api/v1").json()
        assert about["seen_address"] == behind
        r = c.post("/api/v1/checks", json={"ports": [{"proto": "tcp",
                                                      "port": _closed_port(behind)}]})
        assert r.status_code == 202 and r.json()["seen_address"] == behind
        _wait_api(c, r.json()["poll"])
    assert behind in srv.scanner.addresses() and PROXY not in srv.scanner.addresses()
    assert DECOY not in srv.scanner.addresses()


def test_the_api_cannot_be_used_cross_site_from_a_browser(srv: Served) -> None:
    me = "127.0.153.15"
    ports = json.dumps({"ports": [{"proto": "tcp", "port": 22}]})
    with srv.client(me) as c:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            r = c.post("/api/v1/checks", content=ports, headers={"content-type": ctype})
            assert r.status_code == 415, ctype
        for cross in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}):
            r = c.post("/api/v1/checks", content=ports, headers={**JSON, **cross})
            assert r.status_code == 403 and "cross-site" in r.json()["error"]
        pre = c.options("/api/v1/checks", headers={
            "origin": "http://evil.example", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type"})
        assert pre.status_code >= 400 and "access-control-allow-origin" not in pre.headers
        assert c.post("/api/v1/checks", content=b"{", headers=JSON).status_code == 400
    srv.backend.wait_idle(5)
    assert _rows_for(srv, me) == 0 and me not in srv.scanner.addresses()


def test_an_out_of_scope_requester_is_refused_and_the_client_says_why(srv: Served) -> None:
    (result,) = probe_from_outside(srv.url, [(Proto.TCP, 22)], [4],
                                   sources={4: OUT_OF_SCOPE}, deadline=20)
    assert result.error is not None and "refused to check" in result.error
    assert "loopback" in result.error and result.ports == ()
    with srv.client(OUT_OF_SCOPE) as c:
        about = c.get("/api/v1").json()
        assert about["allowed"] is False and "loopback" in about["reason"]
    assert _rows_for(srv, OUT_OF_SCOPE) == 0


def test_only_excluded_ports_are_refused_with_the_reason(srv: Served) -> None:
    me = "127.0.153.16"
    with srv.client(me) as c:
        r = c.post("/api/v1/checks", json={"ports": [{"proto": "tcp", "port": 2024},
                                                     {"proto": "udp", "port": 2222}]})
    assert r.status_code == 422
    assert [p["reason"] for p in r.json()["not_tested"]] == [
        "excluded by the operator of the service"] * 2
    assert _rows_for(srv, me) == 0


def test_one_active_check_and_the_hourly_rate_apply_to_api_clients(srv: Served) -> None:
    me = "127.0.153.17"
    srv.scanner.held.add(me)  # the check keeps running until deleted (API checks are quick)
    with socket.create_server((me, 0)) as tarpit:
        body = {"ports": [{"proto": "tcp", "port": tarpit.getsockname()[1]}]}
        with srv.client(me) as c, srv.client(me) as browser:
            first = c.post("/api/v1/checks", json=body)
            assert first.status_code == 202
            again = c.post("/api/v1/checks", json=body)
            assert again.status_code == 429 and again.headers["retry-after"] == "30"
            assert "already running" in again.json()["error"]
            page = start_check(browser, ports="22")  # the page shares the one active check
            assert page.status_code == 429
            assert c.delete(first.json()["poll"]).status_code == 204
            srv.backend.wait_idle(15)
            second = c.post("/api/v1/checks", json=body)  # the 2nd of 2 an hour
            assert second.status_code == 202
            assert c.delete(second.json()["poll"]).status_code == 204
            srv.backend.wait_idle(15)
            third = c.post("/api/v1/checks", json=body)
            assert third.status_code == 429 and 3000 < int(third.headers["retry-after"]) <= 3600
            late = start_check(browser, ports="22")  # and the page's budget is the same one
            assert late.status_code == 429
    srv.scanner.held.discard(me)
    assert srv.backend.wait_idle(15)
    assert srv.scanner.addresses().count(me) <= 2
    assert _rows_for(srv, me) == 0


def test_page_status_json_of_an_api_check_is_consistent(srv: Served) -> None:
    me = "127.0.153.18"
    with srv.client(me) as c:
        r = c.post("/api/v1/checks", json={"ports": [{"proto": "tcp",
                                                      "port": _closed_port(me)}]})
        assert r.status_code == 202
        status = wait_done(c, r.json()["poll"].replace("/api/v1", ""))
        assert status["status"] == "done"
