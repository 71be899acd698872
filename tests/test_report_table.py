"""Table output: nmap-like text from real stored scans; nothing dropped, nothing injected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mamori.model import ScanRecord, ScanStatus
from mamori.report import render, render_history
from mamori.store import Store
from store_fixtures import SAMPLE_ERRORS, store_sample_scan


def _stored(tmp_path: Path, status: ScanStatus | None = ScanStatus.DONE) -> ScanRecord:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store, status=status))
    assert rec is not None
    return rec


def test_scan_table_lists_ports_services_and_not_shown(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    out = render(rec, "table")
    lines = out.splitlines()
    assert lines[0].startswith(f"mamori scan #{rec.id}  DONE  started ")
    assert "targets: 127.0.0.1, ::1, nas.invalid" in out
    assert "Host 127.0.0.1 (localhost)" in out and "Host ::1" in out
    assert re.search(r"^PORT\s+STATE\s+SERVICE\s+VERSION$", out, re.M)
    assert re.search(r"^22/tcp\s+open\s+ssh\s+OpenSSH 9\.2p1$", out, re.M)
    assert re.search(r"^443/tcp\s+open\s+tls/http\s+nginx 1\.22\.1 \(likely\)$", out, re.M)
    assert re.search(r"^8080/tcp\s+open\s+-$", out, re.M)
    assert re.search(r"^9/tcp\s+filtered\s+-$", out, re.M)
    assert re.search(r"^53/udp\s+open\|filtered\s+domain\?$", out, re.M)
    assert "Not shown: 1019 closed tcp ports" in out
    assert "Not shown: 1023 closed udp ports" in out
    assert "!!" not in out  # a finished scan carries no warning
    assert all(line == line.rstrip() for line in lines)


def test_every_error_is_shown(tmp_path: Path) -> None:
    out = render(_stored(tmp_path), "table")
    for err in SAMPLE_ERRORS:
        assert err.detail in out
    assert out.count("not tested:") == len(SAMPLE_ERRORS)
    assert "not tested: 8080/tcp: idle: accepted, silent 5 s [identify:null]" in out
    assert "not tested: scan: resolve: nas.invalid did not resolve" in out
    assert "3 probe(s) could not finish" in out


@pytest.mark.parametrize(
    ("status", "banner"),
    [
        (ScanStatus.INTERRUPTED, "SCAN INTERRUPTED"),
        (ScanStatus.FAILED, "SCAN FAILED"),
        (None, "SCAN STILL RUNNING"),
    ],
)
def test_incomplete_scans_say_so_at_the_top(
    tmp_path: Path, status: ScanStatus | None, banner: str
) -> None:
    out = render(_stored(tmp_path, status), "table")
    head = out.splitlines()[:4]
    assert any(line.startswith(f"!! {banner}") for line in head), head


def test_hostile_text_is_escaped_and_markup_kept_literal(tmp_path: Path) -> None:
    from dataclasses import replace

    rec = _stored(tmp_path)
    v4 = rec.hosts[0]
    ep = v4.endpoints[1]
    assert ep.service is not None and ep.port == 22
    evil_svc = replace(ep.service, product="Evil\x1b[2J[bold]X[/bold]", version="1\r\n2")
    eps = list(v4.endpoints)
    eps[1] = replace(ep, service=evil_svc)
    rec = replace(rec, hosts=(replace(v4, endpoints=tuple(eps)), *rec.hosts[1:]))
    out = render(rec, "table")
    assert "\x1b" not in out and "\r" not in out
    assert "Evil\\x1b[2J[bold]X[/bold] 1\\r\\n2" in out


def test_colour_only_when_asked(tmp_path: Path) -> None:
    rec = _stored(tmp_path, ScanStatus.INTERRUPTED)
    assert "\x1b[" not in render(rec, "table")
    coloured = render(rec, "table", color=True)
    assert "\x1b[" in coloured
    assert "SCAN INTERRUPTED" in coloured


def test_width_is_respected(tmp_path: Path) -> None:
    out = render(_stored(tmp_path), "table", width=60)
    assert max(len(line) for line in out.splitlines()) <= 60
    for err in SAMPLE_ERRORS:  # wrapped, not cut
        assert err.detail.split()[0] in out


def test_history_table(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        first = store_sample_scan(store)
        second = store.begin_scan("check", ["::1"], {})
        out = render_history(store.list_scans(), "table")
    lines = out.splitlines()
    assert re.match(
        r"^ID\s+KIND\s+STATUS\s+STARTED\s+DURATION\s+TARGETS\s+OPEN\s+ERRORS$", lines[0]
    )
    assert re.match(rf"^\s*{second}\s+check\s+running\s+\S+ \S+ UTC\s+-\s+::1\s+0\s+0$", lines[1])
    assert re.match(
        rf"^\s*{first}\s+scan\s+done\s+\S+ \S+ UTC\s+[\d.]+s\s+127\.0\.0\.1, ::1, nas\.invalid"
        r"\s+4\s+3$",
        lines[2],
    )
    assert render_history([], "table") == "no scans stored yet\n"
