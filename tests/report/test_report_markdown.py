"""Markdown from a real scan (the same three listeners as the SARIF tests: a real redis-server,
a fake Redis with a hostile version string, a fake Redis that stays silent on the check), and
from a stored `mamori check` run; rendered to HTML by a CommonMark parser (markdown-it-py,
HTML allowed, as a permissive ticket system would) to prove a hostile banner injects nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from mamori.model import CheckStatus, Evidence, ScanRecord, Service, Severity
from mamori.report.markdown import fenced, md_text, render_markdown
from mamori.store import Store
from store_fixtures import store_check_scan
from test_report_sarif import HOSTILE, HOSTILE_HOST, PORT, REAL_HOST, SILENT_HOST, scan_and_load

pytestmark = pytest.mark.daemon


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> ScanRecord:
    return scan_and_load(tmp_path_factory.mktemp("markdown"))


def _html(markdown: str) -> str:
    # Raw HTML allowed, tables on: the most permissive renderer a ticket could use.
    return str(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))


def _section(out: str, title: str) -> str:
    start = out.index(f"\n## {title}")
    end = out.find("\n## ", start + 1)
    return out[start : end if end != -1 else len(out)]


def test_summary_counts_and_top_three(record: ScanRecord) -> None:
    out = render_markdown(record)
    summary = _section(out, "Summary")
    assert "2 findings" in summary
    assert "| high | 2 |" in summary and "| critical | 0 |" in summary
    top = re.findall(r"^\d\. \*\*(\w+)\*\* .* on (\S+) ", summary, re.M)
    assert [sev for sev, _ in top] == ["HIGH", "HIGH"]
    assert {where for _, where in top} == {f"{REAL_HOST}:{PORT}/tcp", f"{HOSTILE_HOST}:{PORT}/tcp"}
    assert "1 not tested" in summary
    assert out.index("## Summary") < out.index("## Findings") < out.index("## Ports")


def test_top_three_are_the_worst(record: ScanRecord) -> None:
    finding = record.findings[0]
    checks = tuple(
        replace(finding, port=p, severity=s, title=f"t{p}", texts={})
        for p, s in (
            (1, Severity.LOW),
            (2, Severity.CRITICAL),
            (3, Severity.MEDIUM),
            (4, Severity.INFO),
            (5, Severity.HIGH),
        )
    )
    summary = _section(render_markdown(replace(record, checks=checks)), "Summary")
    assert re.findall(r"^\d\. \*\*(\w+)\*\* (t\d)", summary, re.M) == [
        ("CRITICAL", "t2"),
        ("HIGH", "t5"),
        ("MEDIUM", "t3"),
    ]


def test_findings_by_layer_with_evidence_and_fixes(record: ScanRecord) -> None:
    findings = _section(render_markdown(record), "Findings")
    assert "### Application (2)" in findings and "### OS (0)" in findings
    assert findings.index("### Application") < findings.index("### Network")
    block = findings[findings.index(f"`redis-unauthenticated` on {REAL_HOST}") :]
    block = block[: block.index("#### 2.")] if "#### 2." in block else block
    assert "Redis 7." in block and "gave out its INFO" in block
    assert "**Why it matters:** Anyone who reaches this port" in block
    # The reply the server really sent, in a fenced block.
    assert re.search(r"```text\n *\$\d+\n *# Server\n *redis_version:7\.", block)
    assert "- Linux: In /etc/redis/redis.conf" in block and "- macOS:" in block
    assert "`requirepass <long random>`" in block  # code span kept literal, not "&lt;"
    html = _html(block)
    assert "<code>requirepass &lt;long random&gt;</code>" in html


def test_not_tested_is_listed(record: ScanRecord) -> None:
    section = _section(render_markdown(record), "Checks not tested (1)")
    assert f"`redis-unauthenticated` on {SILENT_HOST}:{PORT}/tcp" in section
    (nt,) = [c for c in record.checks if c.status is CheckStatus.NOT_TESTED]
    assert nt.summary.removeprefix("not tested: ")[:20] in section.replace("\\", "")


def test_ports_table(record: ScanRecord) -> None:
    ports = _section(render_markdown(record), "Ports")
    rows = [line for line in ports.splitlines() if line.startswith("| 127.0.97.")]
    assert len(rows) == 3
    assert all(len(row.split(" | ")) == 6 for row in rows)  # no cell smuggled in
    real = next(row for row in rows if row.startswith(f"| {REAL_HOST} "))
    assert f"| {PORT}/tcp | open | redis | Redis" in real
    html = _html(ports)
    assert html.count("<tr>") == 4  # header and three rows


def test_hostile_banner_injects_no_link_or_html(record: ScanRecord) -> None:
    out = render_markdown(record)
    html = _html(out)
    assert "<img" not in html and "<a " not in html and "evil.example" in html
    # Outside code blocks the raw markup never appears unescaped.
    prose = re.sub(r"(?ms)^ *```.*?^ *```", "", out)
    assert "<img" not in prose and "](http" not in prose and "evil.example" in prose
    # What a reader sees is the hostile text itself, as text.
    text = re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">")
    text = text.replace("&quot;", '"').replace("&amp;", "&")
    assert "7.0.0<img src=x onerror=alert(1)>[click me](http://evil.example/x)" in text
    hostile_row = next(line for line in out.splitlines() if line.startswith(f"| {HOSTILE_HOST} "))
    assert len(hostile_row.split(" | ")) == 6


@pytest.mark.parametrize(
    "evil",
    [
        "[x](javascript:alert(1))",
        "![i](http://e/x.png)",
        "<script>alert(1)</script>",
        "<http://evil.example>",
        "http://evil.example/a",
        "www.evil.example",
        "**bold** _em_",
        "| a | b |",
        "# heading",
        "1. list",
        "- item",
        "&lt;b&gt;",
        "`code`",
        "\x1b[31mred\n2nd",
    ],
)
def test_md_text_neutralises(evil: str) -> None:
    safe = md_text(evil)
    html = _html(f"before {safe}\n\n{safe}\n\n| a |\n|---|\n| {safe} |\n")
    for tag in (
        "<a ",
        "<img",
        "<script",
        "<strong>",
        "<em>",
        "<h1>",
        "<ol>",
        "<ul>",
        "<b>",
        "<code>",
    ):
        assert tag not in html, (evil, tag, html)
    assert html.count("<td>") == 1 and "\x1b" not in html


def test_fence_cannot_be_closed_by_the_payload() -> None:
    payload = "```\n<img src=x>\n````\n[a](http://e)"
    html = _html(fenced(payload) + "\n\nafter\n")
    assert html.count("<pre>") == 1 and "<img" not in html and "<a " not in html
    assert "<p>after</p>" in html


def test_hostile_evidence_in_a_record(record: ScanRecord) -> None:
    finding = next(c for c in record.findings if c.address == REAL_HOST)
    evil = replace(
        finding,
        summary="ok <a href=http://evil>x</a>",
        evidence=Evidence(
            test="t",
            request="```\n<b>x</b>",
            reply="``` `````\n<img src=x>",
            facts={"v[1](http://e)": "<i>y</i>"},
        ),
    )
    host = record.hosts[0]
    ep = replace(
        host.endpoints[0],
        service=Service(name="http", banner="</td><script>x</script>|x|", product="p"),
    )
    rec = replace(record, checks=(evil,), hosts=(replace(host, endpoints=(ep,)),))
    html = _html(render_markdown(rec))
    for tag in ("<a ", "<img", "<script", "<b>", "<i>"):
        assert tag not in html, tag


def test_check_scan_lists_the_listeners(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "c.db"))
    try:
        record = store.get_scan(store_check_scan(store))
    finally:
        store.close()
    assert record is not None and record.listeners
    out = render_markdown(record)
    listeners = _section(out, f"Listeners ({len(record.listeners)})")
    rows = [
        line
        for line in listeners.splitlines()
        if line.startswith("| tcp") or line.startswith("| udp")
    ]
    assert len(rows) == len(record.listeners)
    for rec in record.listeners:
        assert any(f"{rec.port} |" in row or f":{rec.port} " in row for row in rows)
    assert "## Probes not finished (1)" in out and "idle" in out
    html = _html(out)
    assert html.count("<table>") == 3  # summary, ports, listeners


def test_empty_scan(record: ScanRecord) -> None:
    out = render_markdown(replace(record, checks=(), errors=(), hosts=()))
    assert "No findings." in out and "No open ports found." in out
    assert "Listeners" not in out and "Checks not tested" not in out
    assert HOSTILE not in out
