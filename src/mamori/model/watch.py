"""The one event record every watch source produces, and the incident that groups them.

Everything here is plain data: sources build events, detectors return new events with
``danger``/``signatures`` filled in, the incident grouper folds events into incidents, sinks
serialise them (``event_to_dict`` is the single JSON-lines schema, ``EVENT_SCHEMA``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from mamori.model.base import Severity as Danger

__all__ = [
    "EVENT_SCHEMA",
    "EXCERPT_LIMIT",
    "Danger",
    "Event",
    "EventType",
    "Incident",
    "event_to_dict",
    "excerpt",
]

EVENT_SCHEMA = "mamori.event/1"
EXCERPT_LIMIT = 512  # characters of what a visitor sent that an event keeps


class EventType(StrEnum):
    """Stable type codes (never renamed; new ones may be added)."""

    # decoys
    DECOY_CONNECT = "decoy.connect"  # a TCP connection to a decoy (nothing sent yet)
    DECOY_DATA = "decoy.data"  # the first request / bytes a visitor sent
    DECOY_LOGIN = "decoy.login"  # credentials tried (fields: username, password)
    DECOY_COMMAND = "decoy.command"  # a command typed after a fake login
    DECOY_UDP = "decoy.udp"  # a datagram to a UDP decoy
    # ICMP
    ICMP_ECHO = "icmp.echo"
    ICMP_OTHER = "icmp.other"  # fields: icmp_type, icmp_code
    # raw TCP: half-open knocks on the decoys (SYN/NULL/FIN/XMAS scans never reach accept())
    TCP_PROBE = "tcp.probe"  # fields: flags (SYN/NULL/FIN/XMAS/...), technique, tcp_flags
    # raw TCP/UDP: a knock on a port nobody listens on (no decoy needed)
    PORT_KNOCK = "port.knock"  # fields: technique, certainty, fingerprint?, flags?, port_state
    # logs
    AUTH_FAILURE = "auth.failure"  # sshd failed password / publickey / PAM failure
    AUTH_INVALID_USER = "auth.invalid_user"
    AUTH_SUCCESS = "auth.success"
    HTTP_REQUEST = "http.request"  # fields: method, path, status, user_agent, vhost?
    FIREWALL_DROP = "firewall.drop"  # fields: flags (SYN, FIN, ...), action, prefix
    # derived by detectors (one per detection, src = the offender)
    SCAN_PORTS = "scan.ports"  # fields: ports, technique (connect/syn/null/fin/xmas/udp)
    SCAN_PING_SWEEP = "scan.ping_sweep"
    BRUTE_FORCE = "bruteforce"  # fields: service, failures, usernames
    # the sensor's own state
    SENSOR_ERROR = "sensor.error"  # a source could not run (fields: reason)
    SENSOR_LIMIT = "sensor.limit"  # a per-source or global bound was hit (counts dropped)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing seen. ``time`` is timezone-aware UTC. ``src`` is the visitor's address.

    ``source`` names where it was seen: ``decoy:tcp/127.0.0.1:2323``, ``icmp``,
    ``log:/var/log/nginx/access.log``, ``journald:sshd``, ``detector:portscan``.
    ``fields`` holds type-specific strings (username, password, method, path, user_agent,
    status, command, flags, icmp_type, ...). ``excerpt`` is a bounded printable copy of what
    was sent. ``signatures`` are the ids of the signatures that matched (see
    ``mamori/watch/signatures/*.yaml``); ``danger`` is the highest danger they carry.
    """

    time: datetime
    type: EventType
    source: str
    src: str | None = None
    src_port: int | None = None
    dst: str | None = None
    dst_port: int | None = None
    proto: str | None = None  # "tcp", "udp", "icmp"
    danger: Danger = Danger.INFO
    signatures: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    excerpt: str = ""


@dataclass(frozen=True, slots=True)
class Incident:
    """Events from one source address grouped in a time window.

    ``kind`` is the headline (e.g. ``scan.ports``, ``worm.codered``, ``exploit.log4shell``,
    ``bruteforce``, ``probe.env``); ``types`` all event types seen; ``examples`` a few
    excerpts/descriptions of what was seen (bounded).
    """

    src: str
    kind: str
    danger: Danger
    first_seen: datetime
    last_seen: datetime
    count: int
    types: tuple[str, ...] = ()
    signatures: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    id: int | None = None


def excerpt(data: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A printable, bounded copy of what a visitor sent: control bytes escaped as ``\\xNN``."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    out: list[str] = []
    size = 0
    for ch in text:
        piece = ch if (ch.isprintable() or ch == " ") else (
            "\\n" if ch == "\n" else "\\r" if ch == "\r" else f"\\x{ord(ch) & 0xFF:02x}"
        )
        if size + len(piece) > limit:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def event_to_dict(event: Event, *, event_id: int | None = None) -> dict[str, Any]:
    """The one JSON shape of an event (JSON-lines sink, ``mamori events --format json``)."""
    data: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "type": str(event.type),
        "time": event.time.isoformat(),
        "source": event.source,
        "src": event.src,
        "src_port": event.src_port,
        "dst": event.dst,
        "dst_port": event.dst_port,
        "proto": event.proto,
        "danger": str(event.danger),
        "signatures": list(event.signatures),
        "fields": dict(event.fields),
        "excerpt": event.excerpt,
    }
    if event_id is not None:
        data["id"] = event_id
    return data
