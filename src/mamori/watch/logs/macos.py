"""macOS unified-log sshd lines, as ``log show --style syslog --predicate 'process == "sshd"'``
prints them (also ``log stream --style syslog``).

Pure. A line looks like::

    2024-03-03 10:15:01.123456+0900  localhost sshd[1234]: Failed password for root
        from 192.0.2.7 port 51234 ssh2   (one line)

The header (local time with offset, host, ``sshd[pid]``) is split off, an optional
``(library)`` tag before the message is dropped, and the message goes through the same
OpenSSH parser as Linux auth logs (macOS adds ``error: PAM: authentication error for ...``).
The banner lines ``log show`` prints first ("Filtering the log data ...", "Timestamp ...")
give None.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mamori.model.watch import Event
from mamori.watch.logs import auth
from mamori.watch.logs.common import split_syslog

_LIBRARY_TAG = re.compile(r"\([\w.+-]{1,64}\) ")


def parse(
    line: str, *, source: str, year: int | None = None, now: datetime | None = None
) -> Event | None:
    now = now or datetime.now(UTC)
    head = split_syslog(line, year=year, now=now)
    if head.time is None or head.program is None or not auth.is_sshd(head.program):
        return None
    message = head.message
    if message.startswith("(") and (m := _LIBRARY_TAG.match(message)) is not None:
        message = message[m.end():]
    return auth.parse_message(message, time=head.time, source=source, pid=head.pid)
