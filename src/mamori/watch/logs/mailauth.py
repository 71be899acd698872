"""Failed logins of mail servers in their own log lines: postfix SASL and dovecot. Pure.

postfix (``maillog_file`` or syslog; program ``postfix/smtpd``, ``postfix/submission/smtpd``…)::

    warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: authentication failure,
    sasl_username=mallory

dovecot (``log_path`` lines ``Dec 08 03:20:13 imap-login: Info: …`` or through syslog as
``dovecot: imap-login: …``)::

    imap-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs):
    user=<mallory>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, session=<…>

(also ``Aborted login (auth failed, …)`` and ``Login aborted: … (auth failed …)``).
Each becomes an ``auth.failure`` event with ``service`` (smtp, imap, pop3, …), ``username``,
``method`` and ``stage=failed`` (dovecot adds ``attempts``), so the brute-force detector counts
them per source and service like sshd's.
"""

from __future__ import annotations

import re
from datetime import datetime

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import SyslogLine, make_event, port

__all__ = ["parse_mail_auth"]

_POSTFIX = re.compile(
    r"warning: ([^\s\[\]]{0,255})\[([^\]\s]{1,64})\](?::(\d{1,5}))?: SASL (\S{1,40}) "
    r"authentication failed: ([^,\n]{0,200})(?:, sasl_username=(.{0,256}?))?\s*\Z", re.S)
_DOVECOT = re.compile(
    r"\b(imap|pop3|submission|managesieve|lmtp)-login: (?:\w+: )?(.{0,200}?)"
    r"\(auth failed, (\d{1,6}) attempts? in \d{1,9} secs?\): user=<(.{0,256}?)>"
    r"(?:, method=([A-Za-z0-9_-]{1,40}))?, rip=([0-9A-Fa-f.:]{1,64})"
    r"(?:, lip=([0-9A-Fa-f.:]{1,64}))?(?:, rport=(\d{1,5}))?", re.S)
_SMTP_PROGRAM = re.compile(r"postfix(?:/[\w.-]{1,64})*/smtpd\Z")


def parse_mail_auth(head: SyslogLine, line: str, *, source: str, now: datetime
                    ) -> Event | None:
    """One postfix or dovecot line (its syslog header in ``head``) as an ``auth.failure``
    event, or None."""
    if head.program is not None and _SMTP_PROGRAM.match(head.program):
        m = _POSTFIX.match(head.message)
        if m is None:
            return None
        _name, src, sport, method, why, user = m.groups()
        fields = {"service": "smtp", "username": user or "", "method": method,
                  "stage": "failed", "reason": why.strip(), "program": head.program}
        if head.pid:
            fields["pid"] = head.pid
        return make_event(EventType.AUTH_FAILURE, time=head.time or now, source=source,
                          src=src, src_port=port(sport), proto="tcp", fields=fields,
                          text=head.message.strip())
    if "auth failed" not in line:
        return None
    d = _DOVECOT.search(line)
    if d is None:
        return None
    service, _what, attempts, user, method, src, lip, rport = d.groups()
    fields = {"service": service, "username": user, "stage": "failed", "attempts": attempts,
              "program": "dovecot"}
    if method:
        fields["method"] = method
    return make_event(EventType.AUTH_FAILURE, time=head.time or now, source=source, src=src,
                      src_port=port(rport), dst=lip or None, proto="tcp", fields=fields,
                      text=line[d.start():].strip())
