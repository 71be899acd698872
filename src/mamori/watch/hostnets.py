"""The networks ``mamori watch --block`` must never block because they are the admin's own:
the networks of the host's interfaces (not loopback: that has its own rule) and the default
gateways. Read from ``ip -j addr show`` and ``ip -j route show default`` (IPv4 and IPv6)
through a :class:`~mamori.audit.runner.CommandRunner`; the parsers are pure."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from mamori.audit.runner import CommandRunner

__all__ = ["HostNetworks", "parse_addresses", "parse_default_gateways", "read_host_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ITEMS = 4096  # interfaces/addresses/routes read (a backstop)


@dataclass(frozen=True)
class HostNetworks:
    networks: tuple[tuple[Network, str], ...] = ()  # (network, interface name)
    gateways: tuple[Address, ...] = ()

    def protects(self, ip: Address) -> str | None:
        """Why ``ip`` is the admin's own (a host network or a default gateway), or None."""
        for gw in self.gateways:
            if gw == ip:
                return f"the default gateway ({gw})"
        for net, dev in self.networks:
            if ip.version == net.version and ip in net:
                return f"in the host's own network ({net} on {dev})"
        return None


def _items(text: str) -> list[dict[str, object]]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    return [item for item in data[:MAX_ITEMS] if isinstance(item, dict)]


def parse_addresses(text: str) -> list[tuple[Network, str]]:
    """The networks of ``ip -j addr show`` (loopback interfaces left out)."""
    out: list[tuple[Network, str]] = []
    for link in _items(text):
        flags = link.get("flags")
        name = str(link.get("ifname", "?"))
        if isinstance(flags, list) and "LOOPBACK" in flags:
            continue
        infos = link.get("addr_info")
        for info in infos[:MAX_ITEMS] if isinstance(infos, list) else ():
            if not isinstance(info, dict):
                continue
            local, prefix = info.get("local"), info.get("prefixlen")
            if not isinstance(local, str) or not isinstance(prefix, int):
                continue
            try:
                net = ipaddress.ip_network(f"{local.split('%', 1)[0]}/{prefix}", strict=False)
            except ValueError:
                continue
            out.append((net, name))
    return out


def parse_default_gateways(text: str) -> list[Address]:
    """The gateways of ``ip -j route show default`` (routes without one are skipped)."""
    out: list[Address] = []
    for route in _items(text):
        gw = route.get("gateway")
        if isinstance(gw, str):
            try:
                out.append(ipaddress.ip_address(gw.split("%", 1)[0]))
            except ValueError:
                continue
    return out


def read_host_networks(runner: CommandRunner, ip: str = "ip") -> HostNetworks | str:
    """The host's networks and default gateways, or why they could not be read."""
    addrs = runner.run([ip, "-j", "addr", "show"])
    if not addrs.ok:
        return f"{ip} -j addr show: {(addrs.stderr or addrs.stdout).strip()[:200]}"
    gateways: list[Address] = []
    for family in ("-4", "-6"):
        routes = runner.run([ip, family, "-j", "route", "show", "default"])
        if not routes.ok:
            return f"{ip} {family} route show default: {(routes.stderr or '').strip()[:200]}"
        gateways += parse_default_gateways(routes.stdout)
    return HostNetworks(tuple(parse_addresses(addrs.stdout)), tuple(gateways))
