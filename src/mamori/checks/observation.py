"""What a check primitive receives and returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mamori.model import Proto, Service
from mamori.net.stream import Limits

EXCERPT = 1024  # bytes of request/reply kept as evidence


@dataclass(frozen=True)
class CheckOptions:
    """Settings shared by every check of one run."""

    helo_name: str = "mamori.invalid"  # SMTP HELO and similar self-identification
    user_agent: str = "mamori/0.1 (+exposure check)"
    # Canaries: when set, stepping-stone checks try to fetch/deliver through the target to a
    # sink mamori controls, for the strongest grade of proof.
    smtp_canary_domain: str | None = None
    smtp_canary_inbox: str | None = None  # directory where the sink drops received mail
    proxy_canary_url: str | None = None
    proxy_canary_pattern: str | None = None
    ca_file: str | None = None  # trust this CA for TLS checks
    # TLS checks may download a missing intermediate from the leaf's caIssuers (AIA) URL: a
    # request to a host outside the scan, so only when the user allows it (--fetch-aia).
    fetch_aia: bool = False
    # Zone names the zone-transfer check asks for first (--dns-zone), before the names it
    # learns from the server itself.
    dns_zones: tuple[str, ...] = ()
    # Open-resolver check: a name the target is not authoritative for, and the addresses its
    # true answer has (overrides the check file's default well-known name).
    resolver_check_name: str | None = None
    resolver_check_addresses: tuple[str, ...] = ()
    limits: Limits = field(default_factory=lambda: Limits(read_cap=65536, idle_timeout=3.0,
                                                          deadline=8.0, connect_timeout=3.0))


@dataclass(frozen=True)
class ProbeContext:
    address: str
    port: int
    proto: Proto
    service: Service | None
    hostname: str | None
    options: CheckOptions


@dataclass(frozen=True)
class Observation:
    """What a primitive saw: parsed fields for matchers, and the exchange as evidence."""

    test: str  # the exact test performed, in words
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    request: str | None = None
    reply: str | None = None


def excerpt(data: bytes | str, limit: int = EXCERPT) -> str:
    """A printable, capped excerpt of bytes for evidence."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    cut = data[:limit]
    text = cut.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() or ch in "\r\n\t" else f"\\x{ord(ch):02x}" for ch in text)
    return text + (f"... [{len(data) - limit} more bytes]" if len(data) > limit else "")
