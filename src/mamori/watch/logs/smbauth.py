"""Samba's authentication audit lines (``log level = 1 auth_audit:3``, in its log file, on
stdout with ``--debug-stdout``, or through syslog). Pure::

    Auth: [SMB2,(null)] user [WORKGROUP]\\[mallory] at [Tue, 08 Dec 2026 03:24:39.101824 UTC]
    with [NTLMv2] status [NT_STATUS_WRONG_PASSWORD] workstation [PC] remote host
    [ipv4:192.0.2.7:48462] mapped to [WORKGROUP]\\[mallory]. local host [ipv4:192.0.2.1:445]

A status other than ``NT_STATUS_OK`` is an ``auth.failure`` (``NT_STATUS_NO_SUCH_USER`` with
``invalid_user=yes``), ``NT_STATUS_OK`` an ``auth.success``; anonymous logons (no user name)
are left out. Fields: ``service`` (smb), ``username`` (``DOMAIN\\user``), ``method``
(NTLMv2…), ``status``, ``stage=failed``, ``workstation``, ``transport`` (SMB2…).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import MONTHS, make_event, port

__all__ = ["parse_smb_auth"]

_AUTH = re.compile(
    r"Auth: \[([^\],\s]{1,40}),[^\]]{0,80}\] user \[([^\]]{0,256})\]\\\[([^\]]{0,256})\] "
    r"at \[([^\]]{1,64})\] with \[([^\]]{1,40})\] status \[(NT_STATUS_[A-Z0-9_]{1,64})\] "
    r"workstation \[([^\]]{0,256})\] remote host \[ipv[46]:(.{1,64}?):(\d{1,5})\]")
_TIME = re.compile(r"\w{3}, (\d{1,2}) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? UTC")


def _time(text: str) -> datetime | None:
    m = _TIME.fullmatch(text)
    if m is None or m.group(2) not in MONTHS:
        return None
    day, mon, year, hh, mm, ss, frac = m.groups()
    try:
        return datetime(int(year), MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                        int((frac or "0").ljust(6, "0")), tzinfo=UTC)
    except ValueError:
        return None


def parse_smb_auth(line: str, *, source: str, now: datetime) -> Event | None:
    """One samba auth audit line as an auth event, or None."""
    m = _AUTH.search(line)
    if m is None:
        return None
    transport, domain, user, when, method, status, workstation, src, sport = m.groups()
    if not user:
        return None  # anonymous (the null session)
    fields = {"service": "smb", "username": f"{domain}\\{user}" if domain else user,
              "method": method, "status": status, "transport": transport,
              "workstation": workstation}
    if status == "NT_STATUS_OK":
        type_ = EventType.AUTH_SUCCESS
    else:
        type_ = EventType.AUTH_FAILURE
        fields["stage"] = "failed"
        if status == "NT_STATUS_NO_SUCH_USER":
            fields["invalid_user"] = "yes"
    return make_event(type_, time=_time(when) or now, source=source, src=src.strip("[]"),
                      src_port=port(sport), proto="tcp", fields=fields,
                      text=line[m.start():].strip())
