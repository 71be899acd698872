"""The table view of `mamori check` (kind "check"): the checklist, then the listeners, from
real stored records; nothing dropped, nothing injected."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from mamori.model import CheckStatus, Evidence, ScanRecord, ScanStatus
from mamori.report import render, render_checklist
from mamori.report.checklist import first_sentence, listener_for
from mamori.store import Store
from store_fixtures import (
    DNS_UNSURE,
    HOSTILE_LOOPBACK,
    REDIS_ALL,
    REDIS_INSIDE,
    SAMPLE_LISTENERS_ORDERED,
    SMB_GUEST,
    store_check_scan,
    store_sample_scan,
)

_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _stored(tmp_path: Path, status: ScanStatus | None = ScanStatus.DONE) -> ScanRecord:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_check_scan(store, status=status))
    assert rec is not None
    return rec


def _finding_block(out: str, check_id: str) -> str:
    """The lines of one numbered finding: its head line up to the next finding or section."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if f"[{check_id}]" in line)
    end = start + 1
    while end < len(lines) and lines[end].startswith("       "):
        end += 1
    return "\n".join(lines[start:end])


def test_check_shows_the_checklist_first_then_the_listeners(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    out = render(rec, "table", width=120)
    lines = out.splitlines()
    assert lines[0].startswith(f"mamori check #{rec.id}  DONE  started ")
    assert "targets: localhost" in out
    assert "Checklist: 3 findings (1 critical, 1 high, 1 medium)" in out
    # Not the scan view: no per-host port table.
    assert "Host 127.0.0.1" not in out and not re.search(r"^PORT\s+STATE", out, re.M)
    # Layers in order of their worst finding; every finding numbered by risk.
    order = [
        "Application layer",
        " 1. CRITICAL (confirmed)  127.0.0.1:6379/tcp  Redis answers without authentication",
        "OS layer",
        " 2. HIGH (confirmed)  Samba lets guests in without a password [sharing-smb-guest]",
        "Network layer (TCP/IP)",
        " 3. MEDIUM (confirmed)  A listener is reachable from the network [exposed-listener]",
        "Checks not tested (1):",
        "1 check passed",
        "Listeners (7, 3 reachable from the network)",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    assert all(line == line.rstrip() for line in lines)


def test_each_finding_says_why_evidence_and_both_fixes(tmp_path: Path) -> None:
    out = render(_stored(tmp_path), "table", width=200)
    redis = _finding_block(out, "redis-unauthenticated")
    assert "why: Anyone who reaches this port can read and overwrite every key" in redis
    # Evidence joins the inside (process, bind address, firewall rule) with the probe's reply.
    assert "process redis-server(812) as redis, listening on 0.0.0.0:6379/tcp (all)" in redis
    assert "firewall: allowed by nftables: chain inet filter input: policy accept" in redis
    assert "test: sent INFO server without AUTH" in redis
    assert "reply: $1234\\r\\n# Server\\r\\nredis_version:7.0.15\\r\\n" in redis
    assert "fix (Linux): Set `requirepass` (or ACL users) in /etc/redis/redis.conf" in redis
    assert "Then: systemctl restart redis-server" in redis  # the whole fix, on one line
    assert "fix (macOS): Edit /opt/homebrew/etc/redis.conf" in redis
    smb = _finding_block(out, "sharing-smb-guest")
    assert "why: A share with guest access can be read" in smb
    assert "process " not in smb  # an inside check belongs to no listener
    assert "reply: [public] guest ok = yes" in smb
    assert "fix (macOS): Run `sudo sysadminctl -smbGuestAccess off`." in smb
    exposed = _finding_block(out, "exposed-listener")
    assert "fix (Linux): Bind to 127.0.0.1" in exposed
    assert "fix (macOS)" not in exposed  # "-" means no advice: not printed as a fix


def test_the_rule_that_decided_is_evidence(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    ssh = replace(REDIS_INSIDE, check_id="ssh-x", address="::1", port=22, title="SSH thing")
    out = render(replace(rec, checks=(ssh,)), "table", width=200)
    block = _finding_block(out, "ssh-x")
    assert "process sshd(700) as root, listening on [::]:22/tcp (all)" in block
    assert "rule: tcp dport 22 accept" in block


def test_why_comes_from_the_catalogs_or_the_caller(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    assert "why:" not in render_checklist(rec, why={})
    out = render_checklist(rec, why={"sharing-smb-guest": "guests read your files"}, width=200)
    assert "why: guests read your files" in _finding_block(out, "sharing-smb-guest")
    assert "why:" not in _finding_block(out, "redis-unauthenticated")
    assert first_sentence("One  thing.\nTwo things. Three.") == "One thing."
    assert first_sentence("no full stop at all") == "no full stop at all"


def test_listeners_table_rows_most_exposed_first(tmp_path: Path) -> None:
    out = render(_stored(tmp_path), "table", width=140)
    assert re.search(
        r"^PROTO\s+ADDRESS:PORT\s+SCOPE\s+PROCESS\(pid\)\s+USER\s+FIREWALL\s+SERVICE$", out, re.M
    )
    rows = [line for line in out.splitlines() if re.match(r"^(tcp|udp)\s", line)]
    expected = [
        r"tcp\s+\[::\]:22\s+all\s+sshd\(700\)\s+root\s+allowed\s+ssh \(OpenSSH\)",
        r"tcp\s+0\.0\.0\.0:6379\s+all\s+redis-server\(812\)\s+redis\s+allowed\s+redis \(Redis\)",
        r"udp\s+\[fe80::1%eth0\]:5353\s+interface\s+avahi-daemon\(510\)\s+avahi\s+no-firewall"
        r"\s+not probed",
        r"udp\s+192\.0\.2\.2:53\s+interface\s+\?\s+\?\s+undetermined\s+not probed",
        r"tcp\s+0\.0\.0\.0:445\s+all\s+smbd\(900\)\s+root\s+blocked\s+smb",
        r"tcp\s+127\.0\.0\.1:5432\s+loopback\s+postgres\(1200\)\s+postgres\s+-\s+unidentified",
        r"tcp\s+127\.0\.0\.1:8080\s+loopback\s+",
    ]
    assert len(rows) == len(SAMPLE_LISTENERS_ORDERED) == len(expected)
    for row, pattern in zip(rows, expected, strict=True):
        assert re.match(pattern + "$" if "8080" not in pattern else pattern, row), row


def test_undetermined_and_not_probed_are_never_silent(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    out = render(rec, "table", width=200)
    assert (
        "firewall undetermined: 192.0.2.2:53/udp (iptables): " + DNS_UNSURE.firewall_reason
    ) in out
    assert "not probed: [fe80::1%eth0]:5353/udp: bound to a non-loopback address only" in out
    assert "not probed: 192.0.2.2:53/udp: bound to a non-loopback address only" in out
    assert "not tested: sharing-nfs-exports: /etc/exports: permission denied" in out
    assert "not tested: 127.0.0.1 8080/tcp: idle: accepted, silent 5 s [identify]" in out
    assert "1 probe(s) could not finish" in out
    # A listener reachable from the network whose firewall nobody could read: said so.
    unknown = replace(REDIS_ALL, firewall=None, firewall_backend="", firewall_reason="")
    out = render(replace(rec, listeners=(unknown,)), "table", width=200)
    assert re.search(r"^tcp\s+0\.0\.0\.0:6379\s+all\s+\S+\s+redis\s+unknown\s", out, re.M)
    assert "firewall undetermined: 0.0.0.0:6379/tcp: no firewall backend could be read" in out


def test_hostile_process_and_product_text_is_escaped(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    on_hostile = replace(
        REDIS_INSIDE,
        check_id="web-x",
        port=8080,
        evidence=Evidence(test="GET /", reply="HTTP/1.1 200\r\n\x1b]8;;http://x\x07[blink]y"),
    )
    rec = replace(rec, checks=(on_hostile, *rec.checks))
    for colour in (False, True):
        out = render(rec, "table", width=300, color=colour)
        assert "\x1b[2J" not in out and "\x1b]" not in out and "\x07" not in out
        assert "\r" not in out
        plain = _SGR.sub("", out)
        if not colour:
            assert plain == out  # no escape sequence at all without colour
        assert "evil\\x1b[31m[bold]x(4242)" in plain  # markup stays literal text
        assert "http (nginx [bold]x[/bold]\\x1b[2J 守り)" in plain
        block = _finding_block(plain, "web-x")
        assert "process evil\\x1b[31m[bold]x(4242) as nobody" in block
        assert "firewall: not asked (loopback only)" in block
        assert "reply: HTTP/1.1 200\\r\\n\\x1b]8;;http://x\\x07[blink]y" in block


def test_colours_only_when_asked(tmp_path: Path) -> None:
    rec = _stored(tmp_path)
    assert "\x1b[" not in render(rec, "table")
    coloured = render(rec, "table", color=True, width=140)
    assert "\x1b[1;31mCRITICAL" in coloured
    assert "\x1b[1;31mallowed" in coloured  # reachable and let in: red
    assert "\x1b[32mblocked" in coloured


def test_width_is_respected(tmp_path: Path) -> None:
    out = render(_stored(tmp_path), "table", width=80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "[fe80::1%eth0]:5353" in out  # addresses are never cut


def test_empty_check_says_so_plainly(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        sid = store.begin_scan("check", ["localhost"], {})
        store.finish_scan(sid, ScanStatus.DONE)
        rec = store.get_scan(sid)
    assert rec is not None
    out = render(rec, "table")
    assert "Checklist: no findings" in out
    assert out.count("  no findings") == 3  # every layer named, none skipped
    assert "0 checks passed" in out
    assert "Listeners: none found" in out


@pytest.mark.parametrize(
    ("status", "banner"), [(ScanStatus.INTERRUPTED, "SCAN INTERRUPTED"), (None, "SCAN STILL")]
)
def test_incomplete_check_says_so_at_the_top(
    tmp_path: Path, status: ScanStatus | None, banner: str
) -> None:
    out = render(_stored(tmp_path, status), "table")
    assert any(line.startswith(f"!! {banner}") for line in out.splitlines()[:4])


def test_scan_kind_keeps_the_scan_view(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "m.db")) as store:
        rec = store.get_scan(store_sample_scan(store))
    assert rec is not None
    out = render(rec, "table")
    assert "Host 127.0.0.1 (localhost)" in out and "Findings (3)" in out
    assert "Checklist" not in out and "Listeners" not in out


def test_listener_for_matches_probe_address_then_bound_address() -> None:
    assert listener_for(REDIS_INSIDE, SAMPLE_LISTENERS_ORDERED) == REDIS_ALL
    assert listener_for(SMB_GUEST, SAMPLE_LISTENERS_ORDERED) is None
    bound = replace(REDIS_INSIDE, address="0.0.0.0")
    assert listener_for(bound, SAMPLE_LISTENERS_ORDERED) == REDIS_ALL
    other = replace(REDIS_INSIDE, port=6380)
    assert listener_for(other, SAMPLE_LISTENERS_ORDERED) is None
    assert listener_for(replace(REDIS_INSIDE, port=8080), [HOSTILE_LOOPBACK]) == HOSTILE_LOOPBACK
    assert REDIS_INSIDE.status is CheckStatus.FINDING
