"""firewalld: zones from `firewall-cmd --list-all-zones`, services from `--info-service`. Pure.

firewalld's own model is simpler to decide than the nftables rules it generates: a packet is
handled by the zone of its source address if one claims it, else by the zone of its input
interface, else by the default zone; inside a zone, rich rules that deny come first, then
rich rules that accept, services, ports and protocols, then the zone's target
(default = reject).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from mamori.model import Proto
from mamori.model.audit import FirewallDecision, Verdict

Ports = tuple[tuple[str, int, int], ...]  # (proto, low, high)


@dataclass(frozen=True)
class RichRule:
    text: str
    family: int | None  # None: both
    source: str | None  # "10.0.0.0/8" (or "NOT 10.0.0.0/8")
    service: str | None
    ports: Ports
    action: str  # "accept", "drop", "reject", "" (log/audit only), "?" (not understood)


@dataclass(frozen=True)
class Zone:
    name: str
    active: bool
    default: bool
    target: str  # "default", "ACCEPT", "DROP", "%%REJECT%%"
    interfaces: tuple[str, ...]
    sources: tuple[str, ...]
    services: tuple[str, ...]
    ports: Ports
    protocols: tuple[str, ...]
    source_ports: Ports
    rich: tuple[RichRule, ...]


@dataclass(frozen=True)
class FirewalldState:
    zones: tuple[Zone, ...]
    services: dict[str, Ports] = field(default_factory=dict)  # service name -> its ports

    @property
    def default_zone(self) -> Zone | None:
        return next((z for z in self.zones if z.default), None)


def parse_ports(text: str) -> Ports:
    """ "22/tcp 60000-61000/udp" → ((tcp, 22, 22), (udp, 60000, 61000)); bad items skipped."""
    out: list[tuple[str, int, int]] = []
    for item in text.split():
        m = re.fullmatch(r"(\d+)(?:-(\d+))?/(\w+)", item)
        if m:
            lo = int(m.group(1))
            out.append((m.group(3), lo, int(m.group(2) or lo)))
    return tuple(out)


def parse_service_info(text: str) -> Ports:
    """Ports of one service from `firewall-cmd --info-service=NAME` output."""
    m = re.search(r"^\s*ports:(.*)$", text, re.MULTILINE)
    return parse_ports(m.group(1)) if m else ()


def parse_rich_rule(text: str) -> RichRule:
    """One rich rule (`rule family="ipv4" source address="…" port port="22" … accept`)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return RichRule(text, None, None, None, (), "?")
    kv: dict[str, str] = {}
    action = ""
    unknown = False
    ctx = ""
    neg = False
    for w in words:
        if "=" in w:
            k, _, v = w.partition("=")
            kv[f"{ctx}.{k}"] = ("NOT " if neg and k in ("address", "ipset") else "") + v
        elif w in ("accept", "drop", "reject"):
            action = w
            ctx = w
        elif w == "NOT":
            neg = True
            continue
        elif w in (
            "rule",
            "source",
            "destination",
            "service",
            "port",
            "protocol",
            "log",
            "audit",
            "limit",
            "icmp-block",
            "icmp-type",
            "masquerade",
            "forward-port",
            "source-port",
            "mark",
            "tcp-mss-clamp",
        ):
            ctx = w
            if w in (
                "destination",
                "icmp-block",
                "icmp-type",
                "masquerade",
                "forward-port",
                "source-port",
                "mark",
                "tcp-mss-clamp",
                "protocol",
            ):
                unknown = True
        neg = False
    family = {"ipv4": 4, "ipv6": 6}.get(kv.get("rule.family", ""))
    src = kv.get("source.address") or (
        f"ipset {kv['source.ipset']}" if "source.ipset" in kv else None
    )
    ports: Ports = ()
    if "port.port" in kv:
        ports = parse_ports(f"{kv['port.port']}/{kv.get('port.protocol', 'tcp')}")
    return RichRule(
        text,
        family,
        src,
        kv.get("service.name"),
        ports,
        "?" if unknown or "limit.value" in kv or "accept.limit" in kv else action,
    )


def parse_zones(text: str) -> tuple[Zone, ...]:
    """Parse `firewall-cmd --list-all-zones` (or one zone's `--list-all`) output."""
    zones: list[Zone] = []
    blocks = re.split(r"\n(?=\S)", text.strip())
    for block in blocks:
        lines = block.splitlines()
        if not lines or not lines[0].strip():
            continue
        head = re.match(r"^(\S+)(?:\s+\(([^)]*)\))?", lines[0])
        if head is None:
            continue
        flags = {f.strip() for f in (head.group(2) or "").split(",")}
        attrs: dict[str, str] = {}
        rich: list[RichRule] = []
        key = ""
        for line in lines[1:]:
            m = re.match(r"^\s+([a-z -]+):\s?(.*)$", line)
            if m and not line.lstrip().startswith("rule "):
                key = m.group(1).strip()
                attrs[key] = m.group(2).strip()
            elif key == "rich rules" and line.strip():
                rich.append(parse_rich_rule(line.strip()))
        zones.append(
            Zone(
                head.group(1),
                "active" in flags,
                "default" in flags,
                attrs.get("target", "default"),
                tuple(attrs.get("interfaces", "").split()),
                tuple(attrs.get("sources", "").split()),
                tuple(attrs.get("services", "").split()),
                parse_ports(attrs.get("ports", "")),
                tuple(attrs.get("protocols", "").split()),
                parse_ports(attrs.get("source-ports", "")),
                tuple(rich),
            )
        )
    return tuple(zones)


def _in(ports: Ports, proto: Proto, port: int) -> bool:
    return any(p == proto.value and lo <= port <= hi for p, lo, hi in ports)


@dataclass(frozen=True)
class _ZoneAnswer:
    verdict: Verdict
    reason: str
    only_from: tuple[str, ...] = ()


def _zone(state: FirewalldState, z: Zone, proto: Proto, port: int, family: int) -> _ZoneAnswer:
    where = f"zone {z.name}"
    restricted: list[str] = []
    for phase in ("drop", "accept"):
        for r in z.rich:
            if r.family not in (None, family):
                continue
            ports = r.ports or (state.services.get(r.service, ()) if r.service else ())
            if r.service and r.service not in state.services:
                return _ZoneAnswer(
                    Verdict.UNDETERMINED, f"{where}: service {r.service} unknown: {r.text}"
                )
            matches = not (r.ports or r.service) or _in(ports, proto, port)
            if not matches:
                continue
            if r.action == "?":
                return _ZoneAnswer(
                    Verdict.UNDETERMINED, f"{where}: rich rule not understood: {r.text}"
                )
            deny = r.action in ("drop", "reject")
            if (phase == "drop") != deny or not r.action:
                continue
            if r.source:
                if not deny:
                    restricted.append(f"from {r.source}")
                continue
            verdict = Verdict.BLOCKED if deny else Verdict.ALLOWED
            return _ZoneAnswer(verdict, f"{where}: rich rule {r.text}")
    for svc in z.services:
        if svc not in state.services:
            return _ZoneAnswer(Verdict.UNDETERMINED, f"{where}: ports of service {svc} unknown")
        if _in(state.services[svc], proto, port):
            return _ZoneAnswer(Verdict.ALLOWED, f"{where}: service {svc}")
    if _in(z.ports, proto, port):
        return _ZoneAnswer(Verdict.ALLOWED, f"{where}: port {port}/{proto.value}")
    if proto.value in z.protocols:
        return _ZoneAnswer(Verdict.ALLOWED, f"{where}: protocol {proto.value}")
    if z.source_ports and any(p == proto.value for p, _, _ in z.source_ports):
        restricted.append(
            "from source ports "
            + " ".join(
                f"{lo}-{hi}/{p}" if lo != hi else f"{lo}/{p}" for p, lo, hi in z.source_ports
            )
        )
    if z.target == "ACCEPT":
        return _ZoneAnswer(Verdict.ALLOWED, f"{where}: target ACCEPT")
    target = "default (reject)" if z.target == "default" else z.target.strip("%")
    return _ZoneAnswer(Verdict.BLOCKED, f"{where}: target {target}", tuple(restricted))


def decide_firewalld(
    state: FirewalldState, proto: Proto, port: int, family: int, iface: str | None = None
) -> FirewallDecision:
    """Decide a NEW inbound connection with firewalld's zone rules.

    Returns ALLOWED (with `only_from` when only some sources/interfaces get through),
    BLOCKED, or UNDETERMINED (no default zone, a service or rich rule not understood).
    """
    default = state.default_zone
    if default is None:
        return FirewallDecision(Verdict.UNDETERMINED, "firewalld", "no default zone listed")
    if iface is not None:
        zone = next((z for z in state.zones if iface in z.interfaces), default)
        iface_zones = [(zone, "")]
    else:
        iface_zones = [(default, "")] + [
            (z, "on interface " + ",".join(z.interfaces))
            for z in state.zones
            if z.interfaces and z is not default
        ]
    answers = [(_zone(state, z, proto, port, family), label) for z, label in iface_zones]
    for ans, _ in answers:
        if ans.verdict is Verdict.UNDETERMINED:
            return FirewallDecision(Verdict.UNDETERMINED, "firewalld", ans.reason)
    general, _ = answers[0]
    if general.verdict is Verdict.ALLOWED:
        return FirewallDecision(Verdict.ALLOWED, "firewalld", general.reason, general.reason)
    only = list(general.only_from)
    for ans, label in answers[1:]:
        if ans.verdict is Verdict.ALLOWED:
            only.append(f"{label} ({ans.reason})")
    for z in state.zones:  # zones bound to source addresses take those sources first
        if z.sources and z.active:
            ans = _zone(state, z, proto, port, family)
            if ans.verdict is Verdict.ALLOWED:
                only.append(f"from {' '.join(z.sources)} ({ans.reason})")
    if only:
        return FirewallDecision(
            Verdict.ALLOWED,
            "firewalld",
            f"allowed only {' or '.join(only)}; others: {general.reason}",
            general.reason,
            tuple(only),
        )
    return FirewallDecision(Verdict.BLOCKED, "firewalld", general.reason, general.reason)
