"""Table output: nmap-like text from real stored scans; nothing dropped, nothing injected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mamori.model import CheckStatus, Confidence, Layer, ScanRecord, ScanStatus, Severity
from mamori.report import render, render_history
from mamori.report.platforms import only_platforms
from mamori.store import Store
from store_fixtures import (
    GIT_EXPOSED,
    REDIS_OPEN,
    SAMPLE_ERRORS,
    SSH_PASSWORD,
    SSH_ROOT,
    store_sample_scan,
)


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
    # Every probe error, plus the one check that could not run.
    assert out.count("not tested:") == len(SAMPLE_ERRORS) + 1
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


def _section(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Findings"))
    return lines[start:]


def test_findings_section_worst_first_grouped_by_layer(tmp_path: Path) -> None:
    # The Linux fixes only (the table shows every platform the record holds; the CLI keeps this
    # system's and the router's: tests/report/test_report_platforms.py).
    rec = only_platforms(_stored(tmp_path), ("linux",))
    out = render(rec, "table", width=200)  # one line per item; wrapping is tested elsewhere
    # After the ports of every host, before the scan-level errors.
    assert out.index("Host ::1") < out.index("Findings (3)") < out.index("Not tested (1):")
    section = _section(out)
    assert section[:18] == [
        "Findings (3): 1 critical, 1 high, 1 low",
        "Application layer",
        "  CRITICAL (confirmed)  127.0.0.1:8080/tcp  Redis answers without authentication"
        " [redis-unauthenticated]",
        "      INFO returned redis_version 7.0.15 without AUTH",
        "      test: sent INFO server without AUTH",
        # Only the first line of the Linux fix: the table stays short, JSON has it all.
        "      fix (Linux): Set `requirepass` (or ACL users) in /etc/redis/redis.conf and bind"
        " 127.0.0.1.",
        "  HIGH (confirmed)  127.0.0.1:443/tcp  Git repository exposed over HTTP [web-git-exposed]",
        "      GET /.git/HEAD answered 'ref: refs/heads/[bold]main[/bold]\\x1b[2J 守り'",
        "      test: GET /.git/HEAD and a random-path baseline; compare",
        "      fix (Linux): Deny /.git in the web server"
        " (nginx: location ~ /\\.git { deny all; }).",
        "",
        "OS layer",
        "  LOW (likely)  [::1]:22/tcp  root may log in over SSH [ssh-root-login]",
        "      the server offered publickey,password to user root",
        "      test: SSH userauth 'none' as root",
        "      fix (Linux): PermitRootLogin no in /etc/ssh/sshd_config",
        "",
        "Checks not tested (1):",
    ]
    assert section[18:20] == [
        "  not tested: dns-open-resolver on 127.0.0.1:53/udp: timeout: no answer within 30 s",
        "2 checks passed",
    ]
    assert "systemctl restart" not in out  # the fix's second line is JSON-only
    assert "ssh-password-auth" not in out and "tls-expired" not in out  # passed: counted only


def test_layer_with_the_worst_finding_comes_first(tmp_path: Path) -> None:
    from dataclasses import replace

    rec = _stored(tmp_path)
    os_critical = replace(SSH_ROOT, severity=Severity.CRITICAL, check_id="smb-guest-share")
    net_info = replace(
        GIT_EXPOSED, layer=Layer.NETWORK, severity=Severity.INFO, check_id="tcp-timestamps"
    )
    app_medium = replace(REDIS_OPEN, severity=Severity.MEDIUM)
    rec = replace(rec, checks=(os_critical, app_medium, net_info))
    section = _section(render(rec, "table"))
    assert section[0] == "Findings (3): 1 critical, 1 medium, 1 info"
    titles = [line for line in section if line.endswith(" layer") or "layer (" in line]
    assert titles == ["OS layer", "Application layer", "Network layer (TCP/IP)"]
    # Within a layer: critical first, whatever order the record had.
    two = replace(
        rec, checks=(app_medium, replace(app_medium, check_id="b", severity=Severity.HIGH))
    )
    heads = [
        line
        for line in _section(render(two, "table", width=200))
        if re.match(r"^  [A-Z]+ \(", line)
    ]
    assert len(heads) == 2
    assert heads[0].startswith("  HIGH (confirmed)") and heads[1].startswith("  MEDIUM (confirmed)")


def test_no_checks_no_section_and_no_findings_said_plainly(tmp_path: Path) -> None:
    from dataclasses import replace

    rec = _stored(tmp_path)
    bare = render(replace(rec, checks=()), "table")
    assert "Findings" not in bare and "passed" not in bare and "Checks not tested" not in bare
    clean_run = render(replace(rec, checks=(SSH_PASSWORD,)), "table")
    assert "Findings: none" in clean_run and "1 check passed" in clean_run
    assert "Checks not tested" not in clean_run


def test_a_check_that_could_not_run_is_never_silent(tmp_path: Path) -> None:
    from dataclasses import replace

    rec = _stored(tmp_path)
    broken = replace(
        REDIS_OPEN,
        status=CheckStatus.NOT_TESTED,
        confidence=None,
        evidence=None,
        summary="not tested: refused: connection refused",
    )
    out = render(replace(rec, checks=(broken,)), "table")
    assert "Findings: none" in out
    assert "Checks not tested (1):" in out
    assert (
        "  not tested: redis-unauthenticated on 127.0.0.1:8080/tcp: refused: connection refused"
        in out
    )
    assert "0 checks passed" in out


def test_hostile_check_text_is_escaped(tmp_path: Path) -> None:
    from dataclasses import replace

    rec = _stored(tmp_path)
    evil = replace(
        GIT_EXPOSED,
        address="::1",
        title="[link=http://x]click[/link]\x1b]8;;http://x\x07",
        check_id="web-[red]x[/red]",
        summary="a\rb\x1b[2J[blink]c[/blink]",
        remediation={"linux": "\n\n[bold]fix\x1b[0m\nsecond"},
    )
    odd = replace(evil, status=CheckStatus.NOT_TESTED, confidence=None, port=1)
    for color in (False, True):
        out = render(replace(rec, checks=(evil, odd)), "table", width=300, color=color)
        assert "\x1b[2J" not in out and "\r" not in out and "\x07" not in out
        assert "\x1b]8" not in out  # no hyperlink escape
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # our own colours, when asked
        assert "[link=http://x]click[/link]\\x1b]8;;http://x\\x07 [web-[red]x[/red]]" in plain
        assert "a\\rb\\x1b[2J[blink]c[/blink]" in plain
        assert "fix (Linux): [bold]fix\\x1b[0m" in plain
        assert "not tested: web-[red]x[/red] on [::1]:1/tcp: a\\rb" in plain


def test_severity_colours_only_when_asked(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    plain = render(rec, "table")
    coloured = render(rec, "table", color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mCRITICAL" in coloured
    assert Confidence.CONFIRMED.value in coloured


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
