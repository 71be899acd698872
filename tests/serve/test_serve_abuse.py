"""mamori serve over real HTTP: the real app under uvicorn on 127.0.150.1, visitors are
clients bound to 127.0.151.x. Every abuse case is refused AND the recording scanner shows
that nothing was scanned (and nothing was queued) for it. Also: the whole flow against a real
redis-server on the visitor's address, deletion, admin pages, a trusted proxy.

Scope in this module: loopback is refused except 127.0.151.0/25 (an operator allow-list), so
127.0.151.200 stands for a forbidden peer. 127.0.151.120 is the trusted proxy.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import daemons as dm
from mamori.serve.app import maintain
from mamori.serve.passwords import hash_password
from mamori.serve.tokens import Signer
from mamori.store import serve as db
from mamori.store.models import WebCheckRow
from serve_helpers import Served, csrf_of, serve, start_check, wait_done

ADMIN_PASSWORD = "a long admin password for tests"
PROXY = "127.0.151.120"
FORBIDDEN = "127.0.151.200"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-abuse")
    with serve(tmp, allow_networks=["127.0.151.0/25"], trusted_proxies=[PROXY],
               admin_users={"admin": hash_password(ADMIN_PASSWORD, n=2**10)},
               checks_per_hour=2, requests_per_minute=40, login_attempts=3,
               body_timeout=1.0) as served:
        yield served


def _rows_for(srv: Served, *peers: str) -> int:
    with srv.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(WebCheckRow)
                                .where(WebCheckRow.peer.in_(peers))).scalar_one())


def nothing_scanned(srv: Served, *peers: str) -> None:
    """Neither scanned nor queued, now or a moment later."""
    srv.backend.wait_idle(10)
    assert not set(peers) & set(srv.scanner.addresses()), srv.scanner.addresses()
    assert _rows_for(srv, *peers) == 0


def closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- the page itself -------------------------------------------------------------------------

def test_landing_page_shows_the_peer_and_keeps_to_itself(srv: Served) -> None:
    with srv.client("127.0.151.10") as c:
        r = c.get("/")
    assert r.status_code == 200
    assert "127.0.151.10" in r.text and 'id="proceed"' in r.text
    assert "never probes port(s) 2024" in _text(r.text)
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    # No CDN, fonts or scripts from elsewhere: every reference is to this site.
    refs = re.findall(r'(?:src|href|action)="([^"]*)"', r.text)
    assert refs and all(ref.startswith("/") for ref in refs), refs
    for path in ("/docs", "/openapi.json", "/redoc"):
        with srv.client("127.0.151.10") as c:
            assert c.get(path).status_code == 404


def test_a_visitor_finds_their_own_open_redis_and_deletes_the_result(
        srv: Served, tmp_path: Path) -> None:
    visitor = "127.0.151.11"
    port = closed_port(visitor)
    with dm.running(dm.start_redis, tmp_path, visitor, port), srv.client(visitor) as c:
        r = start_check(c, ports=f"{port},2024", target="127.0.151.99")
        assert r.status_code == 303, _text(r.text)[:300]
        location = r.headers["location"]
        assert re.fullmatch(r"/checks/[A-Za-z0-9_-]{43}", location)
        progress = c.get(location)
        assert progress.status_code == 200
        status = wait_done(c, location)
        assert status["status"] == "done" and status["percent"] == 100
        page = c.get(location)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = _text(page.text)
    assert "Redis answers without a password" in text and f"{port}/tcp" in text
    assert "What this means" in text
    # Exactly the visitor's address, exactly the asked port (2024 dropped, "target" ignored).
    (request,) = [r for r in srv.scanner.requests if r.address == visitor]
    assert request.tcp_ports == (port,)
    assert request.identify is True  # the page names what answers
    assert "127.0.151.99" not in srv.scanner.addresses()
    check = db.get_by_token(srv.store, location.rsplit("/", 1)[1])
    assert check is not None and check.scan_id is not None
    # Someone else (another browser) cannot delete it, even with a valid token of their own.
    with srv.client("127.0.151.12") as other:
        token = csrf_of(other.get("/").text)
        assert 'id="delete"' not in other.get(location).text
        assert other.post(f"{location}/delete", data={"csrf": token}).status_code == 403
    assert db.get(srv.store, check.id) is not None
    with srv.client(visitor, cookies=c.cookies) as owner:
        assert owner.post(f"{location}/delete", data={}).status_code == 403  # no CSRF token
        gone = owner.post(f"{location}/delete", data={"csrf": csrf_of(page.text)})
        assert gone.status_code == 200 and "Deleted" in gone.text
        assert owner.get(location).status_code == 404
    assert db.get(srv.store, check.id) is None and srv.store.get_scan(check.scan_id) is None


# -- abuse -------------------------------------------------------------------------------------

def test_spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored(srv: Served) -> None:
    visitor, spoofed = "127.0.151.13", "127.0.151.14"
    spoof = {"x-forwarded-for": spoofed, "forwarded": f"for={spoofed}", "x-real-ip": spoofed}
    with srv.client(visitor, headers=spoof) as c:
        landing = c.get("/")
        assert "127.0.151.13" in landing.text and spoofed not in landing.text
        r = c.post("/checks", data={"csrf": csrf_of(landing.text), "profile": "custom",
                                    "ports": str(closed_port(visitor)), "consent": "yes"})
        assert r.status_code == 303
        wait_done(c, r.headers["location"])
    assert visitor in srv.scanner.addresses()
    nothing_scanned(srv, spoofed)


def test_a_forbidden_peer_is_refused_whatever_it_claims(srv: Served) -> None:
    claimed = "127.0.151.15"
    with srv.client(FORBIDDEN, headers={"x-forwarded-for": claimed}) as c:
        landing = c.get("/")
        assert landing.status_code == 200
        assert "cannot be checked" in landing.text and 'id="proceed"' not in landing.text
        assert "loopback" in landing.text
        token = csrf_of(c.get("/admin/login").text)  # a valid token for this visitor cookie
        r = c.post("/checks", data={"csrf": token, "profile": "common", "consent": "yes"})
    assert r.status_code == 403 and "loopback" in r.text
    nothing_scanned(srv, FORBIDDEN, claimed)


def test_posts_without_a_right_csrf_token_are_refused(srv: Served) -> None:
    visitor = "127.0.151.16"
    form = {"profile": "custom", "ports": "22", "consent": "yes"}
    with srv.client("127.0.151.17") as stranger:
        foreign_token = csrf_of(stranger.get("/").text)
    with srv.client(visitor) as c:
        assert c.post("/checks", data=form).status_code == 403  # no cookie, no token
        token = csrf_of(c.get("/").text)
        assert c.post("/checks", data=form).status_code == 403  # cookie, no token
        assert c.post("/checks", data={**form, "csrf": "x" + token[1:]}).status_code == 403
        assert c.post("/checks", data={**form, "csrf": foreign_token}).status_code == 403
        forged = Signer(b"another key, another server, 32b").csrf_token(
            c.cookies["mamori_v"], time.time())
        assert c.post("/checks", data={**form, "csrf": forged}).status_code == 403
        ok_token = {**form, "csrf": token}
        # A right token in a cross-site request (a form on another site) is still refused.
        assert c.post("/checks", data=ok_token,
                      headers={"origin": "http://evil.example"}).status_code == 403
        assert c.post("/checks", data=ok_token,
                      headers={"sec-fetch-site": "cross-site"}).status_code == 403
    nothing_scanned(srv, visitor)


def test_a_foreign_host_header_is_refused(srv: Served) -> None:
    visitor = "127.0.151.18"
    with srv.client(visitor) as c:
        token = csrf_of(c.get("/").text)
        for host in ("evil.example", "127.0.150.1.evil.example", "localhost", ""):
            r = c.post("/checks", headers={"host": host},
                       data={"csrf": token, "profile": "custom", "ports": "22",
                             "consent": "yes"})
            assert r.status_code == 400, host
            assert c.get("/", headers={"host": host}).status_code == 400
    nothing_scanned(srv, visitor)


def test_a_flood_gets_429_with_retry_after(srv: Served) -> None:
    visitor = "127.0.151.19"
    with srv.client(visitor) as c:
        token = csrf_of(c.get("/").text)
        codes = [c.get("/healthz").status_code for _ in range(45)]
        assert codes.count(200) == 39 and codes[-1] == 429
        r = c.post("/checks", data={"csrf": token, "profile": "custom", "ports": "22",
                                    "consent": "yes"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get("/static/serve.css").status_code == 200  # assets are not counted
    nothing_scanned(srv, visitor)


def test_more_checks_than_allowed_per_hour_get_429(srv: Served) -> None:
    visitor = "127.0.151.20"
    port = closed_port(visitor)
    with srv.client(visitor) as c:
        for _ in range(2):
            r = start_check(c, ports=str(port))
            assert r.status_code == 303
            wait_done(c, r.headers["location"])
        r = start_check(c, ports=str(port))
    assert r.status_code == 429 and 3000 < int(r.headers["retry-after"]) <= 3600
    srv.backend.wait_idle(10)
    assert srv.scanner.addresses().count(visitor) == 2
    assert _rows_for(srv, visitor) == 2


def test_one_running_check_per_address(srv: Served) -> None:
    visitor = "127.0.151.21"
    with socket.create_server((visitor, 0)) as tarpit:  # accepts, never answers
        port = tarpit.getsockname()[1]
        with srv.client(visitor) as c, srv.client(visitor) as second_browser:
            first = start_check(c, ports=str(port))
            assert first.status_code == 303
            again = start_check(c, ports=str(port))  # the same browser: back to its check
            assert again.status_code == 303
            assert again.headers["location"] == first.headers["location"]
            other = start_check(second_browser, ports=str(port))
            assert other.status_code == 429 and other.headers["retry-after"] == "30"
            # The owner stops it: cancelled and deleted.
            page = c.get(first.headers["location"])
            assert "Stop and delete" in page.text
            stop = c.post(f"{first.headers['location']}/delete",
                          data={"csrf": csrf_of(page.text)})
            assert stop.status_code == 200
    assert srv.backend.wait_idle(15)
    assert srv.scanner.addresses().count(visitor) == 1
    assert _rows_for(srv, visitor) == 0


def test_the_global_cap_gets_429(srv: Served) -> None:
    visitor = "127.0.151.22"
    now = datetime.now(UTC)
    fillers = [db.create_check(
        srv.store, token=f"filler-{i}", peer=f"192.0.2.{i}", prefix=f"192.0.2.{i}",
        profile="custom", tcp_ports=[1], udp_ports=[], checks=[], owner_hash="0" * 64,
        now=now, expires_at=now + timedelta(days=1), max_active=99) for i in range(8)]
    try:
        with srv.client(visitor) as c:
            r = start_check(c, ports="22")
        assert r.status_code == 429 and r.headers["retry-after"] == "60"
        assert "busy" in r.text
    finally:
        for check_id in fillers:  # never submitted: they only took the slots
            db.delete_check(srv.store, check_id)
    nothing_scanned(srv, visitor)


def test_guessed_and_expired_result_urls(srv: Served) -> None:
    with srv.client("127.0.151.23") as c:
        for guess in ("1", "abc", "A" * 43, "..%2Fadmin", "x" * 300):
            r = c.get(f"/checks/{guess}")
            assert r.status_code == 404, guess
            assert c.get(f"/checks/{guess}/status").status_code == 404
        r = start_check(c, ports=str(closed_port("127.0.151.23")))
        location = r.headers["location"]
        wait_done(c, location)
        token = location.rsplit("/", 1)[1]
        with srv.store.engine.begin() as conn:
            conn.execute(update(WebCheckRow).where(WebCheckRow.token == token)
                         .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        assert c.get(location).status_code == 410
        assert c.get(f"{location}/status").status_code == 410
        maintain(srv.app.state.serve)
        assert c.get(location).status_code == 404


def test_trusted_proxy_says_who_the_visitor_is(srv: Served) -> None:
    behind = "127.0.151.24"
    chain = {"x-forwarded-for": f"6.6.6.6, {behind}"}  # the visitor wrote 6.6.6.6 itself
    with srv.client(PROXY, headers=chain) as c:
        assert behind in c.get("/").text
        r = start_check(c, ports=str(closed_port(behind)))
        assert r.status_code == 303
        wait_done(c, r.headers["location"])
    assert behind in srv.scanner.addresses()
    assert "6.6.6.6" not in srv.scanner.addresses()
    with srv.client(PROXY) as c:  # the proxy forgot the header: never scan the proxy
        landing = c.get("/")
        assert "could not be determined" in landing.text and 'id="proceed"' not in landing.text
        token = csrf_of(c.get("/admin/login").text)
        r = c.post("/checks", data={"csrf": token, "profile": "custom", "ports": "22",
                                    "consent": "yes"})
        assert r.status_code == 400
    nothing_scanned(srv, PROXY)


def test_hostile_requests_get_bounded_errors(srv: Served) -> None:
    visitor = "127.0.151.25"
    with srv.client(visitor) as c:
        token = csrf_of(c.get("/").text)
        big = c.post("/checks", content=b"a=" + b"x" * 100_000,
                     headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        many = "&".join(f"f{i}=1" for i in range(200)) + f"&csrf={token}"
        r = c.post("/checks", content=many.encode(),
                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code in (400, 403)
        r = c.post("/checks", data={"csrf": token, "profile": "custom", "consent": "yes",
                                    "ports": "1-65535"})
        assert r.status_code == 400 and "at most 20 ports" in r.text
        r = c.post("/checks", data={"csrf": token, "profile": "custom", "ports": "22"})
        assert r.status_code == 400 and "Confirm" in r.text  # no consent
    # A body that trickles in is cut off at the deadline (1 s here), not waited for.
    with socket.create_connection(("127.0.150.1", int(srv.url.rsplit(":", 1)[1]))) as s:
        s.settimeout(5)
        s.sendall(b"POST /checks HTTP/1.1\r\nHost: 127.0.150.1\r\nContent-Length: 500\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\ncsrf=")
        started = time.monotonic()
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4
    nothing_scanned(srv, visitor)


# -- admin -------------------------------------------------------------------------------------

def test_admin_pages_need_a_login(srv: Served) -> None:
    with srv.client("127.0.151.26") as c:
        for path in ("/admin", "/admin/stats", "/admin/blocked"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/admin/login"
            assert "127.0.151" not in r.text
        c.cookies.set("mamori_admin", "garbage", path="/admin")
        assert c.get("/admin").status_code == 303
        forged = Signer(b"another key, another server, 32b").session("admin", time.time(), 999)
        c.cookies.set("mamori_admin", forged, path="/admin")
        assert c.get("/admin").status_code == 303
        token = csrf_of(c.get("/admin/login").text)
        assert c.post("/admin/blocked", data={"csrf": token, "network": "127.0.151.0/24"}
                      ).status_code == 403
    assert db.list_blocks(srv.store) == []


def test_admin_login_is_rate_limited_then_works(srv: Served) -> None:
    with srv.client("127.0.151.27") as c:
        token = csrf_of(c.get("/admin/login").text)
        codes = [c.post("/admin/login", data={"csrf": token, "user": "admin",
                                              "password": f"guess {i}"}).status_code
                 for i in range(4)]
        assert codes == [401, 401, 401, 429]
        right = c.post("/admin/login", data={"csrf": token, "user": "admin",
                                             "password": ADMIN_PASSWORD})
        assert right.status_code == 429  # even the right password waits its turn
    with srv.client("127.0.151.28") as c:
        login = c.get("/admin/login")
        assert 'method="post"' in login.text
        r = c.post("/admin/login", data={"csrf": csrf_of(login.text), "user": "admin",
                                         "password": ADMIN_PASSWORD})
        assert r.status_code == 303 and "?" not in r.headers["location"]
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        assert ADMIN_PASSWORD not in r.headers["set-cookie"]
        history = c.get("/admin")
        assert history.status_code == 200 and "History" in history.text
        assert c.get("/admin/stats").status_code == 200
        blocked = c.get("/admin/blocked")
        assert "admin login failed" in blocked.text  # the refusal log shows the guesses
        add = c.post("/admin/blocked", data={"csrf": csrf_of(blocked.text),
                                             "network": "127.0.151.29", "reason": "test"})
        assert add.status_code == 303
        assert [b.network for b in db.list_blocks(srv.store)] == ["127.0.151.29/32"]
    with srv.client("127.0.151.29") as blocked_visitor:
        landing = blocked_visitor.get("/")
        assert "does not check your network" in landing.text
        assert 'id="proceed"' not in landing.text
        token = csrf_of(blocked_visitor.get("/admin/login").text)
        r = blocked_visitor.post("/checks", data={"csrf": token, "profile": "custom",
                                                  "ports": "22", "consent": "yes"})
        assert r.status_code == 403 and "does not check your network" in r.text
    nothing_scanned(srv, "127.0.151.29")
    with srv.client("127.0.151.28", cookies=c.cookies) as c2:
        page = c2.get("/admin/blocked")
        (block,) = db.list_blocks(srv.store)
        r = c2.post(f"/admin/blocked/{block.id}/delete", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and db.list_blocks(srv.store) == []


def test_every_request_stayed_on_loopback(srv: Served) -> None:
    """Whatever ran in this module: only visitor addresses, never port 2024."""
    srv.backend.wait_idle(15)
    assert srv.scanner.requests
    for request in srv.scanner.requests:
        assert request.address.startswith("127.0.151.")
        assert 2024 not in request.tcp_ports + request.udp_ports
