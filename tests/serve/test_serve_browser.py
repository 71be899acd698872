"""mamori serve end to end in a real browser: Debian's chromium driven by Playwright.

Which address does the browser come from? Chromium cannot choose its source address, and a
connection from this host to the server on 127.0.150.1 leaves from 127.0.0.1 (the kernel's
source for the loopback route). The honest option is to let the server see exactly that: the
test's settings allow loopback, the visitor's address is 127.0.0.1, and the real redis-server
the check must find listens on 127.0.0.1 at a free port, which the visitor names in the custom
port list (so nothing else of this machine's 127.0.0.1 is touched; 2024 is excluded anyway).
Routing through a "trusted proxy" that claims 127.0.151.N instead would make the test pass
on an address the browser never had; the proxy path has its own tests (test_serve_abuse).

The scanner starts each check 1.5 s late (it then runs the real pipeline), so the progress
page is reliably seen before the result.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import daemons as dm
from browser import CHROMIUM, launch_chromium, new_guarded_context
from mamori.scan.pipeline import ProgressFn, ScanSink
from mamori.serve.scanner import PipelineScanner, ScanRequest
from serve_helpers import Served, serve

pytestmark = pytest.mark.daemon
VISITOR = "127.0.0.1"


class LateStart:
    def __init__(self) -> None:
        self.inner = PipelineScanner()

    async def scan(self, request: ScanRequest, sink: ScanSink, progress: ProgressFn) -> None:
        progress(stage="waiting for a free worker")
        await asyncio.sleep(1.5)
        await self.inner.scan(request, sink, progress)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (scripts/install-test-deps)")
    with sync_api.sync_playwright() as pw:
        # This machine's Chromium maps every name to NOTFOUND (/etc/chromium.d), IP literals
        # included; the server's literal is let through, still nothing is ever resolved.
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with socket.socket() as s:
        s.bind((VISITOR, 0))
        port = int(s.getsockname()[1])
    with dm.running(dm.start_redis, tmp_path_factory.mktemp("redis"), VISITOR, port):
        yield port


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("serve-browser"), allow_loopback=True) as served:
        served.scanner.inner = LateStart()
        yield served


def _context(browser: Any, srv: Served, **options: Any) -> tuple[Any, Any, list[str]]:
    ctx = new_guarded_context(browser, **options)
    page = ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: requests.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    return ctx, page, requests


def _only_the_server(srv: Served, requests: list[str]) -> None:
    origin = urlsplit(srv.url)
    assert not [r for r in requests if r.startswith("console")], requests  # no CSP violation
    for url in requests:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url


def test_a_visitor_checks_their_connection_in_chromium(
        browser: Any, srv: Served, redis_port: int, tmp_path: Path) -> None:
    ctx, page, requests = _context(browser, srv, viewport={"width": 390, "height": 844})
    try:
        page.goto(f"{srv.url}/")
        assert page.locator("#peer").inner_text() == VISITOR
        # Readable on a phone: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(tmp_path / "landing-phone.png"), full_page=True)
        page.check("input[name=profile][value=custom]")
        page.fill("input[name=ports]", f"{redis_port},2024")
        page.check("input[name=consent]")
        page.click("#proceed")
        page.wait_for_url(f"{srv.url}/checks/*")
        # The progress page first, with its bar, updated by the status polls ...
        bar = page.locator("progress#bar")
        bar.wait_for(state="visible", timeout=5000)
        assert page.locator("#status").inner_text() in ("queued", "running")
        # ... then the report, by itself.
        finding = page.locator("details.mr-finding[data-check='redis-unauthenticated']")
        finding.wait_for(state="attached", timeout=30000)
        assert any(u.endswith("/status") for u in requests)
        assert "Redis" in finding.inner_text()
        assert page.get_by_text("What this means").is_visible()
        assert page.locator("#delete").is_visible()
        # The report's own script ran under the page's CSP (it reveals the copy buttons).
        page.locator("button.mr-open-all").first.wait_for(state="visible", timeout=5000)
        page.set_viewport_size({"width": 1200, "height": 900})
        finding.locator("summary").first.click()
        shot = tmp_path / "serve-result.png"  # kept by pytest under its basetemp
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        _only_the_server(srv, requests)
    finally:
        ctx.close()
    (request,) = [r for r in srv.scanner.requests if r.tcp_ports == (redis_port,)]
    assert request.address == VISITOR


def test_without_javascript_the_page_refreshes_itself(
        browser: Any, srv: Served, redis_port: int) -> None:
    ctx, page, requests = _context(browser, srv, java_script_enabled=False)
    try:
        page.goto(f"{srv.url}/")
        page.check("input[name=profile][value=custom]")
        page.fill("input[name=ports]", str(redis_port))
        page.check("input[name=consent]")
        page.click("#proceed")
        page.wait_for_url(f"{srv.url}/checks/*")
        assert page.locator("progress#bar").count() == 1  # the progress page, no script
        page.locator("details.mr-finding[data-check='redis-unauthenticated']").wait_for(
            state="attached", timeout=30000)  # reached by <meta http-equiv=refresh> alone
        assert not any(u.endswith("/status") for u in requests)
        _only_the_server(srv, requests)
    finally:
        ctx.close()


def test_every_probe_stayed_on_loopback_and_off_2024(srv: Served) -> None:
    srv.backend.wait_idle(15)
    assert len(srv.scanner.requests) >= 2
    for request in srv.scanner.requests:
        assert request.address == VISITOR
        assert 2024 not in request.tcp_ports and request.udp_ports == ()
