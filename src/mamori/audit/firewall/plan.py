"""The firewall plan: what `mamori firewall plan` proposes, independent of any backend.

A plan is data: the ports the owner serves (``--allow``) and a fixed list of rule kinds that
every host on an always-on line needs (default deny inbound, replies to its own connections,
loopback, the ICMP messages that keep IPv4 and IPv6 working). Each backend module
(``plan_nft``, ``plan_ufw``, ``plan_pf``) turns the same plan into its own ruleset text, one
rendered rule per plan rule, each with the sentence that explains it; ``rulesets`` picks the
backend.

Nothing here touches the system; applying an nftables plan lives in ``plan_nft.apply_nftables``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum

from mamori.model import Proto


class AllowSpecError(ValueError):
    """An ``--allow`` item that is neither a known service nor PORT/PROTO (one-line message)."""


class Backend(StrEnum):
    NFTABLES = "nftables"
    UFW = "ufw"
    PF = "pf"


@dataclass(frozen=True, order=True)
class AllowedPort:
    """One inbound port (or inclusive range ``port``-``last``) to accept, with its label."""

    proto: Proto
    port: int
    last: int  # == port for a single port
    label: str  # the service name the owner gave ("ssh"), or the spec itself ("8080/tcp")

    @property
    def is_range(self) -> bool:
        return self.last != self.port

    def ports_text(self, range_sep: str = "-") -> str:
        """``"22"`` or ``"6000-6010"`` (``range_sep`` is ``":"`` for ufw and pf)."""
        return f"{self.port}{range_sep}{self.last}" if self.is_range else str(self.port)

    def describe(self) -> str:
        """``"ssh (22/tcp)"`` or ``"8080/tcp"``."""
        spec = f"{self.ports_text()}/{self.proto}"
        return spec if self.label == spec else f"{self.label} ({spec})"


# Service name → (port, proto) pairs. Knowledge as data: a test checks the table's own rules.
SERVICES: dict[str, tuple[tuple[int, Proto], ...]] = {
    "ssh": ((22, Proto.TCP),),
    "http": ((80, Proto.TCP),),
    "https": ((443, Proto.TCP),),
    "http3": ((443, Proto.UDP),),
    "smtp": ((25, Proto.TCP),),
    "submission": ((587, Proto.TCP),),
    "submissions": ((465, Proto.TCP),),
    "imap": ((143, Proto.TCP),),
    "imaps": ((993, Proto.TCP),),
    "pop3s": ((995, Proto.TCP),),
    "dns": ((53, Proto.UDP), (53, Proto.TCP)),
    "ntp": ((123, Proto.UDP),),
    "smb": ((445, Proto.TCP),),
    "nfs": ((2049, Proto.TCP),),
    "vnc": ((5900, Proto.TCP),),
    "rdp": ((3389, Proto.TCP),),
    "mqtt": ((1883, Proto.TCP),),
    "mqtts": ((8883, Proto.TCP),),
    "wireguard": ((51820, Proto.UDP),),
    "openvpn": ((1194, Proto.UDP),),
    "mosh": ((60000, Proto.UDP),),  # first port of mosh's range; widen with 60000-61000/udp
    "minecraft": ((25565, Proto.TCP),),
    "plex": ((32400, Proto.TCP),),
}
ALIASES: dict[str, str] = {"domain": "dns", "www": "http", "smtps": "submissions"}


def _parse_port(text: str, item: str) -> int:
    if not text.isdigit():
        raise AllowSpecError(f"--allow {item!r}: {text!r} is not a port number")
    port = int(text)
    if not 0 < port < 65536:
        raise AllowSpecError(f"--allow {item!r}: port {port} is outside 1-65535")
    return port


def _parse_item(item: str) -> list[AllowedPort]:
    name = item.lower()
    name = ALIASES.get(name, name)
    if name in SERVICES:
        return [AllowedPort(proto, port, port, name) for port, proto in SERVICES[name]]
    if "/" not in item:
        if item.replace("-", "").isdigit():
            raise AllowSpecError(f"--allow {item!r}: say which protocol, e.g. {item}/tcp")
        known = ", ".join(sorted(SERVICES))
        raise AllowSpecError(
            f"--allow {item!r}: unknown service (known: {known}; or PORT/PROTO such as 8080/tcp)"
        )
    ports, _, proto_text = item.partition("/")
    try:
        proto = Proto(proto_text.lower())
    except ValueError:
        raise AllowSpecError(f"--allow {item!r}: protocol must be tcp or udp") from None
    first_text, dash, last_text = ports.partition("-")
    first = _parse_port(first_text, item)
    last = _parse_port(last_text, item) if dash else first
    if last < first:
        raise AllowSpecError(f"--allow {item!r}: range {first}-{last} runs backwards")
    spec = f"{first}-{last}/{proto}" if last != first else f"{first}/{proto}"
    return [AllowedPort(proto, first, last, spec)]


def parse_allow(spec: str) -> tuple[AllowedPort, ...]:
    """Parse ``--allow`` (``"ssh,https,8080/tcp,6000-6010/udp"``) into sorted, de-duplicated
    ports. An empty spec allows nothing.

    Raises ``AllowSpecError`` naming the first bad item.
    """
    seen: dict[tuple[Proto, int, int], AllowedPort] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            if spec.strip():
                raise AllowSpecError(f"--allow {spec!r}: empty item between commas")
            continue
        for allowed in _parse_item(item):
            seen.setdefault((allowed.proto, allowed.port, allowed.last), allowed)
    return tuple(sorted(seen.values(), key=lambda a: (a.port, a.last, a.proto)))


def default_backend(platform: str | None = None) -> Backend | None:
    """The backend for this platform (``sys.platform`` by default): nftables on Linux, pf on
    macOS and the BSDs; None where mamori has none (Windows)."""
    name = sys.platform if platform is None else platform
    if name.startswith("linux"):
        return Backend.NFTABLES
    if name == "darwin" or "bsd" in name:
        return Backend.PF
    return None


class RuleKind(StrEnum):
    """Every rule a plan can hold, in the order backends write them."""

    DEFAULT_DENY = "default-deny"
    ESTABLISHED = "established"
    INVALID = "invalid"
    LOOPBACK = "loopback"
    ICMP4_ERRORS = "icmp4-errors"
    ICMP4_ECHO = "icmp4-echo"
    ICMP6_ERRORS = "icmp6-errors"
    ICMP6_NDP = "icmp6-ndp"
    ICMP6_MLD = "icmp6-mld"
    ICMP6_ECHO = "icmp6-echo"
    DHCP6_CLIENT = "dhcp6-client"
    ALLOW_PORT = "allow-port"


WHY: dict[RuleKind, str] = {
    RuleKind.DEFAULT_DENY: "Default deny: any inbound packet not accepted by a rule below is "
    "dropped without an answer, so a service started later stays closed until you allow it.",
    RuleKind.ESTABLISHED: "Replies to connections this machine opened (updates, DNS, web) and "
    "traffic related to them are let back in; without this, nothing outbound would work.",
    RuleKind.INVALID: "Packets that belong to no valid connection (forged or broken) are "
    "dropped early.",
    RuleKind.LOOPBACK: "Traffic from this machine to itself (127.0.0.1, ::1) is never "
    "filtered: local programs talk to each other over loopback.",
    RuleKind.ICMP4_ERRORS: "IPv4 error messages (destination unreachable, which carries "
    "'fragmentation needed' for path MTU discovery; time exceeded; parameter problem) keep "
    "connections from hanging.",
    RuleKind.ICMP4_ECHO: "IPv4 ping is answered, rate-limited so it cannot be used to flood "
    "this machine or others. Leave it out with --no-ping.",
    RuleKind.ICMP6_ERRORS: "ICMPv6 errors are part of IPv6 itself: packet too big (IPv6 "
    "routers never fragment, so path MTU discovery depends on it), destination unreachable, "
    "time exceeded, parameter problem.",
    RuleKind.ICMP6_NDP: "IPv6 neighbour and router discovery (IPv6's ARP and its address "
    "autoconfiguration); accepted only with hop limit 255, which proves they come from the "
    "local link.",
    RuleKind.ICMP6_MLD: "Multicast listener discovery, which IPv6 needs on the local link; "
    "accepted only from link-local addresses.",
    RuleKind.ICMP6_ECHO: "IPv6 ping is answered, rate-limited. Leave it out with --no-ping.",
    RuleKind.DHCP6_CLIENT: "DHCPv6 replies to this machine's own address requests (link-local "
    "only), so IPv6 configuration by DHCPv6 keeps working.",
    RuleKind.ALLOW_PORT: "You asked for this service to be reachable from the network.",
}


@dataclass(frozen=True)
class PlanRule:
    kind: RuleKind
    why: str
    allowed: AllowedPort | None = None  # only for ALLOW_PORT


@dataclass(frozen=True)
class FirewallPlan:
    """The rules to write, in order; ``allowed`` repeats the ALLOW_PORT rules' ports."""

    rules: tuple[PlanRule, ...]
    allowed: tuple[AllowedPort, ...]
    ping: bool
    ping_rate: int  # echo requests per second answered when ``ping`` is set

    def kinds(self) -> tuple[RuleKind, ...]:
        return tuple(rule.kind for rule in self.rules)


def build_plan(
    allowed: tuple[AllowedPort, ...], *, ping: bool = True, ping_rate: int = 5
) -> FirewallPlan:
    """The plan that accepts exactly ``allowed`` inbound plus the essentials, dropping the rest.

    Raises ``ValueError`` if ``ping_rate`` is not positive.
    """
    if ping_rate < 1:
        raise ValueError("ping_rate must be at least 1 per second")
    kinds = [
        RuleKind.DEFAULT_DENY,
        RuleKind.ESTABLISHED,
        RuleKind.INVALID,
        RuleKind.LOOPBACK,
        RuleKind.ICMP4_ERRORS,
    ]
    if ping:
        kinds.append(RuleKind.ICMP4_ECHO)
    kinds += [RuleKind.ICMP6_ERRORS, RuleKind.ICMP6_NDP, RuleKind.ICMP6_MLD]
    if ping:
        kinds.append(RuleKind.ICMP6_ECHO)
    kinds.append(RuleKind.DHCP6_CLIENT)
    rules = [PlanRule(kind, WHY[kind]) for kind in kinds]
    rules += [PlanRule(RuleKind.ALLOW_PORT, f"Allowed by you: {a.describe()}.", a) for a in allowed]
    return FirewallPlan(tuple(rules), allowed, ping, ping_rate)


def plan_warnings(plan: FirewallPlan, ssh_connection: str | None = None) -> tuple[str, ...]:
    """Lines to show before writing or applying ``plan``.

    ``ssh_connection`` is ``$SSH_CONNECTION`` ("client port server_addr server_port"): when the
    owner is logged in over SSH to a port the plan does not allow, say that new logins will be
    refused (the running session survives as an established connection).
    """
    warnings: list[str] = []
    if not plan.allowed:
        warnings.append(
            "nothing is allowed inbound: every service on this machine becomes "
            "unreachable from the network"
        )
    fields = (ssh_connection or "").split()
    if len(fields) == 4 and fields[3].isdigit():
        port = int(fields[3])
        if not any(a.proto is Proto.TCP and a.port <= port <= a.last for a in plan.allowed):
            warnings.append(
                f"you are logged in over SSH to port {port}/tcp, which this plan "
                "does not allow: this session stays up, new logins will be refused "
                "(add --allow ssh)"
            )
    return tuple(warnings)


@dataclass(frozen=True)
class RenderedRule:
    """One rule in a backend's syntax with the sentence that explains it."""

    kind: RuleKind
    text: str
    why: str


def comment_lines(text: str, prefix: str = "# ", width: int = 92) -> list[str]:
    """``text`` as comment lines of at most ``width`` characters (words are never split)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(prefix) + len(current) + 1 + len(word) > width:
            lines.append(prefix + current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, prefix + current] if current else lines


def allowed_summary(plan: FirewallPlan) -> str:
    """``"ssh (22/tcp), 8080/tcp"``, or ``"nothing"``."""
    return ", ".join(a.describe() for a in plan.allowed) or "nothing"
