"""Web exposure checks against real nginx and apache2 (misconfigured and hardened), a server
that answers 200 to every path (soft 404), and the parsers on hostile bytes."""

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
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.model import CheckStatus, Confidence, Severity
from mamori.protocols import http

NGINX_OPEN = "127.0.65.1"
NGINX_HARD = "127.0.65.2"
APACHE_OPEN = "127.0.65.3"
APACHE_HARD = "127.0.65.4"
SOFT404 = "127.0.65.5"
NOTHING = "127.0.65.6"
SITE, DEFAULT = 18081, 18082
APACHE = 18080

FILE_CHECKS = ("http-exposed-git", "http-exposed-env", "http-exposed-ds-store",
               "http-exposed-backup")
ALL_WEB = (*FILE_CHECKS, "http-directory-listing", "http-dangerous-methods",
           "webdav-put-allowed", "http-version-disclosure", "http-default-page")

_DOTFILES_DENIED = "    location ~ /\\. { deny all; }\n"
_BACKUPS_DENIED = "    location ~* (\\.(bak|old|orig|sql|zip|tar|tgz|gz|swp)|~)$ { deny all; }\n"


@contextlib.contextmanager
def _started(start: object) -> Iterator[dm.Daemon]:
    with dm.running(start) as daemon:  # type: ignore[arg-type]
        assert not dm.listeners_on_wildcard([daemon.proc.pid]), "listens on a wildcard"
        yield daemon


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    home = fw.world_dir("mamori-web-site-")
    try:
        yield fw.make_site(home / "www")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def nginx_open(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fw.Daemon]:
    work = tmp_path_factory.mktemp("nginx-open")
    servers = {
        SITE: (f"    root {site};\n    autoindex on;\n    dav_methods PUT DELETE;\n"
               "    dav_access user:rw group:r all:r;\n"),
        DEFAULT: "    root /usr/share/nginx/html;\n    index index.html;\n",
    }
    with _started(lambda: fw.start_nginx_site(work, NGINX_OPEN, servers)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def nginx_hard(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fw.Daemon]:
    work = tmp_path_factory.mktemp("nginx-hard")
    # Same files on disk; only the configuration differs.
    servers = {SITE: f"    root {site};\n    server_tokens off;\n" + _DOTFILES_DENIED
               + _BACKUPS_DENIED}
    with _started(lambda: fw.start_nginx_site(work, NGINX_HARD, servers)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def apache_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fw.Daemon]:
    work = tmp_path_factory.mktemp("apache-open")
    home = fw.world_dir("mamori-apache-site-")
    root = fw.make_site(home / "www", leaky=False)
    default = Path("/usr/share/apache2/default-site/index.html")
    if not default.exists():
        pytest.skip("apache2's default page is not installed")
    shutil.copy(default, root / "index.html")
    (root / "index.html").chmod(0o644)
    try:
        with _started(lambda: fw.start_apache(work, APACHE_OPEN, APACHE, root,
                                              hardened=False)) as daemon:
            yield daemon
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def apache_hard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fw.Daemon]:
    work = tmp_path_factory.mktemp("apache-hard")
    home = fw.world_dir("mamori-apache-site-")
    root = fw.make_site(home / "www", leaky=False)
    try:
        with _started(lambda: fw.start_apache(work, APACHE_HARD, APACHE, root,
                                              hardened=True)) as daemon:
            yield daemon
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _facts(result: object) -> dict[str, str]:
    evidence = result.evidence  # type: ignore[attr-defined]
    assert evidence is not None
    return dict(evidence.facts)


# --- exposed files: nginx serving a leaky docroot, then denying dot files and backups -------


def test_exposed_git_found(nginx_open: fw.Daemon) -> None:
    result = run_check("http-exposed-git", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert "/.git/HEAD" in facts["exposed"] and "/.git/config" in facts["exposed"]
    assert facts["proof"] == "HEAD points at refs/heads/main"
    assert facts["soft404"] == "no"
    assert "ref: refs/heads/main" in (result.evidence.reply or "")  # type: ignore[union-attr]


def test_exposed_env_found_with_values_withheld(nginx_open: fw.Daemon) -> None:
    result = run_check("http-exposed-env", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert facts["exposed"] == "/.env"
    assert facts["keys"].split(", ") == ["APP_ENV", "APP_KEY", "DB_HOST", "DB_PASSWORD",
                                         "MAIL_PASSWORD"]
    reply = result.evidence.reply or ""  # type: ignore[union-attr]
    assert "DB_PASSWORD=***" in reply and "hunter2" not in reply
    assert "hunter2" not in result.summary


def test_exposed_ds_store_found(nginx_open: fw.Daemon) -> None:
    result = run_check("http-exposed-ds-store", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    assert _facts(result)["exposed"] == "/.DS_Store"
    assert result.severity is Severity.LOW


def test_exposed_backups_found(nginx_open: fw.Daemon) -> None:
    result = run_check("http-exposed-backup", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    exposed = _facts(result)["exposed"].split(", ")
    assert set(exposed) == {"/backup.zip", "/dump.sql", "/index.php.bak"}


@pytest.mark.parametrize("check_id", FILE_CHECKS)
def test_exposed_files_denied_pass(nginx_hard: fw.Daemon, check_id: str) -> None:
    result = run_check(check_id, NGINX_HARD, SITE, "http")
    assert_passed(result)
    assert _facts(result) == {} or "exposed" not in _facts(result)


# --- directory listing -------------------------------------------------------------------------


def test_nginx_autoindex_is_a_listing(nginx_open: fw.Daemon) -> None:
    result = run_check("http-directory-listing", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert facts["listing"] == "/files/" and facts["style"] == "nginx"
    assert "notes.txt" in facts["names"] and "price-list.pdf" in facts["names"]


def test_apache_indexes_is_a_listing(apache_open: fw.Daemon) -> None:
    result = run_check("http-directory-listing", APACHE_OPEN, APACHE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert facts["listing"] == "/files" and facts["style"] == "apache"  # Apache's own title
    assert "notes.txt" in facts["names"]


def test_no_autoindex_passes(nginx_hard: fw.Daemon, apache_hard: fw.Daemon) -> None:
    assert_passed(run_check("http-directory-listing", NGINX_HARD, SITE, "http"))
    assert_passed(run_check("http-directory-listing", APACHE_HARD, APACHE, "http"))


# --- methods -----------------------------------------------------------------------------------


def test_nginx_dav_put_delete(nginx_open: fw.Daemon, site: Path) -> None:
    before = set(site.iterdir())
    result = run_check("webdav-put-allowed", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert facts["put_status"] == "201" and facts["delete_confirmed"] == "yes"
    assert "leftover" not in facts
    assert set(site.iterdir()) == before  # the test file was removed again
    methods = run_check("http-dangerous-methods", NGINX_OPEN, SITE, "http")
    assert_finding(methods)
    assert _facts(methods)["dangerous"] == "PUT, DELETE"
    assert methods.severity is Severity.HIGH
    assert "PUT /mamori-" in (methods.evidence.request or "")  # type: ignore[union-attr]


def test_apache_trace_enabled(apache_open: fw.Daemon) -> None:
    result = run_check("http-dangerous-methods", APACHE_OPEN, APACHE, "http")
    assert_finding(result)
    facts = _facts(result)
    assert facts["dangerous"] == "TRACE" and facts["trace_status"] == "200"
    assert result.severity is Severity.LOW and result.confidence is Confidence.CONFIRMED
    assert "X-Mamori-Trace" in (result.evidence.reply or "")  # type: ignore[union-attr]
    assert_passed(run_check("webdav-put-allowed", APACHE_OPEN, APACHE, "http"))


def test_methods_refused_pass(nginx_hard: fw.Daemon, apache_hard: fw.Daemon) -> None:
    for host, port in ((NGINX_HARD, SITE), (APACHE_HARD, APACHE)):
        for check_id in ("http-dangerous-methods", "webdav-put-allowed"):
            result = run_check(check_id, host, port, "http")
            assert_passed(result)
            assert _facts(result).get("trace_status", "405") == "405"


# --- version disclosure and default pages ----------------------------------------------------


def test_version_disclosed(nginx_open: fw.Daemon, apache_open: fw.Daemon) -> None:
    result = run_check("http-version-disclosure", NGINX_OPEN, SITE, "http")
    assert_finding(result)
    assert _facts(result)["disclosed"].startswith("nginx/1.")
    result = run_check("http-version-disclosure", APACHE_OPEN, APACHE, "http")
    assert_finding(result)
    assert _facts(result)["disclosed"].startswith("Apache/2.4.")


def test_version_hidden_passes(nginx_hard: fw.Daemon, apache_hard: fw.Daemon) -> None:
    result = run_check("http-version-disclosure", NGINX_HARD, SITE, "http")
    assert_passed(result)
    assert _facts(result)["server"] == "nginx"
    result = run_check("http-version-disclosure", APACHE_HARD, APACHE, "http")
    assert_passed(result)
    assert _facts(result)["server"] == "Apache"


def test_default_pages_found(nginx_open: fw.Daemon, apache_open: fw.Daemon) -> None:
    result = run_check("http-default-page", NGINX_OPEN, DEFAULT, "http")
    assert_finding(result)
    assert _facts(result)["default_page"] == "nginx welcome page"
    result = run_check("http-default-page", APACHE_OPEN, APACHE, "http")
    assert_finding(result)
    assert _facts(result)["default_page"] == "Apache2 Debian default page"


def test_custom_index_passes(nginx_open: fw.Daemon, nginx_hard: fw.Daemon,
                             apache_hard: fw.Daemon) -> None:
    for host, port in ((NGINX_OPEN, SITE), (NGINX_HARD, SITE), (APACHE_HARD, APACHE)):
        assert_passed(run_check("http-default-page", host, port, "http"))


# --- soft 404: a server that answers 200 to every path ------------------------------------


class _Soft404(httpd.BaseHTTPRequestHandler):
    """Answers every path with 200 and one catch-all page. ``tricky`` pages look like what the
    checks look for (an index of the path, NAME=value lines, a git ref) on EVERY path."""

    tricky = False

    def log_message(self, *args: object) -> None:
        pass

    def _page(self) -> bytes:
        if self.tricky:
            return (f"<html><head><title>Index of {self.path}</title></head><body>"
                    f"<h1>Index of {self.path}</h1><hr><pre><a href=\"../\">../</a>\n"
                    "<a href=\"a.txt\">a.txt</a>\n</pre></body></html>\n").encode()
        return (f"<!DOCTYPE html><html><body><h1>Sorry</h1><p>{self.path} moved; "
                "try our home page.</p></body></html>\n").encode()

    def do_GET(self) -> None:
        body = self._page()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _EnvEverywhere(_Soft404):
    def do_GET(self) -> None:
        body = b"APP_ENV=production\nref: refs/heads/main\n"
        body = b"ref: refs/heads/main\n" if self.path.endswith("HEAD") else body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def _serve(port: int, handler: type[httpd.BaseHTTPRequestHandler]) -> Iterator[None]:
    server = httpd.ThreadingHTTPServer((SOFT404, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


class _Tricky(_Soft404):
    tricky = True


@pytest.mark.parametrize("handler", [_Soft404, _Tricky, _EnvEverywhere])
def test_soft_404_gives_no_exposed_file(handler: type[_Soft404]) -> None:
    port = 18090 + [_Soft404, _Tricky, _EnvEverywhere].index(handler)
    with _serve(port, handler):
        for check_id in (*FILE_CHECKS, "http-directory-listing"):
            result = run_check(check_id, SOFT404, port, "http")
            assert_passed(result)
            assert _facts(result).get("baseline_status") == "200", check_id


class _YesToEveryMethod(_Tricky):
    """200 to every method: PUT "stored", DELETE "done", TRACE echoing only its request line,
    OPTIONS advertising everything. Nothing of it is true."""

    def _yes(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 65536))
        body = f"{self.command} {self.path} OK\n".encode()
        self.send_response(200)
        self.send_header("Allow", "GET, HEAD, PUT, DELETE, TRACE, OPTIONS, PROPFIND")
        self.send_header("DAV", "1, 2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_TRACE = do_OPTIONS = _yes


def test_server_saying_yes_to_every_method_gives_no_finding() -> None:
    with _serve(18095, _YesToEveryMethod):
        for check_id in ALL_WEB:
            result = run_check(check_id, SOFT404, 18095, "http")
            if check_id == "http-version-disclosure":  # "BaseHTTP/0.6 Python/3.x": true
                assert_finding(result)
                continue
            assert_passed(result)
        facts = _facts(run_check("http-dangerous-methods", SOFT404, 18095, "http"))
        assert facts["put_status"] == "200" and "PUT" in facts["allow"]


def test_nothing_listening_is_not_tested() -> None:
    for check_id in ALL_WEB:
        result = run_check(check_id, NOTHING, 18099, "http")
        assert result.status is CheckStatus.NOT_TESTED, check_id
        assert "refused" in result.summary


# --- HTTPS: the same primitive over TLS --------------------------------------------------------


def test_https_endpoint(tmp_path: Path) -> None:

    with _started(lambda: dm.start_nginx(tmp_path, "127.0.65.7", 18083, 18443)):
        result = run_check("http-version-disclosure", "127.0.65.7", 18443, "http", tls=True)
        assert_finding(result)
        assert "nginx/1." in _facts(result)["disclosed"]
        # The identify fixture's nginx serves a plain page at /: no default page there.
        assert_passed(run_check("http-default-page", "127.0.65.7", 18443, "http", tls=True))


# --- the pure parsers on hostile bytes ---------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(["/.git/HEAD", "/.git/config", "/.env",
                                                  "/backup.zip", "/dump.sql", "/a.php.bak",
                                                  "/.x.swp", "/.DS_Store"]))
def test_parsers_never_raise(data: bytes, path: str) -> None:
    for kind in http.FILE_PROOFS:
        proof = http.file_proof(kind, path, data)
        assert proof is None or len(proof) < 400
    listing = http.directory_listing(data)
    assert listing is None or len(listing[2]) <= 50
    assert http.default_page(data) is None or True
    assert 0.0 <= http.body_similarity(data, data[::-1]) <= 1.0
    assert len(http.redact(data, "env")) <= len(data) * 4 + 4
    http.env_keys(data)
    http.trace_echoed(data, "abc")
    resp = http.parse_response(b"HTTP/1.1 200 OK\r\nServer: " + data[:200].replace(b"\n", b"")
                               .replace(b"\r", b"") + b"\r\n\r\n" + data)
    if resp is not None:
        assert len(http.disclosed_versions(resp)) <= 10


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4096))
def test_truncated_real_pages(cut: int) -> None:
    page = (b"<html>\r\n<head><title>Index of /files/</title></head>\r\n<body>\r\n"
            b"<h1>Index of /files/</h1><hr><pre><a href=\"../\">../</a>\r\n"
            b"<a href=\"notes.txt\">notes.txt</a> 01-Jan-2025 00:00 14\r\n</pre><hr></body>\r\n"
            b"</html>\r\n")
    for blob in (page, fw.ds_store_bytes(), fw.ENV_TEXT.encode(), fw.SQL_DUMP.encode()):
        part = blob[:cut]
        http.directory_listing(part)
        http.file_proof("ds-store", "/.DS_Store", part)
        http.file_proof("backup", "/dump.sql", part)
        http.env_keys(part)


def test_proofs_on_real_bytes() -> None:
    assert http.file_proof("git", "/.git/HEAD", b"ref: refs/heads/main\n")
    assert http.file_proof("git", "/.git/HEAD", b"a" * 40 + b"\n")
    assert not http.file_proof("git", "/.git/HEAD", b"<html>ref: refs/heads/main</html>")
    assert http.file_proof("git", "/.git/config",
                           b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n")
    assert not http.file_proof("git", "/.git/config", b"[core]\n")
    assert http.file_proof("ds-store", "/.DS_Store", fw.ds_store_bytes())
    assert not http.file_proof("ds-store", "/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(12))
    assert not http.file_proof("env", "/.env", b"<!DOCTYPE html><p>A=1</p>")
    assert not http.file_proof("backup", "/backup.zip", b"<html>PK</html>")
    assert http.redact(b"url = https://bob:tok3n@git.example.invalid/x", "git") == (
        b"url = https://***:***@git.example.invalid/x")
    assert http.directory_listing(b"<title>Index of /</title>") == ("generic", "/", ())


def test_similarity_stays_fast_on_hostile_bodies() -> None:
    import time

    start = time.perf_counter()
    for a, b in ((b"a " * 4000 + b"b", b"a " * 4000 + b"c"), (b"ab" * 4000, b"ba" * 4000),
                 (bytes(range(256)) * 32, bytes(reversed(range(256))) * 32)):
        assert 0.0 <= http.body_similarity(a, b) <= 1.0
    assert time.perf_counter() - start < 1.0
