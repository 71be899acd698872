"""The HTML report in a real browser (Debian's chromium driven by Playwright).

The report is made by the real CLI from a real scan of misconfigured daemons on 127.0.110.x
(tests/report_lab.py: anonymous vsftpd, redis-server without a password, nginx with an exposed
.git; plus a fake Redis whose version string is HTML and script, and one that stays silent on
the check). One browser per module; each test opens its own context.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest

import report_lab as lab_mod
from browser import CHROMIUM, launch_chromium, new_guarded_context
from conftest import ROOT, run_mamori
from mamori.checks.catalog import default_catalog
from mamori.report import render
from mamori.store import Store
from store_fixtures import HOSTILE_LOOPBACK, store_check_scan

pytestmark = pytest.mark.daemon



@dataclass
class Reports:
    db: Path
    scan_id: int
    first_id: int  # an earlier scan of the FTP port only: the diff's old run
    en: Path
    ja: Path
    problems: Path
    diff: Path
    skipped: dict[str, str]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = run_mamori(*args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    work = tmp_path_factory.mktemp("report-html")
    db = work / "m.db"
    with lab_mod.running_lab(work, hostile=True) as lab:
        if "redis" in lab.skipped or "nginx" in lab.skipped:
            pytest.skip(f"lab daemons missing: {lab.skipped}")
        first = _first_scan(db)
        scan_id = lab_mod.scan_lab(lab, db)
    out = {name: work / f"{name}.html" for name in ("en", "ja", "problems", "diff")}
    # As a user would: the real CLI writes the report and the diff ...
    _cli("show", str(scan_id), "--format", "html", "-o", str(out["en"]), "--db", str(db),
         "--lang", "en")
    _cli("diff", str(first), str(scan_id), "-f", "html", "-o", str(out["diff"]), "--db",
         str(db), "--lang", "en")
    # ... and the variants come from the same stored record, rendered in this process.
    with Store.open(str(db)) as store:
        record = store.get_scan(scan_id)
    assert record is not None
    out["ja"].write_text(render(record, "html", lang="ja"), encoding="utf-8")
    out["problems"].write_text(render(record, "html", only_problems=True), encoding="utf-8")
    yield Reports(db, scan_id, first, out["en"], out["ja"], out["problems"], out["diff"],
                  lab.skipped)


def _first_scan(db: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "mamori", "scan", lab_mod.HOST, "-p", str(lab_mod.FTP_PORT),
         "-f", "json", "--db", str(db)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return int(json.loads(proc.stdout)["scan"]["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (scripts/install-test-deps)")
    with sync_api.sync_playwright() as pw:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Opened:
    page: Any
    requests: list[str]
    console: list[str]


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Open a file in a fresh context, recording every request and console message."""
    contexts: list[Any] = []

    def opener(path: Path, **context_args: Any) -> Opened:
        ctx = new_guarded_context(browser, **context_args)
        contexts.append(ctx)
        page = ctx.new_page()
        seen = Opened(page, [], [])
        page.on("request", lambda r: seen.requests.append(r.url))
        page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
        page.goto(path.as_uri(), wait_until="load")
        return seen

    yield opener
    for ctx in contexts:
        ctx.close()


def _finding(page: Any, check_id: str, address: str = lab_mod.HOST) -> Any:
    return page.locator(f"details.mr-finding[data-check='{check_id}']").filter(
        has_text=address)


# -- what the page loads -----------------------------------------------------------------------


def test_the_page_makes_no_request_but_the_file_itself(reports: Reports, open_page: Any) -> None:
    seen = open_page(reports.en)
    seen.page.wait_for_timeout(300)  # anything late (fonts, images) would show up here
    assert seen.requests == [reports.en.as_uri()]
    # The inline script ran under the page's own CSP (a hash mismatch would block it and log
    # a violation): the buttons it reveals are there.
    assert not [m for m in seen.console if "Content Security Policy" in m], seen.console
    assert seen.page.locator(".mamori-report.mr-js").count() == 1
    assert seen.page.locator("button.mr-open-all").is_visible()
    assert seen.page.locator("button.mr-copy").evaluate_all("bs => bs.every(b => !b.hidden)")


def test_csp_forbids_every_load_and_allows_only_the_inline_script(reports: Reports) -> None:
    html = reports.en.read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = dict(part.strip().split(" ", 1) for part in unescape(csp.group(1)).split(";"))
    assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    for outside in ("http://", "https://", "//fonts", "@import", "url("):
        assert outside not in html.replace("http://www.w3.org/2000/svg", ""), outside


# -- findings, evidence, fixes -------------------------------------------------------------------


def test_findings_are_visible_and_open_on_click_to_show_the_evidence(
    reports: Reports, open_page: Any
) -> None:
    page = open_page(reports.en).page
    specs = default_catalog()
    for check_id in ("redis-unauthenticated", "http-exposed-git", "ftp-anonymous-login"):
        summary = _finding(page, check_id).locator("summary")
        assert summary.is_visible(), check_id
        assert specs[check_id].title.en in summary.inner_text()
    redis = _finding(page, "redis-unauthenticated")
    evidence = redis.locator("pre.mr-reply")
    assert not evidence.is_visible()  # folded until asked for
    redis.locator("summary").click()
    assert redis.get_attribute("open") is not None
    assert evidence.is_visible() and "redis_version:" in evidence.inner_text()
    assert "INFO" in redis.locator(".mr-test").inner_text()
    assert redis.locator("dt", has_text="redis_version").is_visible()


def test_findings_are_grouped_by_layer_worst_first(reports: Reports, open_page: Any) -> None:
    page = open_page(reports.en).page
    layers = page.locator("section.mr-layer")
    assert layers.count() == 3
    app = page.locator("section.mr-layer-application")
    ranks = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}
    severities = [re.search(r"mr-(critical|high|medium|low|info)\b", c).group(1)  # type: ignore[union-attr]
                  for c in app.locator("details.mr-finding").evaluate_all(
                      "els => els.map(e => e.className)")]
    assert len(severities) >= 5
    assert [ranks[s] for s in severities] == sorted((ranks[s] for s in severities), reverse=True)
    # The summary's top three are the three worst, linked to their findings.
    top = page.locator("ol.mr-top li a")
    assert top.count() == 3
    href = top.first.get_attribute("href")
    assert href is not None and page.locator(href).count() == 1


def test_the_copy_button_puts_the_fix_into_the_clipboard(
    reports: Reports, open_page: Any
) -> None:
    seen = open_page(reports.en, permissions=["clipboard-read", "clipboard-write"])
    page = seen.page
    redis = _finding(page, "redis-unauthenticated")
    redis.locator("summary").click()
    button = redis.locator(".mr-fix button.mr-copy").first
    code_id = button.get_attribute("data-target")
    expected = page.locator(f"#{code_id}").text_content()
    assert "requirepass" in expected
    button.click()
    page.wait_for_function("b => b.textContent !== b.dataset.label", arg=button.element_handle())
    assert button.inner_text() == "Copied"
    assert page.evaluate("navigator.clipboard.readText()") == expected


def test_without_the_clipboard_api_the_fix_is_selected(reports: Reports, open_page: Any) -> None:
    seen = open_page(reports.en)
    page = seen.page
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    ftp = _finding(page, "ftp-anonymous-login")
    ftp.locator("summary").click()
    button = ftp.locator(".mr-fix button.mr-copy").first
    expected = page.locator(f"#{button.get_attribute('data-target')}").text_content()
    button.click()
    assert page.evaluate("window.getSelection().toString()") == expected
    assert button.inner_text() in ("Copied", "Selected: press Ctrl+C")


def test_without_javascript_findings_and_evidence_still_read(
    reports: Reports, open_page: Any
) -> None:
    seen = open_page(reports.en, java_script_enabled=False)
    page = seen.page
    assert page.locator(".mamori-report.mr-js").count() == 0  # the script did not run
    git = _finding(page, "http-exposed-git")
    assert git.locator("summary").is_visible()
    git.locator("summary").click()
    assert not git.locator("button.mr-copy").first.is_visible()  # no dead buttons
    assert git.locator("pre.mr-request").is_visible()
    assert "/.git/" in git.locator("pre.mr-request").inner_text()
    assert git.locator(".mr-fix pre code").first.is_visible()


def test_print_opens_every_finding_and_hides_the_buttons(reports: Reports, open_page: Any) -> None:
    page = open_page(reports.en).page
    closed = _finding(page, "redis-unauthenticated").locator("pre.mr-reply")
    assert not closed.is_visible()
    assert page.locator("button.mr-open-all").is_visible()
    page.emulate_media(media="print")
    assert closed.is_visible()
    assert not page.locator("button.mr-copy").first.is_visible()
    assert not page.locator("button.mr-open-all").is_visible()


def test_a_phone_wide_page_does_not_scroll_sideways(
    reports: Reports, open_page: Any, tmp_path: Path
) -> None:
    for path in (reports.en, reports.ja):
        page = open_page(path, viewport={"width": 375, "height": 812}, is_mobile=True,
                         has_touch=True).page
        page.locator("button.mr-open-all").click()  # long replies and fixes included
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] == 375, (path.name, widths)
    shot = tmp_path / "phone.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- everything else the report says -------------------------------------------------------------


def test_hostile_banner_stays_text(reports: Reports, open_page: Any) -> None:
    html = reports.en.read_text(encoding="utf-8")
    assert "<img" not in html and html.count("<script") == 1
    seen = open_page(reports.en)
    page = seen.page
    page.locator("button.mr-open-all").click()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    # The payload is shown, as text, where it came in: the finding and the ports table.
    hostile = _finding(page, "redis-unauthenticated", lab_mod.HOSTILE_HOST)
    assert lab_mod.HOSTILE_VERSION in hostile.locator(".mr-summary").inner_text()
    row = page.locator("section.mr-ports tr", has_text=lab_mod.HOSTILE_HOST)
    assert lab_mod.HOSTILE_VERSION in row.inner_text()
    assert seen.requests == [reports.en.as_uri()]


def test_not_tested_is_listed_as_such_never_as_clean(reports: Reports, open_page: Any) -> None:
    page = open_page(reports.en).page
    section = page.locator("section.mr-not-tested")
    assert section.is_visible()
    item = section.locator("li", has_text=lab_mod.SILENT_HOST)
    assert "redis-unauthenticated" in item.inner_text()
    assert _finding(page, "redis-unauthenticated", lab_mod.SILENT_HOST).count() == 0
    assert "1 not tested" in page.locator(".mr-checks-line").inner_text()


def test_ports_table_and_chart(reports: Reports, open_page: Any) -> None:
    page = open_page(reports.en).page
    rows = page.locator("section.mr-ports tbody tr")
    text = [rows.nth(i).inner_text() for i in range(rows.count())]
    for port, service in (("21/tcp", "ftp"), ("80/tcp", "http"), ("6379/tcp", "redis")):
        assert any(port in r and service in r and lab_mod.HOST in r for r in text), (port, text)
    chart = page.locator("svg.mr-chart")
    assert chart.is_visible()
    high = chart.locator("rect.mr-fill-high").first.locator("title").text_content()
    n_high = page.locator("details.mr-finding.mr-high").count()
    assert high == f"high: {n_high}"


def test_only_problems_hides_info_and_closed_but_keeps_not_tested(
    reports: Reports, open_page: Any
) -> None:
    full = open_page(reports.en).page
    page = open_page(reports.problems).page
    assert full.locator("details.mr-finding.mr-info").count() >= 1
    assert page.locator("details.mr-finding.mr-info").count() == 0
    assert page.locator("details.mr-finding").count() == (
        full.locator("details.mr-finding").count()
        - full.locator("details.mr-finding.mr-info").count())
    assert page.locator("section.mr-not-tested li").count() == 1
    assert "hidden by --only-problems" in page.locator(".mr-hidden").inner_text()
    assert "not shown" not in page.locator("section.mr-ports").inner_text()


def test_japanese_report(reports: Reports, open_page: Any) -> None:
    page = open_page(reports.ja).page
    assert page.locator("html").get_attribute("lang") == "ja"
    title = default_catalog()["redis-unauthenticated"].title.ja
    assert title in _finding(page, "redis-unauthenticated").locator("summary").inner_text()
    assert page.locator("#mr-summary").inner_text() == "概要"
    fix = default_catalog()["redis-unauthenticated"].remediation.linux.ja
    code = _finding(page, "redis-unauthenticated").locator(".mr-fix pre code").first
    assert code.text_content() == " ".join(fix.split())


def test_diff_page(reports: Reports, open_page: Any) -> None:
    seen = open_page(reports.diff)
    page = seen.page
    assert seen.requests == [reports.diff.as_uri()]
    assert "WORSE" in page.locator(".mr-verdict").inner_text()
    new = page.locator("section.mr-diff-new details.mr-finding")
    checks = set(new.evaluate_all("els => els.map(e => e.dataset.check)"))
    assert {"redis-unauthenticated", "http-exposed-git"} <= checks
    assert "ftp-anonymous-login" not in checks  # found by both runs: not new
    opened = page.locator("section.mr-diff-opened").inner_text()
    assert f"{lab_mod.HOST}:6379/tcp" in opened and f"{lab_mod.HOST}:21/tcp" not in opened


def test_check_kind_shows_listeners_with_process_and_firewall(
    tmp_path: Path, open_page: Any
) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_check_scan(store))
    assert rec is not None
    path = tmp_path / "check.html"
    path.write_text(render(rec, "html"), encoding="utf-8")
    seen = open_page(path)
    page = seen.page
    rows = page.locator("section.mr-listeners tbody tr")
    assert rows.count() == len(rec.listeners)
    redis = rows.filter(has_text="0.0.0.0:6379").inner_text()
    assert "redis-server (812)" in redis and "allowed" in redis and "all" in redis
    hostile = rows.filter(has_text="127.0.0.1:8080").inner_text()
    assert HOSTILE_LOOPBACK.process is not None
    assert "evil\\x1b[31m[bold]x" in hostile  # control characters escaped, markup literal
    notes = page.locator("section.mr-listeners ul").inner_text()
    assert "firewall undetermined: 192.0.2.2:53/udp" in notes
    # A finding's evidence names the listener and the firewall verdict.
    finding = _finding(page, "redis-unauthenticated", "127.0.0.1")
    finding.locator("summary").click()
    assert "redis-server (812)" in finding.locator(".mr-facts").inner_text()
    assert seen.requests == [path.as_uri()]


# -- without a browser: every field escaped, incomplete runs said so --------------------------

EVIL = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def test_every_remote_field_is_escaped(tmp_path: Path) -> None:
    from dataclasses import replace

    from mamori.model import Evidence, ScanStatus

    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_check_scan(store))
    assert rec is not None
    finding = rec.findings[0]
    evil = replace(finding, check_id=EVIL, title=EVIL, summary=EVIL, address=EVIL,
                   evidence=Evidence(test=EVIL, request=EVIL, reply=EVIL, facts={EVIL: EVIL}),
                   remediation={"linux": EVIL, "macos": f"`{EVIL}`", "router": EVIL})
    listener = replace(rec.listeners[0], process=EVIL, user=EVIL, firewall_reason=EVIL,
                       firewall_rule=EVIL)
    host = replace(rec.hosts[0], hostname=EVIL) if rec.hosts else None
    hostile = replace(rec, targets=(EVIL,), checks=(evil, *rec.checks), mamori_version=EVIL,
                      listeners=(listener, *rec.listeners[1:]),
                      hosts=(host,) if host else rec.hosts, status=ScanStatus.INTERRUPTED)
    for lang in ("en", "ja"):
        out = render(hostile, "html", lang=lang)
        assert "<img" not in out and out.count("<script") == 1
        assert "onerror=alert" in out.replace("&#34;", '"')  # shown, as text
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in out
        assert 'role="alert"' in out  # the interrupted run says so at the top


def test_an_empty_scan_still_renders(tmp_path: Path) -> None:
    from mamori.model import ScanStatus

    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("scan", ["127.0.110.9"], {})
        store.finish_scan(sid, ScanStatus.DONE)
        rec = store.get_scan(sid)
    assert rec is not None
    out = render(rec, "html")
    assert "No findings." in out and "No open ports found." in out
    assert "<svg" not in out  # no chart of nothing
