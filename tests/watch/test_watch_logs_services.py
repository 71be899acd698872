"""The mail and samba auth parsers on the shapes the real-daemon tests do not produce here:
through syslog, with port logging, anonymous and unknown users, and hostile lines."""

from __future__ import annotations

import time

from mamori.model.watch import EventType
from mamori.watch.logs.parse import parse_line


def test_syslog_routed_lines() -> None:
    dovecot = parse_line("auth", "Dec  8 03:20:34 mx dovecot: pop3-login: Aborted login (auth "
                         "failed, 3 attempts in 6 secs): user=<bob>, method=PLAIN, "
                         "rip=2001:db8::9, lip=2001:db8::1, session=<x>", year=2026)
    assert dovecot is not None and (dovecot.src, dovecot.fields["service"],
                                    dovecot.fields["attempts"]) == ("2001:db8::9", "pop3", "3")
    postfix = parse_line("auth", "Dec  8 03:20:34 mx postfix/smtps/smtpd[77]: warning: "
                         "host.example[192.0.2.7]:40123: SASL LOGIN authentication failed: "
                         "UGFzc3dvcmQ6", year=2026)
    assert postfix is not None and (postfix.src, postfix.src_port, postfix.fields["method"],
                                    postfix.fields["username"]) == ("192.0.2.7", 40123,
                                                                    "LOGIN", "")
    samba = parse_line("auth", "Dec  8 03:20:34 nas smbd[9]:   Auth: [SMB2,(null)] user "
                       "[NAS]\\[admin] at [Tue, 08 Dec 2026 03:20:34.5 UTC] with [NTLMv2] "
                       "status [NT_STATUS_NO_SUCH_USER] workstation [X] remote host "
                       "[ipv6:fd00::7:50000] mapped to [NAS]\\[admin]. local host "
                       "[ipv6:fd00::1:445]")
    assert samba is not None and samba.type is EventType.AUTH_FAILURE
    assert (samba.src, samba.fields["invalid_user"], samba.time.isoformat()) == (
        "fd00::7", "yes", "2026-12-08T03:20:34.500000+00:00")


def test_what_is_not_a_failed_login() -> None:
    for line in (
        "Auth: [SMB2,(null)] user []\\[] at [Tue, 08 Dec 2026 03:20:34.5 UTC] with [NTLMv2] "
        "status [NT_STATUS_OK] workstation [X] remote host [ipv4:192.0.2.7:1] mapped",
        "Dec  8 03:20:34 mx postfix/smtpd[7]: warning: SASL authentication failure: "
        "Password verification failed",
        "Dec  8 03:20:34 mx postfix/smtpd[7]: connect from unknown[192.0.2.7]",
        "Dec 08 03:20:13 imap-login: Info: Disconnected: Connection closed (no auth attempts "
        "in 0 secs): user=<>, rip=192.0.2.7, lip=192.0.2.1, session=<x>",
    ):
        assert parse_line("auth", line) is None, line
    ok = parse_line("auth", "Auth: [SMB2,(null)] user [W]\\[u] at [x] with [NTLMv2] status "
                    "[NT_STATUS_OK] workstation [X] remote host [ipv4:192.0.2.7:1] mapped")
    assert ok is not None and ok.type is EventType.AUTH_SUCCESS


def test_hostile_lines_are_cheap_and_harmless() -> None:
    lines = ["Auth: [" * 20000, "x (auth failed, " * 10000 + "imap-login: ",
             "Dec  8 03:20:34 mx postfix/smtpd[7]: warning: " + "[" * 60000,
             "{" * 50000, '{"request": {"method": "GET"}}', '{"ClientHost": 7}']
    t = time.perf_counter()
    assert [parse_line("auth", line) for line in lines[:3]] == [None] * 3
    assert [parse_line("access", line) for line in lines[3:]] == [None] * 3
    assert time.perf_counter() - t < 1.0
