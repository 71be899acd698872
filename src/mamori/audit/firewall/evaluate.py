"""One packet-filter model for nftables and iptables, and the walk that decides a packet.

The question is always the same: may a NEW inbound connection (proto, port, family), arriving
from a non-local source on some interface, reach a local listener? The parsers
(`nftables.py`, `iptables.py`) reduce each rule to conditions that answer that question with
yes, no, or "it depends" (on the source address, or on something the model does not know).
The walk follows every path the "depends" answers open (bounded), and folds the endings into
one `FirewallDecision`: allowed, allowed only from some sources, blocked, or undetermined with
the reason named.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mamori.model import Proto
from mamori.model.audit import FirewallDecision, Verdict

MAX_PATHS = 512  # paths explored per base chain before giving up as undetermined
MAX_DEPTH = 32  # nested jumps (a loop in the ruleset is undetermined, not a hang)


@dataclass(frozen=True)
class Packet:
    """The connection asked about: the first packet (SYN / first datagram) of it."""

    proto: Proto
    port: int
    family: int  # 4 or 6
    iface: str | None = None  # None: it may arrive on any non-loopback interface


class Depends(StrEnum):
    SOURCE = "source"  # true for some outside sources (an address set, an interface, a port)
    UNKNOWN = "unknown"  # the model cannot tell


@dataclass(frozen=True)
class Assume:
    """A condition whose truth depends on `label`: true iff `label` holds, xor `negate`."""

    kind: Depends
    label: str  # "from 10.0.0.0/8", "on interface eth0", "meta mark"
    negate: bool = False


Truth = bool | Assume


class Cond:
    """One match of a rule. `test` answers for a packet; `note` marks rate limits."""

    text: str = ""
    note: str | None = None

    def test(self, pkt: Packet) -> Truth:
        raise NotImplementedError


@dataclass(frozen=True)
class Const(Cond):
    value: bool
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return self.value


@dataclass(frozen=True)
class Unknown(Cond):
    """A match the model does not understand: both outcomes are explored."""

    text: str

    def test(self, pkt: Packet) -> Truth:
        return Assume(Depends.UNKNOWN, self.text)


@dataclass(frozen=True)
class Family(Cond):
    families: frozenset[int]
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return (pkt.family in self.families) != self.negate


@dataclass(frozen=True)
class L4(Cond):
    """Transport protocol is one of `protos` ("tcp", "udp", "icmp", ...)."""

    protos: frozenset[str]
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return (pkt.proto.value in self.protos) != self.negate


PortRanges = tuple[tuple[int, int], ...]


def in_ranges(port: int, ranges: PortRanges) -> bool:
    return any(lo <= port <= hi for lo, hi in ranges)


@dataclass(frozen=True)
class DPort(Cond):
    ranges: PortRanges
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return in_ranges(pkt.port, self.ranges) != self.negate


@dataclass(frozen=True)
class Source(Cond):
    """Depends on who sends: an address set, a source port, a MAC. `label` says which."""

    label: str
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return Assume(Depends.SOURCE, self.label, self.negate)


@dataclass(frozen=True)
class Iface(Cond):
    """Input interface is one of `names` (trailing "+" or "*": prefix wildcard)."""

    names: tuple[str, ...]
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        pats = [n[:-1] + "*" if n.endswith("+") else n for n in self.names]
        if pkt.iface is not None:
            return any(fnmatch.fnmatchcase(pkt.iface, p) for p in pats) != self.negate
        if all(p == "lo" for p in pats):
            return self.negate  # outside traffic never arrives on loopback
        return Assume(Depends.SOURCE, "on interface " + ",".join(self.names), self.negate)


@dataclass(frozen=True)
class CtState(Cond):
    """Conntrack state is one of `states`; a new connection is in state "new"."""

    states: frozenset[str]
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return ("new" in self.states) != self.negate


@dataclass(frozen=True)
class Rate(Cond):
    """A rate or count limit, answered for the first connection of a quiet source."""

    first_matches: bool
    note: str | None = None
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        return self.first_matches


@dataclass(frozen=True)
class SynFlags(Cond):
    """TCP flags test: (flags & mask) == comp, for a SYN."""

    mask: frozenset[str]
    comp: frozenset[str]
    negate: bool = False
    text: str = ""

    def test(self, pkt: Packet) -> Truth:
        if pkt.proto is not Proto.TCP:
            return False
        return (self.mask & {"syn"} == self.comp) != self.negate


class Act(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    JUMP = "jump"
    GOTO = "goto"
    RETURN = "return"
    CONTINUE = "continue"  # log, counter, mark set: the walk goes on
    UNKNOWN = "unknown"  # queue and the like: the verdict is out of the ruleset's hands


@dataclass(frozen=True)
class Rule:
    conds: tuple[Cond, ...]
    action: Act
    target: str = ""  # jump/goto chain; for UNKNOWN: what it is
    text: str = ""  # for reasons: the rule as its tool prints it


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class BaseChain:
    """A chain the kernel runs on the inbound path (prerouting or input hook)."""

    table: str  # key of the table in Ruleset.chains, e.g. "inet filter"
    name: str
    stage: int  # 0 ingress, 1 prerouting, 2 input
    priority: int
    policy: Act  # ACCEPT or DROP
    families: frozenset[int]


@dataclass(frozen=True)
class Ruleset:
    """Parsed rules of one or more tools: every base chain a packet traverses."""

    backend: str  # "nftables", "iptables", "ufw", or "+"-joined
    base: tuple[BaseChain, ...]
    chains: dict[str, dict[str, Chain]]  # table key -> chain name -> chain
    notes: tuple[str, ...] = ()  # parse remarks, e.g. tables left to another parser

    @property
    def empty(self) -> bool:
        return not self.base and not any(self.chains.values())


def merge(rulesets: Sequence[Ruleset], backend: str | None = None) -> Ruleset:
    """One Ruleset with every base chain of `rulesets` (table keys must not clash)."""
    chains: dict[str, dict[str, Chain]] = {}
    for rs in rulesets:
        chains.update(rs.chains)
    return Ruleset(
        backend or "+".join(dict.fromkeys(rs.backend for rs in rulesets)) or "none",
        tuple(b for rs in rulesets for b in rs.base),
        chains,
        tuple(n for rs in rulesets for n in rs.notes),
    )


# ---- the walk ------------------------------------------------------------------------------


class TooComplex(Exception):
    pass


@dataclass(frozen=True)
class Path:
    assumed: tuple[tuple[Assume, bool], ...] = ()  # (label's kind, label) -> does it hold
    notes: tuple[str, ...] = ()

    def holds(self, a: Assume) -> bool | None:
        for known, value in self.assumed:
            if known.kind == a.kind and known.label == a.label:
                return value
        return None

    def assume(self, a: Assume, value: bool) -> Path:
        return replace(self, assumed=(*self.assumed, (Assume(a.kind, a.label), value)))

    def note(self, text: str) -> Path:
        return self if text in self.notes else replace(self, notes=(*self.notes, text))

    def sources(self) -> tuple[str, ...]:
        return tuple(a.label for a, v in self.assumed if a.kind is Depends.SOURCE and v)

    def unknowns(self) -> tuple[str, ...]:
        return tuple(a.label for a, _ in self.assumed if a.kind is Depends.UNKNOWN)


@dataclass(frozen=True)
class End:
    act: Act  # ACCEPT, DROP, REJECT, RETURN (fell off / returned), UNKNOWN
    rule: str
    path: Path


@dataclass
class _Walker:
    rs: Ruleset
    pkt: Packet
    table: str
    paths: int = 0
    seen: list[str] = field(default_factory=list)

    def chain(self, name: str, path: Path, depth: int) -> list[End]:
        chain = self.rs.chains.get(self.table, {}).get(name)
        if chain is None:
            return [End(Act.UNKNOWN, f"jump to missing chain {name}", path)]
        if depth > MAX_DEPTH:
            raise TooComplex(f"jumps nested deeper than {MAX_DEPTH} (loop?) at chain {name}")
        return self.rules(chain.rules, 0, path, depth)

    def rules(self, rules: tuple[Rule, ...], start: int, path: Path, depth: int) -> list[End]:
        for i in range(start, len(rules)):
            rule = rules[i]
            pending: Assume | None = None
            failed: list[Cond] = []
            for cond in rule.conds:
                t = cond.test(self.pkt)
                if isinstance(t, Assume):
                    held = path.holds(t)
                    if held is None:
                        pending = pending or t
                        continue
                    t = held != t.negate
                if not t:
                    failed.append(cond)
                    if cond.note is None:
                        break
            if failed:
                if (
                    rule.action is not Act.CONTINUE
                    and pending is None
                    and all(c.note for c in failed)
                ):  # only a rate limit kept this rule out: say so
                    for c in failed:
                        path = path.note(str(c.note))
                continue
            if rule.action is Act.CONTINUE:
                continue  # log, counter, mark set: whether it matched changes nothing here
            if pending is not None:
                self.paths += 1
                if self.paths > MAX_PATHS:
                    raise TooComplex(f"more than {MAX_PATHS} paths through the ruleset")
                return self.rules(rules, i, path.assume(pending, True), depth) + self.rules(
                    rules, i, path.assume(pending, False), depth
                )
            for cond in rule.conds:
                if cond.note:
                    path = path.note(cond.note)
            if rule.action in (Act.ACCEPT, Act.DROP, Act.REJECT, Act.RETURN, Act.UNKNOWN):
                what = f"{rule.target}: {rule.text}" if rule.action is Act.UNKNOWN else rule.text
                return [End(rule.action, what, path)]
            sub = self.chain(rule.target, path, depth + 1)
            if rule.action is Act.GOTO:
                return sub
            out: list[End] = []
            for end in sub:
                if end.act is Act.RETURN:
                    out += self.rules(rules, i + 1, end.path, depth)
                else:
                    out.append(end)
            return out
        return [End(Act.RETURN, "", path)]


@dataclass(frozen=True)
class ChainResult:
    """What one base chain does to the packet from a general source, and for some sources."""

    chain: BaseChain
    verdict: Verdict  # ALLOWED, BLOCKED, UNDETERMINED
    reason: str
    rule: str | None
    only_from: tuple[str, ...] = ()  # when BLOCKED in general: sources it still accepts
    notes: tuple[str, ...] = ()


def _fold_chain(bc: BaseChain, ends: list[End]) -> ChainResult:
    policy = f"{bc.table} {bc.name}: policy {bc.policy.value}"
    ends = [End(bc.policy, policy, e.path) if e.act is Act.RETURN else e for e in ends]
    general = [e for e in ends if not e.path.sources()]
    notes = tuple(dict.fromkeys(n for e in general for n in e.path.notes))
    unknown = [e for e in general if e.act is Act.UNKNOWN]
    if unknown:
        return ChainResult(
            bc, Verdict.UNDETERMINED, f"{bc.table} {bc.name}: {unknown[0].rule}", unknown[0].rule
        )
    kinds = {e.act is Act.ACCEPT for e in general}
    if len(kinds) > 1:
        what = sorted({u for e in general for u in e.path.unknowns()})
        return ChainResult(
            bc, Verdict.UNDETERMINED, f"{bc.table} {bc.name}: depends on " + ", ".join(what), None
        )
    first = general[0]
    if first.act is Act.ACCEPT:
        return ChainResult(bc, Verdict.ALLOWED, first.rule, first.rule, notes=notes)
    restricted = tuple(
        dict.fromkeys(
            " and ".join(e.path.sources()) for e in ends if e.path.sources() and e.act is Act.ACCEPT
        )
    )
    return ChainResult(bc, Verdict.BLOCKED, first.rule, first.rule, restricted, notes)


def walk_base(rs: Ruleset, bc: BaseChain, pkt: Packet) -> ChainResult:
    """Run one base chain for `pkt`; the answer says why, never raises."""
    walker = _Walker(rs, pkt, bc.table)
    try:
        ends = walker.chain(bc.name, Path(), 0)
    except TooComplex as exc:
        return ChainResult(bc, Verdict.UNDETERMINED, f"{bc.table} {bc.name}: {exc}", None)
    return _fold_chain(bc, ends)


def _has_rules(rs: Ruleset, bc: BaseChain) -> bool:
    chain = rs.chains.get(bc.table, {}).get(bc.name)
    return chain is not None and bool(chain.rules)


def decide_ruleset(
    rs: Ruleset, proto: Proto, port: int, family: int, iface: str | None = None
) -> FirewallDecision:
    """Decide a NEW inbound connection to local (proto, port) over IP `family` (4 or 6).

    Returns NO_FIREWALL when no base chain on the inbound path filters anything, ALLOWED
    (with `only_from` when only some sources or interfaces get through), BLOCKED, or
    UNDETERMINED naming what could not be decided. Never raises for any parsed ruleset.
    """
    pkt = Packet(proto, port, family, iface)
    chains = sorted(
        (b for b in rs.base if family in b.families), key=lambda b: (b.stage, b.priority)
    )
    if not any(_has_rules(rs, b) or b.policy is not Act.ACCEPT for b in chains):
        why = "no ruleset loaded" if not chains else "inbound chains are empty with policy accept"
        return FirewallDecision(Verdict.NO_FIREWALL, rs.backend, f"IPv{family}: {why}")
    results = [walk_base(rs, b, pkt) for b in chains]
    blocked = [r for r in results if r.verdict is Verdict.BLOCKED]
    notes = tuple(dict.fromkeys(n for r in results for n in r.notes))
    suffix = f" ({'; '.join(notes)})" if notes else ""
    if blocked:
        if all(r.only_from for r in blocked) and not any(
            r.verdict is Verdict.UNDETERMINED for r in results
        ):
            only = tuple(dict.fromkeys(s for r in blocked for s in r.only_from))
            first = blocked[0]
            return FirewallDecision(
                Verdict.ALLOWED,
                rs.backend,
                f"allowed only {' or '.join(only)}; others: {first.reason}{suffix}",
                first.rule,
                only,
            )
        first = blocked[0]
        return FirewallDecision(Verdict.BLOCKED, rs.backend, first.reason + suffix, first.rule)
    undetermined = [r for r in results if r.verdict is Verdict.UNDETERMINED]
    if undetermined:
        u = undetermined[0]
        return FirewallDecision(Verdict.UNDETERMINED, rs.backend, u.reason, u.rule)
    by_rule = [r for r in results if r.rule and ": policy " not in r.rule]
    decisive = by_rule[-1] if by_rule else results[-1]
    return FirewallDecision(Verdict.ALLOWED, rs.backend, decisive.reason + suffix, decisive.rule)
