"""nftables / iptables / ufw log lines from the kernel log (kern.log, dmesg, journald).

Pure. The kernel writes one line per logged packet::

    [12345.678901] nft-drop: IN=eth0 OUT= MAC=... SRC=192.0.2.7 DST=198.51.100.2 LEN=44
    TOS=0x00 PREC=0x00 TTL=243 ID=54321 PROTO=TCP SPT=51234 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0

The text before ``IN=`` is the rule's log prefix (``fields.prefix``); the bare words after the
ports are the TCP flags (``fields.flags``, comma-joined, empty for a NULL packet). Packets
with an empty ``IN=`` were sent by this host (OUTPUT chain) and are skipped: they are not
knocks. ``fields.action`` is read from the prefix (drop/reject/accept, else ``log``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mamori.model.watch import Event, EventType
from mamori.watch.logs.common import make_event, port, split_syslog

TCP_FLAGS = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")
_FLAG_SET = frozenset(TCP_FLAGS)
# the kernel's own time stamp: "[12345.678901]" (dmesg) or "[Sun Mar  3 10:15:01 2024]" (-T)
_KTIME = re.compile(
    r"\s*\[(?:\s*\d{1,10}\.\d{1,9}|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s*"
)
_DROP = re.compile(r"drop|block|deny|denied", re.I)
_REJECT = re.compile(r"reject", re.I)
_ACCEPT = re.compile(r"accept|allow|pass", re.I)


def _action(prefix: str) -> str:
    if _REJECT.search(prefix):
        return "reject"
    if _DROP.search(prefix):
        return "drop"
    if _ACCEPT.search(prefix):
        return "accept"
    return "log"


def parse_message(message: str, *, time: datetime, source: str) -> Event | None:
    """One kernel message (after any syslog header); None when it is not a packet log."""
    start = message.find("IN=")
    if start < 0 or "SRC=" not in message:
        return None
    if start > 0 and message[start - 1] not in " ]:":
        return None
    head = message[:start]
    if (kt := _KTIME.match(head)) is not None:
        head = head[kt.end():]
    prefix = head.strip()
    values: dict[str, str] = {}
    flags: list[str] = []
    for token in message[start:].split():
        key, eq, value = token.partition("=")
        if eq:
            values.setdefault(key, value)
        elif token in _FLAG_SET:
            flags.append(token)
    if not values.get("IN"):
        return None
    src = values.get("SRC")
    if not src:
        return None
    proto = values.get("PROTO", "").lower() or None
    if proto == "icmpv6":
        proto = "icmp"
    fields: dict[str, str] = {"prefix": prefix, "action": _action(prefix), "in": values["IN"]}
    if proto == "tcp":
        fields["flags"] = ",".join(f for f in TCP_FLAGS if f in flags)
    if proto == "icmp":
        fields["icmp_type"] = values.get("TYPE", "")
        fields["icmp_code"] = values.get("CODE", "")
    for key, name in (("LEN", "length"), ("TTL", "ttl"), ("HOPLIMIT", "ttl"), ("MAC", "mac")):
        if values.get(key) and name not in fields:
            fields[name] = values[key]
    return make_event(
        EventType.FIREWALL_DROP,
        time=time,
        source=source,
        src=src,
        src_port=port(values.get("SPT")),
        dst=values.get("DST") or None,
        dst_port=port(values.get("DPT")),
        proto=proto,
        fields=fields,
        text=message[start:] if not prefix else f"{prefix} {message[start:]}",
    )


def parse(
    line: str, *, source: str, year: int | None = None, now: datetime | None = None
) -> Event | None:
    """One kern.log / syslog / dmesg line with a packet log; None for anything else."""
    if "IN=" not in line:
        return None
    now = now or datetime.now(UTC)
    head = split_syslog(line, year=year, now=now)
    if head.program not in (None, "kernel"):
        return None
    return parse_message(head.message, time=head.time or now, source=source)
