"""Who may be checked: the peer address, normalised, judged by the operator's scope policy.

Pure. Spellings are normalised first (brackets, zone ids, IPv4-mapped and IPv4-compatible
IPv6), then the address gets one category from the tables below (data, first match wins);
6to4 and NAT64 addresses are also judged by the IPv4 address they embed, so that
``2002:7f00:1::`` is not a way to reach 127.0.0.1.

Never allowed, whatever the settings: cloud-metadata addresses, unspecified, multicast and
reserved space (none of them is a visitor's own line). Refused unless the operator allows
them: loopback, private (RFC 1918, ULA), link-local, CGNAT (100.64.0.0/10). ``deny_networks``
always refuse; ``allow_networks`` allow what the categories would refuse (except the
never-allowed ones).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance-metadata endpoints (AWS, GCP, Azure IMDS; AWS IPv6; Azure wireserver;
# Alibaba). A probe there from a cloud-hosted service would read the host's own secrets.
DEFAULT_METADATA = (
    "169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200",
)

LOOPBACK, PRIVATE, LINK_LOCAL, CGNAT = "loopback", "private", "link-local", "cgnat"
METADATA, UNSPECIFIED, MULTICAST, RESERVED, GLOBAL = (
    "metadata", "unspecified", "multicast", "reserved", "global",
)
NEVER_ALLOWED = frozenset({METADATA, UNSPECIFIED, MULTICAST, RESERVED})

# (network, category), first match wins; anything unmatched is global.
_TABLE: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", UNSPECIFIED),
    ("::/128", UNSPECIFIED),
    ("127.0.0.0/8", LOOPBACK),
    ("::1/128", LOOPBACK),
    ("224.0.0.0/4", MULTICAST),
    ("ff00::/8", MULTICAST),
    ("169.254.0.0/16", LINK_LOCAL),
    ("fe80::/10", LINK_LOCAL),
    ("100.64.0.0/10", CGNAT),
    ("10.0.0.0/8", PRIVATE),
    ("172.16.0.0/12", PRIVATE),
    ("192.168.0.0/16", PRIVATE),
    ("fc00::/7", PRIVATE),
    ("0.0.0.0/8", RESERVED),  # "this network"
    ("192.0.0.0/24", RESERVED),  # IETF protocol assignments
    ("192.0.2.0/24", RESERVED),  # documentation
    ("198.51.100.0/24", RESERVED),
    ("203.0.113.0/24", RESERVED),
    ("198.18.0.0/15", RESERVED),  # benchmarking
    ("192.88.99.0/24", RESERVED),  # 6to4 relay anycast (deprecated)
    ("240.0.0.0/4", RESERVED),  # future use, and 255.255.255.255
    ("::/96", RESERVED),  # IPv4-compatible (deprecated); ::1 and :: matched above
    ("64:ff9b::/96", GLOBAL),  # well-known NAT64: judged by the IPv4 address it embeds
    ("64:ff9b:1::/48", RESERVED),  # local-use NAT64
    ("100::/64", RESERVED),  # discard-only
    ("2001::/32", RESERVED),  # Teredo: the client's IPv4 address is obscured
    ("2001:db8::/32", RESERVED),  # documentation
    ("2001:2::/48", RESERVED),  # benchmarking
    ("3fff::/20", RESERVED),  # documentation (RFC 9637)
    ("fec0::/10", RESERVED),  # site-local (deprecated)
    ("5f00::/16", RESERVED),  # SRv6 SIDs
)
_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), cat) for net, cat in _TABLE
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressError(ValueError):
    """Not an IP address in any accepted spelling."""


def normalise(text: str) -> IPAddress:
    """Parse a peer address as sockets and proxies spell it: ``[v6]``, ``v6%zone``,
    ``::ffff:a.b.c.d`` (returned as IPv4). Raises AddressError."""
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    raw = raw.split("%", 1)[0]  # a zone id names our interface, not the peer
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise AddressError(f"not an IP address: {text[:80]!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def category(ip: IPAddress) -> str:
    """The address's category (loopback, private, ..., global) from the table."""
    for net, cat in _NETWORKS:
        if ip.version == net.version and ip in net:
            return cat
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return RESERVED  # unassigned IPv6 space
    return GLOBAL


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 (64:ff9b::/96) address leads to, else None."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def parse_networks(items: Sequence[str]) -> tuple[IPNetwork, ...]:
    """CIDR blocks or single addresses. Raises AddressError naming the bad item."""
    out: list[IPNetwork] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise AddressError(f"not an address or CIDR block: {item!r}") from None
    return tuple(out)


def in_any(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass(frozen=True)
class ScopePolicy:
    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False
    allow_cgnat: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()
    metadata: tuple[IPAddress, ...] = tuple(ipaddress.ip_address(a) for a in DEFAULT_METADATA)

    def allows_category(self, cat: str) -> bool:
        return {
            LOOPBACK: self.allow_loopback, PRIVATE: self.allow_private,
            LINK_LOCAL: self.allow_link_local, CGNAT: self.allow_cgnat, GLOBAL: True,
        }.get(cat, False)


@dataclass(frozen=True)
class Verdict:
    address: str  # the normalised address: what would be probed
    category: str
    allowed: bool
    reason: str  # one sentence for the visitor (and the refusal log)


_WHY = {
    METADATA: "it is a cloud instance-metadata address",
    UNSPECIFIED: "it is the unspecified address",
    MULTICAST: "it is a multicast address",
    RESERVED: "it is reserved, documentation or tunnel address space",
    LOOPBACK: "it is a loopback address (this service's own host)",
    PRIVATE: "it is a private (internal) address",
    LINK_LOCAL: "it is a link-local address",
    CGNAT: "it is a carrier-grade NAT address (100.64.0.0/10) shared by many customers",
}


def _judge_one(ip: IPAddress, policy: ScopePolicy) -> tuple[str, bool, str]:
    cat = METADATA if ip in policy.metadata else category(ip)
    if cat in NEVER_ALLOWED:
        return cat, False, _WHY[cat]
    if in_any(ip, policy.deny_networks):
        return cat, False, "the operator of this service does not check this network"
    if in_any(ip, policy.allow_networks) or policy.allows_category(cat):
        return cat, True, "allowed"
    return cat, False, _WHY[cat]


def judge(ip: IPAddress, policy: ScopePolicy) -> Verdict:
    """Whether ``ip`` (already normalised) may be probed, and why not."""
    cat, ok, why = _judge_one(ip, policy)
    inner = embedded_ipv4(ip)
    if ok and inner is not None:
        inner_cat, inner_ok, inner_why = _judge_one(inner, policy)
        if not inner_ok:
            return Verdict(str(ip), inner_cat, False,
                           f"it leads to {inner} through a 6to4 or NAT64 prefix, and {inner_why}")
    return Verdict(str(ip), cat, ok, "allowed" if ok else f"{ip} cannot be checked: {why}")


def judge_text(text: str, policy: ScopePolicy) -> Verdict:
    """Normalise then judge; an unparseable address is refused (category "invalid")."""
    try:
        ip = normalise(text)
    except AddressError:
        return Verdict(text[:64], "invalid", False, "the address could not be understood")
    return judge(ip, policy)


def rate_keys(address: str) -> tuple[str, str | None]:
    """(per-address key, per-/64 key for IPv6 or None) for rate limits."""
    ip = normalise(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip), str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip), None
