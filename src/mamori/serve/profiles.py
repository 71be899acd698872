"""What a visitor may ask for: three profiles, their ports, and how long they take.

Pure. ``common``: the most common TCP ports; ``services``: the top ports plus every port the
identification table has a probe for, and the UDP service ports; ``custom``: a short list the
visitor types (TCP only, capped). The operator's ``excluded_ports`` are never probed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mamori.ports import PortSpecError, parse_port_list, parse_port_spec, top_ports_tcp
from mamori.serve.settings import ServeSettings

PROFILES = ("common", "services", "custom")
MAX_CUSTOM_TEXT = 200


class ProfileError(ValueError):
    """The visitor's choice cannot be run; the message is for the visitor."""


@dataclass(frozen=True)
class Choice:
    profile: str
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()  # asked for but excluded by the operator


def excluded(settings: ServeSettings) -> tuple[frozenset[int], frozenset[int]]:
    """(TCP, UDP) ports the operator excludes."""
    if not settings.excluded_ports.strip():
        return frozenset(), frozenset()
    spec = parse_port_spec(settings.excluded_ports, default_both=True)
    return frozenset(spec.tcp), frozenset(spec.udp)


def _probe_table_ports() -> tuple[int, ...]:
    from mamori.identify.table import default_table

    return tuple(sorted({p for probe in default_table().tcp() for p in probe.ports}))


def choose(profile: str, custom: str | None, settings: ServeSettings) -> Choice:
    """The ports for ``profile``. Raises ProfileError."""
    ex_tcp, ex_udp = excluded(settings)
    if profile == "common":
        tcp = top_ports_tcp(settings.common_top_ports)
        udp: tuple[int, ...] = ()
    elif profile == "services":
        tcp = tuple(sorted(set(top_ports_tcp(settings.services_top_ports))
                           | set(_probe_table_ports())))
        udp = tuple(sorted(set(settings.services_udp_ports)))
    elif profile == "custom":
        text = (custom or "").strip()
        if not text:
            raise ProfileError("type the ports to check, e.g. 22,80,443")
        if len(text) > MAX_CUSTOM_TEXT:
            raise ProfileError(f"the port list is longer than {MAX_CUSTOM_TEXT} characters")
        try:
            tcp = parse_port_list(text)
        except PortSpecError as exc:
            raise ProfileError(str(exc)) from None
        if len(tcp) > settings.custom_max_ports:
            raise ProfileError(f"at most {settings.custom_max_ports} ports in a custom list "
                               f"({len(tcp)} given)")
        udp = ()
    else:
        raise ProfileError("unknown profile")
    dropped = tuple(p for p in tcp if p in ex_tcp)
    tcp = tuple(p for p in tcp if p not in ex_tcp)
    udp = tuple(p for p in udp if p not in ex_udp)
    if not tcp and not udp:
        raise ProfileError("no port is left to check: this service does not probe "
                           + ", ".join(str(p) for p in dropped))
    return Choice(profile, tcp, udp, dropped)


def estimate_seconds(choice: Choice, settings: ServeSettings) -> tuple[int, int]:
    """(typical, worst) duration in seconds: a sweep at the probe rate with one retry of
    silent ports, then identification and checks of what answers."""
    probes = len(choice.tcp_ports) + len(choice.udp_ports)
    rate = settings.probe_rate or 1000.0
    sweep = probes / rate + 2 * settings.probe_timeout
    typical = math.ceil(sweep + 5)
    worst = math.ceil(2 * sweep + 60)
    return typical, min(worst, math.ceil(settings.check_timeout))
