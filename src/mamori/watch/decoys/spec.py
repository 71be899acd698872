"""Decoy specifications (``127.0.0.1:2323/tcp=telnet``) and the bounds every decoy obeys."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["PERSONA_NAMES", "UDP_PERSONA", "DecoyLimits", "DecoySpec", "guess_persona"]

TCP_PERSONAS = ("telnet", "ssh", "http", "smb", "redis", "mysql", "rdp", "ftp", "banner")
UDP_PERSONA = "datagram"
PERSONA_NAMES = (*TCP_PERSONAS, UDP_PERSONA)

_BY_PORT = {
    23: "telnet", 2323: "telnet", 22: "ssh", 2222: "ssh", 80: "http", 8080: "http",
    8081: "http", 8000: "http", 445: "smb", 139: "smb", 6379: "redis", 3306: "mysql",
    3389: "rdp", 21: "ftp", 2121: "ftp",
}
_SPEC = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d{1,5})"
    r"(?:/(?P<proto>tcp|udp))?(?:=(?P<persona>[a-z]+)(?::(?P<banner>.*))?)?$"
)


def guess_persona(port: int, proto: str) -> str:
    """The persona a port suggests: telnet on 23/2323, ssh on 22/2222, ... else banner;
    every UDP decoy is the generic datagram recorder."""
    if proto == "udp":
        return UDP_PERSONA
    return _BY_PORT.get(port, "banner")


@dataclass(frozen=True, slots=True)
class DecoySpec:
    """Where a decoy listens and what it pretends to be.

    ``::`` listens on IPv6 only (add ``0.0.0.0`` for IPv4); port 0 takes any free port (the
    server's ``port`` says which).
    ``banner`` is the line the ``banner`` persona sends; ``udp_reply`` what a UDP decoy answers
    (empty by default: no reply; never more bytes than the datagram that came in).
    """

    host: str
    port: int
    proto: str = "tcp"
    persona: str = ""
    banner: str = ""
    udp_reply: bytes = b""

    def __post_init__(self) -> None:
        if self.proto not in ("tcp", "udp"):
            raise ValueError(f"decoy protocol must be tcp or udp, not {self.proto!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"decoy port out of range: {self.port}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"decoy address must be an IP address: {self.host!r}") from None
        if not self.persona:
            object.__setattr__(self, "persona", guess_persona(self.port, self.proto))
        if self.proto == "udp" and self.persona != UDP_PERSONA:
            raise ValueError(f"UDP decoys only record datagrams; {self.persona!r} is TCP-only")
        if self.proto == "tcp" and self.persona not in TCP_PERSONAS:
            raise ValueError(f"unknown decoy persona {self.persona!r} "
                             f"(one of: {', '.join(TCP_PERSONAS)})")
        if len(self.banner) > 512 or any(ch in self.banner for ch in "\r\n"):
            raise ValueError("decoy banner must be one line of at most 512 characters")

    @classmethod
    def parse(cls, text: str) -> DecoySpec:
        """``ADDR:PORT[/tcp|/udp][=persona[:banner text]]``; IPv6 as ``[::1]:2323``.
        Raises ValueError with a one-line message for anything else."""
        match = _SPEC.match(text.strip())
        if match is None:
            raise ValueError(f"bad decoy {text!r}: expected ADDR:PORT[/tcp|/udp][=persona], "
                             "e.g. 127.0.0.1:2323/tcp=telnet")
        host = match.group("v6") or match.group("v4")
        persona = match.group("persona") or ""
        banner = match.group("banner") or ""
        if banner and persona != "banner":
            raise ValueError(f"bad decoy {text!r}: only the banner persona takes a text")
        try:
            return cls(host, int(match.group("port")), match.group("proto") or "tcp",
                       persona, banner)
        except ValueError as exc:
            raise ValueError(f"bad decoy {text!r}: {exc}") from None

    @property
    def label(self) -> str:
        """The event ``source``: ``decoy:tcp/127.0.0.1:2323``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"decoy:{self.proto}/{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DecoyLimits:
    """Bounds on what a visitor can make a decoy hold or write.

    Per connection: ``read_cap`` bytes, ``idle_timeout`` seconds without a byte,
    ``total_timeout`` seconds in all, ``max_commands`` lines/commands in the fake sessions.
    Globally: ``max_connections`` open at once; per source address ``per_source_connections``
    at once (excess connections are accepted and closed at once, counted as dropped) and an
    event rate of ``events_per_second`` with bursts of ``event_burst`` (events beyond it are
    counted and reported as ``sensor.limit`` every ``limit_report_interval`` seconds).
    ``max_sources`` caps the per-source bookkeeping itself.
    """

    read_cap: int = 16384
    idle_timeout: float = 15.0
    total_timeout: float = 60.0
    max_commands: int = 8
    max_connections: int = 1024
    per_source_connections: int = 16
    events_per_second: float = 20.0
    event_burst: int = 100
    limit_report_interval: float = 10.0
    max_sources: int = 4096
    max_limit_reports: int = 32  # sources named one by one in one report; the rest aggregated
    backlog: int = 4096

    def __post_init__(self) -> None:
        for name in ("read_cap", "max_commands", "max_connections", "per_source_connections",
                     "event_burst", "max_sources", "max_limit_reports", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"decoy limit {name} must be at least 1")
        for name in ("idle_timeout", "total_timeout", "events_per_second",
                     "limit_report_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"decoy limit {name} must be positive")
