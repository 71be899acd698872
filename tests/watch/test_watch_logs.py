"""Log parsers on recorded samples (tests/fixtures/watch/) and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.model.watch import EventType
from mamori.watch.logs import LOG_KINDS, LogSpec, parse_line
from mamori.watch.logs.journald import decode_record, parse_record

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "watch"
NOW = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
F, INV, S = EventType.AUTH_FAILURE, EventType.AUTH_INVALID_USER, EventType.AUTH_SUCCESS


def parsed(kind: str, name: str, **kw: object) -> list[tuple[int, object]]:
    out = []
    for n, line in enumerate((FIXTURES / name).read_text().splitlines()):
        event = parse_line(kind, line, now=NOW, **kw)  # type: ignore[arg-type]
        if event is not None:
            out.append((n, event))
    return out


def test_auth_log_traditional_syslog() -> None:
    events = parsed("auth", "auth_debian.log", year=2024)
    got = [(n, e.type, e.src, e.src_port, e.fields.get("username"), e.fields.get("stage"))
           for n, e in events]
    assert got == [
        (1, INV, "203.0.113.45", 51234, "admin", None),
        (3, F, "203.0.113.45", None, "", "pam"),
        (4, F, "203.0.113.45", 51234, "admin", "failed"),
        (5, F, "203.0.113.45", 51234, "admin", "failed"),
        (6, F, "203.0.113.45", 51234, "admin", "failed"),
        (7, F, "203.0.113.45", 51234, "admin", "max-attempts"),
        (9, F, "203.0.113.45", None, "", "pam"),
        (10, F, "203.0.113.45", None, "root", "pam"),
        (11, F, "203.0.113.45", 51240, "root", "failed"),
        (12, F, "203.0.113.45", 51240, "root", "closed"),
        (13, F, "198.51.100.77", 40022, "ubuntu", "closed"),
        (14, S, "192.0.2.10", 50522, "alice", None),
        (16, INV, "198.51.100.78", None, "git", None),
        (19, F, "198.51.100.79", 33100, "test", "closed"),
        (20, F, "203.0.113.46", 60000, "root", "failed"),
        (21, F, "203.0.113.47", 42424, "", "failed"),
        (22, F, "2001:db8::7", 50001, "root", "failed"),
    ]
    first = events[0][1]
    assert first.time == datetime(2024, 3, 3, 10, 15, 1).astimezone(UTC)
    assert first.source == "log:auth" and first.proto == "tcp"
    assert first.fields["pid"] == "20110" and first.fields["service"] == "ssh"
    fields = {n: e.fields for n, e in events}
    assert fields[4]["invalid_user"] == "yes" and fields[4]["method"] == "password"
    assert fields[20]["repeat"] == "3"
    assert fields[22]["method"] == "publickey"
    assert fields[9]["repeat"] == "2"
    assert fields[16]["reason"] == "not listed in AllowUsers"


def test_auth_year_rollover_without_year() -> None:
    jan = datetime(2025, 1, 2, tzinfo=UTC)
    e = parse_line("auth", "Dec 31 23:59:00 h sshd[1]: Invalid user x from 192.0.2.1", now=jan)
    assert e is not None and e.time.year == 2024
    e = parse_line("auth", "Jan  1 00:00:10 h sshd[1]: Invalid user x from 192.0.2.1", now=jan)
    assert e is not None and e.time.year == 2025


def test_auth_log_rfc3339_and_rfc5424() -> None:
    got = [(e.type, e.src, e.time) for _, e in parsed("auth", "auth_rfc3339.log")]
    assert got == [
        (INV, "203.0.113.50", datetime(2024, 3, 3, 1, 15, 1, 482113, tzinfo=UTC)),
        (F, "203.0.113.50", datetime(2024, 3, 3, 1, 15, 3, 100200, tzinfo=UTC)),
        (F, "203.0.113.51", datetime(2024, 3, 3, 1, 15, 4, 1, tzinfo=UTC)),
        (S, "192.0.2.11", datetime(2024, 3, 3, 1, 15, 5, tzinfo=UTC)),
    ]
    got5 = [(e.type, e.src, e.time, e.fields.get("pid")) for _, e in parsed("auth",
                                                                           "auth_rfc5424.log")]
    assert got5 == [
        (F, "203.0.113.60", datetime(2024, 3, 3, 1, 15, 1, 3000, tzinfo=UTC), "20110"),
        (INV, "203.0.113.61", datetime(2024, 3, 3, 1, 15, 2, 3000, tzinfo=UTC), "20111"),
        (S, "192.0.2.10", datetime(2024, 3, 3, 1, 15, 3, tzinfo=UTC), None),
    ]


def test_auth_bare_sshd_e_lines_and_injected_usernames() -> None:
    e = parse_line("auth", "Failed password for root from 127.0.130.9 port 41146 ssh2", now=NOW)
    assert e is not None and e.time == NOW and e.src == "127.0.130.9"
    # the visitor chooses the user name: a fake "from ... port" inside it must not win
    e = parse_line("auth", "Failed password for invalid user x from 6.6.6.6 port 22 "
                   "from 203.0.113.9 port 5555 ssh2", now=NOW)
    assert e is not None and (e.src, e.src_port) == ("203.0.113.9", 5555)
    assert e.fields["username"] == "x from 6.6.6.6 port 22"
    e = parse_line("auth", "Invalid user a from 6.6.6.6 from 203.0.113.9 port 1", now=NOW)
    assert e is not None and e.src == "203.0.113.9"
    assert parse_line("auth", "Mar  3 10:00:00 h CRON[1]: Failed password for root from "
                      "203.0.113.9 port 1 ssh2", now=NOW) is None


def test_access_log_nginx_fields_and_escapes() -> None:
    events = dict(parsed("access", "access_nginx.log"))
    assert len(events) == 30  # every line is a request
    e = events[0]
    assert (e.type, e.src, e.fields["method"], e.fields["path"], e.fields["status"],
            e.fields["bytes"]) == (EventType.HTTP_REQUEST, "192.0.2.10", "GET", "/", "200", "612")
    assert e.time == datetime(2024, 3, 3, 1, 15, 1, tzinfo=UTC)
    assert e.fields["user_agent"].startswith("Mozilla/5.0 (X11")
    assert "referer" not in e.fields
    tls = events[10]
    assert tls.fields["malformed"] == "yes" and tls.fields["request"].startswith("\x16\x03\x01")
    assert tls.excerpt.startswith("\\x16\\x03\\x01\\x00")
    assert events[11].fields["request"] == "" and events[11].fields["malformed"] == "yes"
    quoted = events[27]
    assert quoted.fields["query"] == 'q="quoted"+words' and quoted.fields["user"] == "alice"
    assert quoted.fields["referer"] == "https://shop.example/?a=b"
    assert events[26].src == "2001:db8::7"
    assert events[9].fields["referer"].startswith('() { :; }; /bin/bash -c "wget')
    think = events[28]
    assert "\\think\\app/invokefunction" in think.fields["url"]


def test_access_log_apache_variants() -> None:
    events = dict(parsed("access", "access_apache.log"))
    assert len(events) == 7
    assert events[1].fields["user_agent"] == 'Mozilla/5.0 "quoted" agent'
    vhost = events[3]
    assert vhost.fields["vhost"] == "shop.example:443" and vhost.src == "198.51.100.52"
    assert vhost.fields["path"] == "/.env.production"
    assert events[5].fields["status"] == "408" and "bytes" not in events[5].fields
    common = events[6]  # common log format: no referer, no user agent
    assert common.fields["status"] == "304" and "user_agent" not in common.fields


def test_firewall_kernel_lines() -> None:
    got = [(n, e.src, e.src_port, e.dst_port, e.proto, e.fields.get("flags"), e.fields["prefix"],
            e.fields["action"]) for n, e in parsed("firewall", "kern_firewall.log", year=2024)]
    assert got == [
        (0, "203.0.113.70", 51234, 23, "tcp", "SYN", "nft-drop:", "drop"),
        (1, "203.0.113.70", 51234, 445, "tcp", "", "nft-drop:", "drop"),
        (2, "203.0.113.70", 51234, 3389, "tcp", "URG,PSH,FIN", "nft-drop:", "drop"),
        (3, "203.0.113.71", 40000, 1900, "udp", None, "[UFW BLOCK]", "drop"),
        (4, "203.0.113.72", None, None, "icmp", None, "iptables-INPUT-DROP:", "drop"),
        (5, "2001:0db8:0000:0000:0000:0000:0000:0007", 41000, 22, "tcp", "SYN", "nft-reject",
         "reject"),
        (8, "203.0.113.73", 61000, 8080, "tcp", "ACK", "nft-drop:", "drop"),
        (9, "203.0.113.74", 61001, 81, "tcp", "SYN", "nft-drop:", "drop"),
    ]
    events = dict(parsed("firewall", "kern_firewall.log", year=2024))
    assert events[4].fields["icmp_type"] == "8" and events[0].dst == "198.51.100.2"
    assert events[8].time == NOW  # a dmesg line has no wall-clock time
    assert events[0].type is EventType.FIREWALL_DROP


def test_pflog_tcpdump_lines() -> None:
    got = [(n, e.src, e.src_port, e.dst_port, e.proto, e.fields.get("flags"), e.fields["action"])
           for n, e in parsed("pflog", "pflog_tcpdump.txt")]
    assert got == [
        (1, "203.0.113.80", 51234, 22, "tcp", "SYN", "block"),
        (2, "203.0.113.80", 51234, 23, "tcp", "SYN", "block"),
        (3, "203.0.113.80", 51234, 445, "tcp", "", "block"),
        (4, "203.0.113.80", 51234, 3389, "tcp", "URG,PSH,FIN", "block"),
        (5, "203.0.113.81", None, None, "icmp", None, "block"),
        (6, "203.0.113.82", 5353, 161, "udp", None, "block"),
        (8, "2001:db8::80", 40000, 22, "tcp", "SYN", "block"),
        (9, "2001:db8::81", None, None, "icmp", None, "block"),
    ]
    events = dict(parsed("pflog", "pflog_tcpdump.txt"))
    assert events[5].fields["icmp"] == "echo request" and events[9].fields["icmp"] == "echo request"
    assert events[1].time == NOW and events[1].fields["in"] == "en0"
    assert events[6].fields["rule"] == "3.com.apple/0"
    e = parse_line("pflog", "2024-03-03 10:15:01.204518 rule 0/0(match): block in on en0: "
                   "203.0.113.80.1 > 192.168.1.10.22: Flags [S], length 0", now=NOW)
    assert e is not None and e.time == datetime(2024, 3, 3, 10, 15, 1, 204518).astimezone(UTC)


def test_macos_unified_log_sshd() -> None:
    got = [(n, e.type, e.src, e.fields.get("username"), e.fields.get("stage"))
           for n, e in parsed("macos-unified", "macos_sshd_log.txt")]
    assert got == [
        (3, INV, "203.0.113.90", "admin", None),
        (4, F, "203.0.113.90", "admin", "pam"),
        (5, F, "203.0.113.90", "admin", "failed"),
        (6, F, "203.0.113.91", "root", "pam"),
        (7, F, "203.0.113.91", "root", "failed"),
        (9, S, "192.168.1.20", "owner", None),
        (10, F, "203.0.113.92", "root", "closed"),
    ]
    first = dict(parsed("macos-unified", "macos_sshd_log.txt"))[3]
    assert first.time == datetime(2024, 3, 3, 1, 40, 1, 123456, tzinfo=UTC)


def test_journald_records_recorded_from_journalctl() -> None:
    lines = (FIXTURES / "journal_sshd.json").read_text().splitlines()
    events = [parse_line("journald-sshd", line, now=NOW) for line in lines]
    got = [(e.type, e.src, e.fields.get("username"), e.fields.get("stage"), e.fields.get("pid"))
           for e in events if e is not None]
    assert got == [
        (INV, "203.0.113.45", "admin", None, "20110"),
        (F, "203.0.113.45", "", "pam", "20110"),
        (F, "203.0.113.45", "admin", "failed", "20110"),
        (F, "203.0.113.45", "admin", "closed", "20110"),
        (F, "203.0.113.46", "root", "failed", "20133"),
        (S, "192.0.2.10", "alice", None, "20150"),
        (INV, "203.0.113.47", "\ufffd\ufffdadm", None, "20170"),  # MESSAGE stored as bytes
    ]
    record = decode_record(lines[0])
    assert record is not None
    e = parse_record(record, "journald-sshd", source="journald:sshd")
    assert e is not None and e.time == datetime.fromtimestamp(
        int(record["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
    # a record of another program is not sshd's, whatever it says
    assert parse_record({**record, "SYSLOG_IDENTIFIER": "cron"}, "journald-sshd",
                        source="j") is None


def test_journald_kernel_records() -> None:
    lines = (FIXTURES / "journal_kernel.json").read_text().splitlines()
    events = [parse_line("journald-kernel", line, now=NOW) for line in lines]
    got = [(e.src, e.dst_port, e.proto, e.fields.get("flags")) for e in events if e is not None]
    assert got == [("203.0.113.70", 23, "tcp", "SYN"), ("203.0.113.70", 2323, "tcp", "SYN"),
                   ("203.0.113.71", 1900, "udp", None)]
    assert events[0] is not None and events[0].time == datetime(2024, 3, 3, 1, 10, 1, tzinfo=UTC)
    record = decode_record(lines[0])
    assert record is not None
    user = {**record, "_TRANSPORT": "journal", "SYSLOG_IDENTIFIER": "evil"}
    assert parse_record(user, "journald-kernel", source="j") is None  # not from the kernel


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LOG_KINDS), st.text(max_size=600))
def test_garbage_never_raises(kind: str, text: str) -> None:
    parse_line(kind, text, now=NOW)


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_hostile_lines_are_bounded(kind: str) -> None:
    import time as _time

    for text in ("Failed password for " + "x from " * 3000 + "1.2.3.4 port 1",
                 '1.2.3.4 - - [03/Mar/2024:10:00:00 +0000] "' + "\\\\" * 8000,
                 "IN=eth0 SRC=1.2.3.4 " + "SYN " * 4000,
                 "rule 0/0(match): block in on en0: " + "1." * 5000,
                 "{" * 10000, "\x00\xff" * 5000, "<38>1 " + "[a" * 5000):
        start = _time.perf_counter()
        parse_line(kind, text, now=NOW)
        assert _time.perf_counter() - start < 1.0


def test_parse_line_and_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown log kind"):
        parse_line("syslog", "x")
    with pytest.raises(ValueError, match="needs a path"):
        LogSpec("access")
    with pytest.raises(ValueError, match="unknown log kind"):
        LogSpec("nginx", "/x")
    spec = LogSpec.parse("access:/var/log/nginx/access.log")
    assert (spec.kind, spec.path, spec.source) == ("access", "/var/log/nginx/access.log",
                                                   "log:/var/log/nginx/access.log")
    assert LogSpec.parse("journald-sshd").source == "journald:sshd"
    assert LogSpec("auth", Path("/var/log/auth.log")).path == "/var/log/auth.log"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad log spec"):
        LogSpec.parse("/var/log/auth.log")


def test_fast_event_equals_the_normal_construction() -> None:
    from types import MappingProxyType

    from mamori.model.watch import Event
    from mamori.watch.logs.common import fast_event

    fields = {"method": "GET", "path": "/"}
    fast = fast_event(NOW, EventType.HTTP_REQUEST, "log:x", "127.0.130.3", 5, "127.0.130.4", 80,
                      "tcp", fields, "GET / HTTP/1.1\x00")
    normal = Event(time=NOW, type=EventType.HTTP_REQUEST, source="log:x", src="127.0.130.3",
                   src_port=5, dst="127.0.130.4", dst_port=80, proto="tcp",
                   fields=MappingProxyType(dict(fields)), excerpt="GET / HTTP/1.1\\x00")
    assert fast == normal and hash(fast.time) == hash(normal.time)
    with pytest.raises(AttributeError):
        fast.src = "x"  # type: ignore[misc]
