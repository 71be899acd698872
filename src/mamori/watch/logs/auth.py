"""OpenSSH authentication lines (auth.log, secure, ``sshd -E`` files, journald, macOS).

Pure. ``parse_message`` reads one sshd message (the part after ``sshd[pid]: ``) into an
event; ``parse`` first splits a syslog line and keeps only sshd's own lines.

Events: ``auth.failure`` (fields ``stage``: ``failed`` for "Failed <method> for ...",
``max-attempts``, ``pam`` for PAM failures, ``closed`` for a connection closed or
disconnected by a user still authenticating), ``auth.invalid_user`` ("Invalid user ...",
"User x from y not allowed ..."), ``auth.success`` ("Accepted <method> for ...").
Fields: ``service`` (ssh), ``username``, ``method``, ``stage``, ``invalid_user`` (yes),
``pid``, ``repeat`` (rsyslog's "message repeated N times").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import make_event, port, split_syslog
from mamori.watch.logs.mailauth import parse_mail_auth
from mamori.watch.logs.smbauth import parse_smb_auth

# User names are whatever the visitor typed, so a name may itself contain "from 1.2.3.4
# port 22": every pattern takes the LAST "from <addr> port <n>" (greedy name, anchored tail).
_TAIL = r"(?: ssh2)?(?:: .*)?\s*\Z"
_FAILED = re.compile(
    r"Failed (\S{1,40}) for (invalid user )?(.*) from (\S{1,64}) port (\d{1,5})" + _TAIL, re.S
)
_ACCEPTED = re.compile(
    r"Accepted (\S{1,40}) for (.*) from (\S{1,64}) port (\d{1,5})" + _TAIL, re.S
)
_INVALID = re.compile(r"Invalid user (.*) from (\S{1,64})(?: port (\d{1,5}))?\s*\Z", re.S)
_NOT_ALLOWED = re.compile(
    r"User (.*) from (\S{1,64}) not allowed because ([^\n]{1,200}?)\s*\Z", re.S
)
_CLOSED = re.compile(
    r"(?:Connection closed by|Disconnected from) (authenticating|invalid) user "
    r"(.*) (\S{1,64}) port (\d{1,5})\s*\Z", re.S
)
_MAX = re.compile(
    r"maximum authentication attempts exceeded for (invalid user )?(.*) "
    r"from (\S{1,64}) port (\d{1,5})" + _TAIL, re.S
)
_RHOST_USER = r".{0,512}?rhost=(\S{0,64})(?:\s+user=(\S{0,256}))?"
_PAM_UNIX = re.compile(r"pam_unix\(sshd:auth\): authentication failure;" + _RHOST_USER)
_PAM_MORE = re.compile(r"PAM (\d{1,4}) more authentication failures?;" + _RHOST_USER)
_PAM_MACOS = re.compile(
    r"PAM: authentication error for (illegal user )?(.*) from (\S{1,64})(?: via \S{1,64})?\s*\Z",
    re.S,
)
_REPEATED = re.compile(r"message repeated (\d{1,6}) times: \[ ?(.*?)\]?\s*\Z", re.S)

_SSHD_PROGRAMS = ("sshd", "sshd-session", "sshd-auth")


def _strip(msg: str) -> str:
    msg = msg.strip()
    if msg.startswith(("error: ", "fatal: ")):
        msg = msg[7:]
    if msg.endswith(" [preauth]"):
        msg = msg[:-10]
    return msg


_Found = tuple[EventType, str | None, str | None, dict[str, str]]


def _failed(m: re.Match[str]) -> _Found:
    method, invalid, user, src, sport = m.groups()
    fields = {"username": user, "method": method, "stage": "failed"}
    if invalid:
        fields["invalid_user"] = "yes"
    return EventType.AUTH_FAILURE, src, sport, fields


def _accepted(m: re.Match[str]) -> _Found:
    method, user, src, sport = m.groups()
    return EventType.AUTH_SUCCESS, src, sport, {"username": user, "method": method}


def _invalid(m: re.Match[str]) -> _Found:
    user, src, sport = m.groups()
    return EventType.AUTH_INVALID_USER, src, sport, {"username": user}


def _not_allowed(m: re.Match[str]) -> _Found:
    user, src, reason = m.groups()
    return EventType.AUTH_INVALID_USER, src, None, {"username": user, "reason": reason}


def _closed(m: re.Match[str]) -> _Found:
    which, user, src, sport = m.groups()
    fields = {"username": user, "stage": "closed"}
    if which == "invalid":
        fields["invalid_user"] = "yes"
    return EventType.AUTH_FAILURE, src, sport, fields


def _max(m: re.Match[str]) -> _Found:
    invalid, user, src, sport = m.groups()
    fields = {"username": user, "stage": "max-attempts"}
    if invalid:
        fields["invalid_user"] = "yes"
    return EventType.AUTH_FAILURE, src, sport, fields


def _pam_unix(m: re.Match[str]) -> _Found:
    src, user = m.groups()
    return EventType.AUTH_FAILURE, src, None, {
        "username": user or "", "method": "pam", "stage": "pam"
    }


def _pam_more(m: re.Match[str]) -> _Found:
    more, src, user = m.groups()
    return EventType.AUTH_FAILURE, src, None, {
        "username": user or "", "method": "pam", "stage": "pam", "repeat": more
    }


def _pam_macos(m: re.Match[str]) -> _Found:
    illegal, user, src = m.groups()
    fields = {"username": user, "method": "pam", "stage": "pam"}
    if illegal:
        fields["invalid_user"] = "yes"
    return EventType.AUTH_FAILURE, src, None, fields


# (how the message starts, pattern, reader): the prefix test is the cheap filter
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], _Found]], ...] = (
    ("Failed ", _FAILED, _failed),
    ("Accepted ", _ACCEPTED, _accepted),
    ("Invalid user", _INVALID, _invalid),
    ("User ", _NOT_ALLOWED, _not_allowed),
    ("Connection closed", _CLOSED, _closed),
    ("Disconnected from", _CLOSED, _closed),
    ("maximum auth", _MAX, _max),
    ("pam_unix(sshd", _PAM_UNIX, _pam_unix),
    ("PAM ", _PAM_MORE, _pam_more),
    ("PAM: auth", _PAM_MACOS, _pam_macos),
)


def parse_message(
    message: str,
    *,
    time: datetime,
    source: str,
    pid: str | None = None,
) -> Event | None:
    """One sshd message as an event, or None when it is not about authentication."""
    repeat = None
    msg = _strip(message)
    if msg.startswith("message repeated") and (mr := _REPEATED.match(msg)) is not None:
        repeat, msg = mr.group(1), _strip(mr.group(2))
    for prefix, pattern, read in _RULES:
        if msg.startswith(prefix) and (m := pattern.match(msg)) is not None:
            type_, src, sport, found = read(m)
            break
    else:
        return None
    fields: dict[str, str] = {"service": "ssh"}
    if pid:
        fields["pid"] = pid
    if repeat:
        fields["repeat"] = repeat
    fields.update(found)
    return make_event(
        type_,
        time=time,
        source=source,
        src=src or None,
        src_port=port(sport),
        proto="tcp",
        fields=fields,
        text=msg,
    )


def is_sshd(program: str | None) -> bool:
    return program is None or program in _SSHD_PROGRAMS


def parse(
    line: str, *, source: str, year: int | None = None, now: datetime | None = None
) -> Event | None:
    """One auth.log / secure / ``sshd -E`` line, or a login in a postfix or dovecot line
    (:mod:`mamori.watch.logs.mailauth`) or a samba auth audit line
    (:mod:`mamori.watch.logs.smbauth`); lines of other programs give None."""
    now = now or datetime.now(UTC)
    head = split_syslog(line, year=year, now=now)
    if not is_sshd(head.program):
        found = parse_mail_auth(head, line, source=source, now=now)
        if found is None and "Auth: [" in line:
            return parse_smb_auth(line, source=source, now=now)
        return found
    found = parse_message(head.message, time=head.time or now, source=source, pid=head.pid)
    if found is None and "Auth: [" in line:  # samba's own log file (no syslog header)
        return parse_smb_auth(line, source=source, now=now)
    return found
