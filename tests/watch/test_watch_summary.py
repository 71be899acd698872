"""The watch summary report: table and JSON counts, and the HTML page rendered in real
Chromium — the timeline chart draws its bars and incident marks, nothing is fetched, and
text a visitor sent stays text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from browser import launch_chromium, new_guarded_context
from mamori.model.watch import Danger, Event, EventType, Incident
from mamori.watch.summary import render_summary

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOISY = "198.51.100.7"
HOSTILE = '<script>alert(1)</script><img src="http://127.0.145.9:9/x.png">'


def sample() -> tuple[list[Event], list[Incident]]:
    events = []
    dangers = [Danger.INFO, Danger.LOW, Danger.HIGH, Danger.CRITICAL]
    for i in range(60):  # two hours of a worm knocking
        events.append(Event(T0 + timedelta(minutes=2 * i), EventType.HTTP_REQUEST,
                            "log:/var/log/nginx/access.log", src=NOISY,
                            danger=dangers[i % 4], excerpt=HOSTILE))
    for i in range(10):
        events.append(Event(T0 + timedelta(minutes=30, seconds=i), EventType.DECOY_LOGIN,
                            "decoy:tcp/127.0.0.1:2323", src="192.0.2.5", danger=Danger.MEDIUM,
                            fields={"username": "root", "password": "x"}))
    events.append(Event(T0 + timedelta(minutes=90), EventType.SCAN_PORTS, "detector:portscan",
                        src="203.0.113.9", danger=Danger.HIGH))
    events.append(Event(T0 + timedelta(minutes=91), EventType.SENSOR_ERROR, "icmp"))
    incidents = [
        Incident(NOISY, "worm.codered", Danger.CRITICAL, T0, T0 + timedelta(minutes=118), 60,
                 ("http.request",), ("worm.codered",), (HOSTILE,), id=1),
        Incident("192.0.2.5", "bruteforce", Danger.MEDIUM, T0 + timedelta(minutes=30),
                 T0 + timedelta(minutes=30, seconds=9), 10, ("decoy.login",), id=2),
        Incident("203.0.113.9", "scan.ports", Danger.HIGH, T0 + timedelta(minutes=90),
                 T0 + timedelta(minutes=90), 1, ("scan.ports",), id=3),
    ]
    return events, incidents


def test_json_counts_add_up() -> None:
    events, incidents = sample()
    data = json.loads(render_summary(events, incidents, "json", now=T0))
    assert data["schema"] == "mamori.watch-summary/1" and data["events"] == 72
    assert data["by_type"] == {"http.request": 60, "decoy.login": 10, "scan.ports": 1,
                               "sensor.error": 1}
    assert data["by_danger"] == {"info": 16, "low": 15, "medium": 10, "high": 16,
                                 "critical": 15}
    assert data["top_sources"][0] == {"src": NOISY, "events": 60, "danger": "critical"}
    assert [s["src"] for s in data["top_sources"]] == [NOISY, "192.0.2.5", "203.0.113.9"]
    assert [i["kind"] for i in data["incidents"]] == ["worm.codered", "scan.ports",
                                                       "bruteforce"]
    line = data["timeline"]
    assert line["bucket_seconds"] == 300  # two hours in at most 60 bars
    total = sum(sum(b[d] for d in data["by_danger"]) for b in line["buckets"])
    assert total == 72 and line["buckets"][0]["start"] == T0.isoformat()
    assert data["first"] == T0.isoformat()


def test_since_keeps_only_the_recent_part() -> None:
    events, incidents = sample()
    since = T0 + timedelta(minutes=60)
    data = json.loads(render_summary(events, incidents, "json", since=since))
    assert data["events"] == 30 + 2 and data["since"] == since.isoformat()
    assert sorted(i["kind"] for i in data["incidents"]) == ["scan.ports", "worm.codered"]
    assert "192.0.2.5" not in {s["src"] for s in data["top_sources"]}


def test_table_names_counts_sources_and_incidents() -> None:
    events, incidents = sample()
    text = render_summary(events, incidents, "table")
    assert text.startswith("mamori watch summary: 72 event(s), 3 incident(s), "
                           "2024-05-01 12:00:00Z to 2024-05-01 13:58:00Z")
    assert "│ http.request │ 60" in text and f"│ {NOISY} │ 60     │ critical" in text
    assert "worm.codered" in text and "2024-05-01 13:58:00Z" in text
    empty = render_summary([], [], "table")
    assert "0 event(s), 0 incident(s)" in empty and "nothing recorded" in empty
    assert json.loads(render_summary([], [], "json"))["timeline"] is None
    with pytest.raises(ValueError, match="unknown summary format"):
        render_summary([], [], "png")


def test_html_is_one_self_contained_file_with_a_timeline(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (scripts/install-test-deps)")
    events, incidents = sample()
    page_html = render_summary(events, incidents, "html", now=T0)
    assert "<script" not in page_html and "http://127.0.145.9" in page_html  # escaped text
    assert "<link" not in page_html and "@import" not in page_html
    timeline = json.loads(render_summary(events, incidents, "json"))["timeline"]
    segments = sum(1 for b in timeline["buckets"] for d in ("info", "low", "medium", "high",
                                                             "critical") if b[d])
    path = tmp_path / "summary.html"
    path.write_text(page_html, encoding="utf-8")

    requests: list[str] = []
    dialogs: list[str] = []
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = new_guarded_context(browser).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            # Belt and braces: nothing but the file itself may load.
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file://") else route.abort())
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            bars = page.locator("svg#timeline rect.bar")
            assert bars.count() == segments > 20
            heights = [float(h) for h in bars.evaluate_all(
                "els => els.map(e => e.getBBox().height)")]
            assert min(heights) > 0 and max(heights) > 100
            box = page.locator("svg#timeline").bounding_box()
            assert box is not None and box["width"] >= 800 and box["height"] >= 200
            assert page.locator("svg#timeline rect.danger-critical").count() > 0
            marks = page.locator("svg#timeline path.incident-mark")
            assert marks.count() == 3
            assert "worm.codered from 198.51.100.7" in marks.first.text_content()
            cells = page.locator("#incidents tr").all_inner_texts()
            assert len(cells) == 4 and "worm.codered" in cells[1]
            assert "<script>alert(1)</script>" in cells[1]  # shown as text, not run
            assert page.locator("img").count() == 0 and page.locator("script").count() == 0
            assert page.locator("#overview").inner_text().startswith("72 event(s), 3 incident")
        finally:
            browser.close()
    assert requests == [path.as_uri()] and dialogs == []
