"""This host's IPv6 addresses that the internet (global unicast) or a site (ULA) can reach.

``parse_if_inet6`` is pure (Linux ``/proc/net/if_inet6``: one line per address, hex address,
ifindex, prefix length, scope, flags, interface); ``host_ipv6_addresses`` is the one read,
from that file on Linux and from psutil's interface table elsewhere. Link-local, loopback,
tentative and failed-DAD addresses are left out: nothing outside the link reaches them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from mamori.audit.path import HostAddresses

IF_INET6 = Path("/proc/net/if_inet6")
_MAX_LINES = 4096
_TENTATIVE = 0x40
_DADFAILED = 0x08
_ULA = ipaddress.IPv6Network("fc00::/7")
_GLOBAL = ipaddress.IPv6Network("2000::/3")


def address_kind(address: str) -> str | None:
    """"global" (2000::/3), "ula" (fc00::/7), or None for any other IPv6 address."""
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return None
    if ip in _ULA:
        return "ula"
    if ip in _GLOBAL and ip.ipv4_mapped is None:
        return "global"
    return None


def parse_if_inet6(text: str) -> tuple[tuple[str, str], ...]:
    """(address, kind) of each usable global/ULA address in ``text``, in order, once each.

    Malformed lines are skipped; at most 4096 lines are read."""
    found: dict[str, str] = {}
    for line in text.splitlines()[:_MAX_LINES]:
        fields = line.split()
        if len(fields) < 5 or len(fields[0]) != 32:
            continue
        try:
            ip = ipaddress.IPv6Address(int(fields[0], 16))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if flags & (_TENTATIVE | _DADFAILED):
            continue
        kind = address_kind(str(ip))
        if kind is not None:
            found.setdefault(str(ip), kind)
    return tuple(found.items())


def kinds_of(addresses: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(address, kind) of the global/ULA addresses among ``addresses``, once each."""
    found: dict[str, str] = {}
    for a in addresses:
        kind = address_kind(a)
        if kind is not None:
            found.setdefault(str(ipaddress.IPv6Address(a.split("%", 1)[0])), kind)
    return tuple(found.items())


def host_ipv6_addresses() -> tuple[tuple[str, str], ...]:
    """This host's global and ULA IPv6 addresses; () when none or unreadable."""
    try:
        return parse_if_inet6(IF_INET6.read_text(encoding="ascii", errors="replace"))
    except OSError:
        pass
    import socket

    import psutil

    try:
        table = psutil.net_if_addrs()
    except (OSError, RuntimeError):
        return ()
    return kinds_of(a.address for addrs in table.values() for a in addrs
                    if a.family == socket.AF_INET6)


def host_addresses() -> HostAddresses:
    """This host's IPv4 addresses (every interface's, for matching router mappings) and its
    global/ULA IPv6 addresses."""
    import socket

    import psutil

    try:
        table = psutil.net_if_addrs()
    except (OSError, RuntimeError):
        table = {}
    v4 = tuple(dict.fromkeys(a.address for addrs in table.values() for a in addrs
                             if a.family == socket.AF_INET))
    return HostAddresses(ipv4=v4, ipv6=host_ipv6_addresses())
