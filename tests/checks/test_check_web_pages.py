"""Status pages open to anyone and passwords asked for over plain HTTP, against real apache2
(mod_status, mod_info, Digest), nginx (stub_status, auth_basic, a sign-in page) with a real
php-fpm behind it, each next to a hardened twin that must stay clean; a server that answers
every path with the same generic page; the parsers on hostile bytes."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from http import server as httpd
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_web as fw
import fixtures_web_pages as fp
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.catalog import default_catalog
from mamori.checks.engine import evaluate
from mamori.checks.observation import CheckOptions, Observation, ProbeContext
from mamori.model import CheckStatus, Confidence, Proto, Severity
from mamori.protocols import http_pages

NGINX_OPEN, NGINX_HARD = "127.0.86.1", "127.0.86.2"
APACHE_OPEN, APACHE_HARD = "127.0.86.3", "127.0.86.4"
FPM = "127.0.86.5"
GENERIC = "127.0.86.6"
HTTP, HTTPS, FPM_PORT = 18601, 18602, 18650

STATUS_CHECKS = ("http-server-status-exposed", "http-server-info-exposed")
AUTH_CHECKS = ("http-auth-cleartext", "http-login-form-cleartext")


def _facts(result: object) -> dict[str, str]:
    evidence = result.evidence  # type: ignore[attr-defined]
    assert evidence is not None
    return dict(evidence.facts)


@pytest.fixture(scope="module")
def docroot() -> Iterator[Path]:
    home = fw.world_dir("mamori-web-pages-")
    try:
        yield fp.make_docroot(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def fpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Daemon]:
    work = tmp_path_factory.mktemp("php-fpm")
    with dm.running(fp.start_php_fpm, work, FPM, FPM_PORT) as daemon:
        yield daemon


def _nginx(tmp_path_factory: pytest.TempPathFactory, docroot: Path, host: str,
           hardened: bool) -> Iterator[dm.Daemon]:
    work = tmp_path_factory.mktemp(f"nginx-pages-{host}")
    cert = dm.make_cert(work)
    servers = fp.nginx_servers(docroot, host, HTTP, HTTPS, (FPM, FPM_PORT), cert,
                               hardened=hardened)
    with dm.running(fw.start_nginx_site, work, host, servers, frozenset({HTTPS})) as daemon:
        assert not dm.listeners_on_wildcard([daemon.proc.pid])
        yield daemon


@pytest.fixture(scope="module")
def nginx_open(tmp_path_factory: pytest.TempPathFactory, docroot: Path,
               fpm: dm.Daemon) -> Iterator[dm.Daemon]:
    yield from _nginx(tmp_path_factory, docroot, NGINX_OPEN, hardened=False)


@pytest.fixture(scope="module")
def nginx_hard(tmp_path_factory: pytest.TempPathFactory, docroot: Path,
               fpm: dm.Daemon) -> Iterator[dm.Daemon]:
    yield from _nginx(tmp_path_factory, docroot, NGINX_HARD, hardened=True)


def _apache(tmp_path_factory: pytest.TempPathFactory, docroot: Path, host: str,
            hardened: bool) -> Iterator[dm.Daemon]:
    work = tmp_path_factory.mktemp(f"apache-pages-{host}")
    with dm.running(fp.start_apache_pages, work, host, HTTP, HTTPS, docroot,
                    hardened=hardened) as daemon:
        assert not dm.listeners_on_wildcard([daemon.proc.pid])
        yield daemon


@pytest.fixture(scope="module")
def apache_open(tmp_path_factory: pytest.TempPathFactory, docroot: Path) -> Iterator[dm.Daemon]:
    yield from _apache(tmp_path_factory, docroot, APACHE_OPEN, hardened=False)


@pytest.fixture(scope="module")
def apache_hard(tmp_path_factory: pytest.TempPathFactory, docroot: Path) -> Iterator[dm.Daemon]:
    yield from _apache(tmp_path_factory, docroot, APACHE_HARD, hardened=True)


# --- status pages ------------------------------------------------------------------------------


@pytest.mark.daemon
def test_apache_status_and_info_open_to_anyone(apache_open: dm.Daemon) -> None:
    status = run_check("http-server-status-exposed", APACHE_OPEN, HTTP, "http")
    assert_finding(status)
    facts = _facts(status)
    assert facts["status_kind"] == "apache-status" and facts["status_path"] == "/server-status"
    assert "client addresses and requested URLs shown" in facts["status_facts"]
    assert "apache-info at /server-info" in facts["pages"]
    # Seen over loopback, where `Require local` pages show too: likely, and it says so.
    assert status.confidence is Confidence.LIKELY
    assert "seen from this machine itself" in status.summary
    assert status.summary.startswith("/server-status is a status page (apache-status; ")
    assert "Scoreboard" in (status.evidence.reply or "")  # type: ignore[union-attr]
    info = run_check("http-server-info-exposed", APACHE_OPEN, HTTP, "http")
    assert_finding(info)
    assert _facts(info)["info_path"] == "/server-info"
    assert "modules listed" in _facts(info)["info_facts"]
    assert "server version: Apache/2.4" in _facts(info)["info_facts"]


@pytest.mark.daemon
def test_nginx_stub_status_and_php_fpm_status_open(nginx_open: dm.Daemon) -> None:
    status = run_check("http-server-status-exposed", NGINX_OPEN, HTTP, "http")
    assert_finding(status)
    facts = _facts(status)
    assert facts["status_kind"] == "nginx-stub-status" and facts["status_path"] == "/nginx_status"
    assert "active connections: " in facts["status_facts"]
    assert "php-fpm-status at /fpm-status" in facts["pages"]
    assert "php-fpm-status at /status?full" not in facts["pages"]  # nginx serves no such page
    assert_passed(run_check("http-server-info-exposed", NGINX_OPEN, HTTP, "http"))


@pytest.mark.daemon
@pytest.mark.parametrize("check_id", STATUS_CHECKS)
def test_status_pages_for_one_admin_address_pass(apache_hard: dm.Daemon, nginx_hard: dm.Daemon,
                                                 check_id: str) -> None:
    for host in (APACHE_HARD, NGINX_HARD):
        assert_passed(run_check(check_id, host, HTTP, "http"))
        assert_passed(run_check(check_id, host, HTTPS, "http", tls=True))


def test_a_page_seen_from_the_network_is_confirmed() -> None:
    spec = default_catalog()["http-server-status-exposed"]
    ctx = ProbeContext("192.0.2.7", 80, Proto.TCP, None, None, CheckOptions())
    obs = Observation("t", {"status_kind": "nginx-stub-status", "status_path": "/nginx_status",
                            "status_facts": "active connections: 1", "grade": "remote"})
    result = evaluate(spec, ctx, obs)
    assert result.status is CheckStatus.FINDING and result.confidence is Confidence.CONFIRMED
    assert "anyone can read" in result.summary


class _Generic(httpd.BaseHTTPRequestHandler):
    """200 and the same page for every path, one that talks about server status."""

    def do_GET(self) -> None:
        body = (b"<html><head><title>Server Status</title></head><body><h1>Server Status"
                b"</h1><p>All systems operational. Server uptime: 3 days.</p>"
                b"<p>Active connections: 4</p><p>pool: www</p></body></html>")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _generic_server() -> Iterator[None]:
    srv = httpd.ThreadingHTTPServer((GENERIC, HTTP), _Generic)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_generic_200_on_status_paths_is_not_a_status_page() -> None:
    with _generic_server():
        for check_id in (*STATUS_CHECKS, *AUTH_CHECKS):
            result = run_check(check_id, GENERIC, HTTP, "http")
            assert_passed(result)


# --- passwords over plain HTTP -------------------------------------------------------------------


@pytest.mark.daemon
def test_nginx_basic_auth_and_sign_in_form_over_http(nginx_open: dm.Daemon) -> None:
    auth = run_check("http-auth-cleartext", NGINX_OPEN, HTTP, "http")
    assert_finding(auth)
    facts = _facts(auth)
    assert facts["auth_scheme"] == "Basic" and facts["auth_path"] == "/private/"
    assert facts["realm"] == "Members only"
    assert facts["challenge"].startswith("HTTP/1.1 401 ")
    assert 'WWW-Authenticate: Basic realm="Members only"' in facts["challenge"]
    assert auth.severity is Severity.MEDIUM and auth.confidence is Confidence.CONFIRMED
    assert "WWW-Authenticate: Basic" in (auth.evidence.reply or "")  # type: ignore[union-attr]
    assert "Authorization" not in (auth.evidence.request or "")  # type: ignore[union-attr]
    form = run_check("http-login-form-cleartext", NGINX_OPEN, HTTP, "http")
    assert_finding(form)
    facts = _facts(form)
    # Found through the front page's "Sign in" link, not a guessed path.
    assert facts["form_path"] == "/account/sign-in.html"
    assert facts["form_action"] == f"http://{NGINX_OPEN}:{HTTP}/account/session"
    assert facts["form_method"] == "POST" and facts["password_fields"] == "pass"


class _Redirecting(httpd.BaseHTTPRequestHandler):
    """/ redirects to /portal/, whose page links to /intranet/ (Basic) and /portal/signin
    (a password form posted to an absolute http:// URL); nothing is on the guessed paths."""

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(302, b"", (("Location", f"http://{GENERIC}:{HTTP}/portal/"),))
        elif self.path == "/portal/":
            self._send(200, b'<a href="/intranet/">Intranet</a> <a href="signin">Enter</a>')
        elif self.path == "/intranet/":
            self._send(401, b"no", (("WWW-Authenticate", 'Basic realm="intranet"'),))
        elif self.path == "/portal/signin":
            self._send(200, f'<form method=post action="http://{GENERIC}:{HTTP}/portal/go">'
                            '<input type=password name=secret></form>'.encode())
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_pages_reached_by_redirect_and_links_are_read() -> None:
    srv = httpd.ThreadingHTTPServer((GENERIC, HTTP), _Redirecting)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        auth = run_check("http-auth-cleartext", GENERIC, HTTP, "http")
        form = run_check("http-login-form-cleartext", GENERIC, HTTP, "http")
    finally:
        srv.shutdown()
        srv.server_close()
    assert_finding(auth)
    assert _facts(auth)["auth_path"] == "/intranet/" and _facts(auth)["realm"] == "intranet"
    assert_finding(form)
    assert _facts(form)["form_path"] == "/portal/signin"
    assert _facts(form)["form_action"] == f"http://{GENERIC}:{HTTP}/portal/go"


class _DropsOnePath(httpd.BaseHTTPRequestHandler):
    """404 everywhere, but /secure/ gets its connection closed without a word."""

    def do_GET(self) -> None:
        if self.path == "/secure/":
            self.close_connection = True
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_path_that_could_not_be_asked_is_never_a_pass() -> None:
    srv = httpd.ThreadingHTTPServer((GENERIC, HTTP), _DropsOnePath)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        results = [run_check(c, GENERIC, HTTP, "http") for c in AUTH_CHECKS]
    finally:
        srv.shutdown()
        srv.server_close()
    for result in results:
        assert result.status is CheckStatus.NOT_TESTED, result.summary
        assert "1 of 22 paths could not be fetched" in result.summary


@pytest.mark.daemon
def test_apache_digest_over_http(apache_open: dm.Daemon) -> None:
    auth = run_check("http-auth-cleartext", APACHE_OPEN, HTTP, "http")
    assert_finding(auth)
    facts = _facts(auth)
    assert facts["auth_scheme"] == "Digest" and facts["digest_algorithm"] == "MD5"
    assert facts["realm"] == "Members area" and facts["auth_path"] == "/private/"
    assert auth.severity is Severity.LOW
    assert "Digest" in auth.summary


@pytest.mark.daemon
@pytest.mark.parametrize("check_id", AUTH_CHECKS)
def test_passwords_behind_tls_only_pass(apache_hard: dm.Daemon, nginx_hard: dm.Daemon,
                                        check_id: str) -> None:
    for host in (APACHE_HARD, NGINX_HARD):
        assert_passed(run_check(check_id, host, HTTP, "http"))  # plain HTTP only redirects
        over_tls = run_check(check_id, host, HTTPS, "http", tls=True)
        assert_passed(over_tls)
        if check_id == "http-auth-cleartext":
            # The challenge is there, over TLS: seen, and rightly not a finding.
            assert _facts(over_tls)["auth_scheme"] in ("Basic", "Digest")


# --- parsers -----------------------------------------------------------------------------------


def test_challenges_parsed_from_several_headers() -> None:
    headers = (("WWW-Authenticate", 'Negotiate, Basic realm="a, b"'),
               ("www-authenticate", 'Digest realm="x", nonce="n", algorithm=SHA-256, qop="auth"'))
    got = http_pages.password_challenges(headers)
    assert [(c.scheme, c.realm, c.algorithm) for c in got] == [
        ("Basic", "a, b", ""), ("Digest", "x", "SHA-256")]
    assert http_pages.password_challenges((("WWW-Authenticate", "Bearer"),)) == ()


@pytest.mark.parametrize("action,page,cleartext", [
    ("", "http://h/login", True),
    ("/session", "http://h/login", True),
    ("https://h/session", "http://h/login", False),
    ("http://h/session", "https://h/login", True),
    ("/session", "https://h/login", False),
])
def test_form_targets(action: str, page: str, cleartext: bool) -> None:
    body = f'<form action="{action}" method=POST><input type=PASSWORD name=pw></form>'.encode()
    forms = http_pages.password_forms(body)
    assert len(forms) == 1 and forms[0].password_fields == ("pw",)
    assert http_pages.posts_in_cleartext(forms[0], page) is cleartext


def test_forms_without_password_and_foreign_links_are_ignored() -> None:
    body = (b'<form action="/s"><input name=q></form><a href="http://other/login">x</a>'
            b'<a href="/news/">News</a><a href="/members/login">y</a>'
            b'<a href="/about">Log in here</a><a href="#top">top</a><a href="/">home</a>'
            b'<a href="mailto:a@b">mail</a>')
    assert http_pages.password_forms(body) == ()
    # Links with words of logging in first, then the other same-origin pages.
    assert http_pages.links_to_follow(body, "http://h:80/") == (
        "/members/login", "/about", "/news/")
    assert http_pages.links_to_follow(body, "http://h:80/", limit=1) == ("/members/login",)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_parsers_never_raise_on_hostile_bytes(data: bytes) -> None:
    http_pages.status_page(data)
    http_pages.password_forms(data)
    http_pages.links_to_follow(data, "http://h/")
    http_pages.password_challenges((("WWW-Authenticate", data.decode("latin-1")),))


def test_status_page_kinds_from_their_formats() -> None:
    stub = (b"Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n"
            b"Reading: 0 Writing: 1 Waiting: 0 \n")
    page = http_pages.status_page(stub)
    assert page is not None and page.kind == "nginx-stub-status"
    fpm = (b"pool:                 www\nprocess manager:      dynamic\n"
           b"start time:           08/Dec/2026:02:00:00 +0000\nstart since:          10\n"
           b"accepted conn:        3\nlisten queue:         0\n")
    page = http_pages.status_page(fpm)
    assert page is not None and page.kind == "php-fpm-status"
    auto = b"ServerVersion: Apache/2.4\nTotal Accesses: 3\nBusyWorkers: 1\nScoreboard: _W__..\n"
    page = http_pages.status_page(auto)
    assert page is not None and page.kind == "apache-status"
    assert http_pages.status_page(b"Active connections: 4\nall good\n") is None
