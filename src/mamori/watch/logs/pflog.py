"""macOS (and BSD) pf packet logs as ``tcpdump -n -e -ttt -r /var/log/pflog`` prints them.

Pure. One line per logged packet::

    00:00:01.204518 rule 0/0(match): block in on en0: 192.0.2.7.51234 > 192.168.1.10.22:
        Flags [S], seq 1, win 1024, length 0   (one line)

``-ttt`` prints the time since the previous packet, not a date, so those events get the
time they are read (``now``); ``-tttt`` (``2024-03-03 10:15:01.204518``) gives local
wall-clock times, which are used. Only inbound packets (``in on``) become events.
Fields: ``action`` (block, pass, ...), ``rule``, ``reason``, ``in`` (interface), ``flags``
(TCP: comma-joined, empty for ``[none]``), ``icmp`` (the ICMP description).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import make_event, port, utc

_LINE = re.compile(
    r"\s*(?:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?)|\d{1,2}:\d\d:\d\d(?:\.\d{1,9})?"
    r"|\d{1,12}(?:\.\d{1,9})?)?\s*"
    r"rule ([^\s(]{0,64})\(([^)]{0,32})\):? (\w{1,16}) (in|out) on ([^\s:]{1,32}): "
    r"(\S{1,80}) > (\S{1,80}?): (.*)\Z",
    re.S,
)
_TCP_LETTERS = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", ".": "ACK", "U": "URG",
                "E": "ECE", "W": "CWR"}
_FLAG_ORDER = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")
_FLAGS = re.compile(r"Flags \[([^\]]{0,16})\]")


def split_address(token: str) -> tuple[str, int | None]:
    """``192.0.2.7.51234`` → (192.0.2.7, 51234); ``2001:db8::7.22`` → (2001:db8::7, 22);
    an address without a port (ICMP) → (address, None)."""
    if ":" in token:  # IPv6: the port, when present, follows the last dot
        addr, dot, tail = token.rpartition(".")
        if dot and tail.isdigit():
            return addr, port(tail)
        return token, None
    parts = token.split(".")
    if len(parts) == 5:
        return ".".join(parts[:4]), port(parts[4])
    return token, None


def tcp_flags(text: str) -> str:
    if text == "none":
        return ""
    names = {_TCP_LETTERS[c] for c in text if c in _TCP_LETTERS}
    return ",".join(f for f in _FLAG_ORDER if f in names)


def parse(
    line: str, *, source: str, year: int | None = None, now: datetime | None = None
) -> Event | None:
    """One tcpdump line of a pflog capture; None for outbound packets and other lines."""
    m = _LINE.match(line)
    if m is None:
        return None
    when, rule, reason, action, direction, ifname, src_tok, dst_tok, body = m.groups()
    if direction != "in":
        return None
    now = now or datetime.now(UTC)
    time = now
    if when:
        try:
            time = utc(datetime.fromisoformat(when))
        except ValueError:
            time = now
    src, sport = split_address(src_tok)
    dst, dport = split_address(dst_tok)
    fields: dict[str, str] = {"action": action, "rule": rule, "reason": reason, "in": ifname}
    proto: str | None
    if (fm := _FLAGS.search(body)) is not None:
        proto = "tcp"
        fields["flags"] = tcp_flags(fm.group(1))
    elif body.startswith("ICMP"):
        proto = "icmp"
        fields["icmp"] = body.split(",", 2)[1].strip() if body.startswith("ICMP6") else (
            body[4:].split(",", 1)[0].strip()
        )
    elif sport is not None or dport is not None:
        proto = "udp"
    else:
        proto = None
    return make_event(
        EventType.FIREWALL_DROP,
        time=time,
        source=source,
        src=src,
        src_port=sport,
        dst=dst,
        dst_port=dport,
        proto=proto,
        fields=fields,
        text=line.strip(),
    )
