"""Parse `nft -j list ruleset` (libnftables JSON schema 1) into the evaluator's model. Pure."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mamori.audit.firewall.evaluate import (
    L4,
    Act,
    BaseChain,
    Chain,
    Cond,
    Const,
    CtState,
    DPort,
    Family,
    Iface,
    PortRanges,
    Rate,
    Rule,
    Ruleset,
    Source,
    Unknown,
)

STAGES = {"ingress": 0, "prerouting": 1, "input": 2}
FAMILIES = {
    "ip": frozenset({4}),
    "ip6": frozenset({6}),
    "inet": frozenset({4, 6}),
    "netdev": frozenset({4, 6}),
}
TRANSPORT = {"tcp", "udp", "sctp", "dccp", "udplite"}
MAX_SHOWN = 4  # set elements quoted in a label

Json = Any


class NftParseError(ValueError):
    """The text is not `nft -j` output."""


def parse_nft_json(
    text: str,
    skip_tables: Iterable[tuple[str, str]] = (),
    xt_rules: Mapping[tuple[str, str, str], Sequence[Rule]] | None = None,
) -> Ruleset:
    """Parse `nft -j list ruleset` output into a Ruleset (backend "nftables").

    `skip_tables` lists (family, name) pairs to leave out (tables iptables-nft manages, which
    iptables-save reads better). `xt_rules` maps (family, table, chain) to that chain's rules
    as iptables-save showed them: a rule nft shows only as an opaque "xt" match or target is
    taken from there (same position), when the chain holds as many rules in both. Chains of
    type nat are left out (they rewrite, not filter). Raises NftParseError when `text` is not
    nft JSON.
    """
    try:
        doc = json.loads(text) if text.strip() else {"nftables": []}
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NftParseError(f"not nft JSON: {exc}") from None
    if not isinstance(items, list):
        raise NftParseError("not nft JSON: 'nftables' is not a list")
    skip = set(skip_tables)
    sets: dict[tuple[str, str, str], list[Json]] = {}
    maps: dict[tuple[str, str, str], list[Json]] = {}
    heads: list[dict[str, Json]] = []
    rules: dict[tuple[str, str], dict[str, list[Rule]]] = {}
    notes: list[str] = []
    saved = _SavedRules(items, xt_rules or {})
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict):
            continue
        tkey = (str(body.get("family")), str(body.get("table", body.get("name"))))
        if kind != "table" and tkey in skip:
            continue
        if kind == "set":
            sets[(*tkey, str(body.get("name")))] = list(body.get("elem", []))
        elif kind == "map":
            maps[(*tkey, str(body.get("name")))] = list(body.get("elem", []))
        elif kind == "chain":
            rules.setdefault(tkey, {}).setdefault(str(body.get("name")), [])
            if "hook" in body:
                heads.append(body)
        elif kind == "rule":
            ctx = _Ctx(tkey, sets, maps)
            name = str(body.get("chain"))
            where = f"{tkey[0]} {tkey[1]} {name}: "
            chain = rules.setdefault(tkey, {}).setdefault(name, [])
            exprs = body.get("expr", [])
            exprs = exprs if isinstance(exprs, list) else []
            from_save = saved.take(tkey, name, exprs)
            for r in [from_save] if from_save else _rule(ctx, exprs):
                chain.append(replace(r, text=where + r.text))
    chains = {
        " ".join(t): {n: Chain(n, tuple(r)) for n, r in cs.items()} for t, cs in rules.items()
    }
    return Ruleset("nftables", _base_chains(heads, notes), chains, tuple(notes))


def _base_chains(heads: list[dict[str, Json]], notes: list[str]) -> tuple[BaseChain, ...]:
    """The chains hooked on the inbound path; nat chains only noted (appended to `notes`)."""
    base: list[BaseChain] = []
    for head in heads:
        tkey = (str(head.get("family")), str(head.get("table")))
        stage = STAGES.get(str(head.get("hook")))
        fams = FAMILIES.get(tkey[0])
        if stage is None or fams is None:
            continue
        if head.get("type") == "nat":
            notes.append(f"nat chain {tkey[0]} {tkey[1]} {head.get('name')} not evaluated")
            continue
        policy = Act.DROP if head.get("policy") == "drop" else Act.ACCEPT
        base.append(
            BaseChain(
                " ".join(tkey), str(head.get("name")), stage, _int(head.get("prio")), policy, fams
            )
        )
    return tuple(base)


class _SavedRules:
    """iptables-save's rules for the "xt" rules of chains read from nft, by position."""

    def __init__(self, items: list[Json], saved: Mapping[tuple[str, str, str], Sequence[Rule]]):
        self.saved = saved
        self.counts: dict[tuple[str, str, str], int] = {}
        self.seen: dict[tuple[str, str, str], int] = {}
        for item in items if saved else []:
            body = item.get("rule") if isinstance(item, dict) else None
            if isinstance(body, dict):
                key = (str(body.get("family")), str(body.get("table")), str(body.get("chain")))
                self.counts[key] = self.counts.get(key, 0) + 1

    def take(self, table: tuple[str, str], chain: str, exprs: list[Json]) -> Rule | None:
        key = (*table, chain)
        index = self.seen.get(key, 0)
        self.seen[key] = index + 1
        rules = self.saved.get(key)
        if rules is None or len(rules) != self.counts.get(key) or not any(
            isinstance(e, dict) and "xt" in e for e in exprs
        ):
            return None
        return rules[index]


def _int(v: Json) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class _Ctx:
    def __init__(
        self,
        table: tuple[str, str],
        sets: dict[tuple[str, str, str], list[Json]],
        maps: dict[tuple[str, str, str], list[Json]],
    ) -> None:
        self.table = table
        self.sets = sets
        self.maps = maps

    def set_elems(self, name: str) -> list[Json] | None:
        return self.sets.get((*self.table, name))

    def map_elems(self, name: str) -> list[Json] | None:
        return self.maps.get((*self.table, name))


# ---- rules ---------------------------------------------------------------------------------

VERDICTS = {
    "accept": Act.ACCEPT,
    "drop": Act.DROP,
    "reject": Act.REJECT,
    "return": Act.RETURN,
    "continue": Act.CONTINUE,
}


def _rule(ctx: _Ctx, exprs: list[Json]) -> list[Rule]:
    """One nft rule → one Rule, or several when it ends in a verdict map."""
    conds: list[Cond] = []
    words: list[str] = []
    for expr in exprs:
        if not isinstance(expr, dict) or len(expr) != 1:
            conds.append(Unknown(f"expression {expr!r}"))
            continue
        key, val = next(iter(expr.items()))
        if key == "match":
            new = _match(ctx, val)
            conds.extend(new)
            words.extend(c.text for c in new if c.text)
        elif key in VERDICTS:
            return [Rule(tuple(conds), VERDICTS[key], text=" ".join([*words, key]))]
        elif key in ("jump", "goto"):
            target = str(val.get("target")) if isinstance(val, dict) else ""
            act = Act.JUMP if key == "jump" else Act.GOTO
            return [Rule(tuple(conds), act, target, " ".join([*words, key, target]))]
        elif key == "vmap":
            return _vmap(ctx, conds, words, val)
        elif key == "limit":
            over = isinstance(val, dict) and bool(val.get("inv"))
            text = f"limit rate {'over ' if over else ''}{_limit_text(val)}"
            conds.append(Rate(not over, "rate-limited: " + text, text))
            words.append(text)
        elif key in ("counter", "log", "mangle", "set", "notrack", "ct helper", "quota"):
            if key == "quota":
                conds.append(Unknown("quota"))
            continue
        elif key == "xt":
            name = val.get("name") if isinstance(val, dict) else "?"
            if isinstance(val, dict) and val.get("type") == "match":
                conds.append(Unknown(f"iptables-nft match {name}"))
                continue
            return [
                Rule(
                    tuple(conds),
                    Act.UNKNOWN,
                    f"iptables-nft target {name}",
                    " ".join([*words, f"xt target {name}"]),
                )
            ]
        elif key in (
            "queue",
            "synproxy",
            "dup",
            "fwd",
            "tproxy",
            "dnat",
            "snat",
            "redirect",
            "masquerade",
        ):
            return [Rule(tuple(conds), Act.UNKNOWN, f"{key} statement", " ".join([*words, key]))]
        else:
            conds.append(Unknown(f"{key} expression"))
            words.append(key)
    return [Rule(tuple(conds), Act.CONTINUE, text=" ".join(words))]


def _limit_text(val: Json) -> str:
    if not isinstance(val, dict):
        return "?"
    return f"{val.get('rate')}/{val.get('per')}"


def _vmap(ctx: _Ctx, conds: list[Cond], words: list[str], val: Json) -> list[Rule]:
    """`key vmap { k : verdict, … }` → one rule per element (elements are disjoint)."""
    if not isinstance(val, dict):
        return [Rule(tuple(conds), Act.UNKNOWN, "verdict map", "vmap")]
    data = val.get("data")
    elems: list[Json] | None = None
    if isinstance(data, dict) and isinstance(data.get("set"), list):
        elems = data["set"]
    elif isinstance(data, str) and data.startswith("@"):
        elems = ctx.map_elems(data[1:])
    if elems is None:
        return [Rule(tuple(conds), Act.UNKNOWN, "verdict map", "vmap")]
    out: list[Rule] = []
    for pair in elems:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], dict):
            return [Rule(tuple(conds), Act.UNKNOWN, "verdict map element", "vmap")]
        k, verdict = pair
        key_conds = _match(ctx, {"op": "==", "left": val.get("key"), "right": k})
        sub = _rule(ctx, [verdict])[0]
        text = " ".join([*words, *(c.text for c in key_conds if c.text), sub.text])
        out.append(Rule((*conds, *key_conds), sub.action, sub.target, text))
    return out


# ---- matches -------------------------------------------------------------------------------


def _match(ctx: _Ctx, m: Json) -> list[Cond]:
    if not isinstance(m, dict):
        return [Unknown(f"match {m!r}")]
    op, left, right = str(m.get("op", "==")), m.get("left"), m.get("right")
    neg = op == "!="
    text = f"{_expr_text(left)} {'' if op in ('==', 'in') else op + ' '}{_expr_text(right)}"
    if isinstance(left, dict) and len(left) == 1:
        kind, body = next(iter(left.items()))
        if kind == "payload" and isinstance(body, dict):
            return _payload(ctx, str(body.get("protocol")), str(body.get("field")), op, right, text)
        if kind == "meta" and isinstance(body, dict):
            return [_meta(str(body.get("key")), op, right, text)]
        if (
            kind == "ct"
            and isinstance(body, dict)
            and body.get("key") == "state"
            and op in ("==", "!=", "in")
        ):
            return [CtState(frozenset(_strings(right)), neg, text)]
        if (
            kind == "fib"
            and isinstance(body, dict)
            and body.get("result") == "type"
            and ("daddr" in _strings(body.get("flags")))
            and op in ("==", "!=", "in")
        ):
            # the destination of a packet for a local listener is always of type "local"
            return [Const(("local" in _strings(right)) != neg, text)]
    # anything else: keep its protocol dependency (tcp flags imply tcp), the rest is unknown
    protos = _payload_protocols(left)
    l4 = (protos - {"ip", "ip6", "th", "ether", "vlan", "arp"}) | (
        TRANSPORT if "th" in protos else set()
    )
    deps: list[Cond] = [L4(frozenset(l4))] if l4 else []
    return [*deps, Unknown(text)]


def _meta(key: str, op: str, right: Json, text: str) -> Cond:
    neg = op == "!="
    if key in ("iifname", "iif") and op in ("==", "!="):
        return Iface(tuple(_strings(right)), neg, text)
    if key == "l4proto" and op in ("==", "!="):
        return L4(frozenset(_protos(right)), neg, text)
    if key == "nfproto" and op in ("==", "!="):
        fams = {4 if s == "ipv4" else 6 for s in _strings(right) if s in ("ipv4", "ipv6")}
        return Family(frozenset(fams), neg, text)
    if key == "protocol" and op in ("==", "!="):
        fams = {4 if s == "ip" else 6 for s in _strings(right) if s in ("ip", "ip6")}
        return Family(frozenset(fams), neg, text) if fams else Unknown(text)
    if key == "pkttype" and op in ("==", "!="):
        return Const(("host" in _strings(right)) != neg, text)
    return Unknown(text)


def _payload(ctx: _Ctx, proto: str, fld: str, op: str, right: Json, text: str) -> list[Cond]:
    neg = op == "!="
    if proto in TRANSPORT or proto == "th":
        l4 = L4(frozenset(TRANSPORT if proto == "th" else {proto}))
        if fld == "dport":
            ranges = _port_ranges(ctx, op, right)
            return [l4, DPort(ranges, neg, text) if ranges is not None else Unknown(text)]
        if fld == "sport":
            return [l4, Source("from source port " + _expr_text(right), neg, text)]
        return [l4, Unknown(text)]
    if proto in ("ip", "ip6"):
        fam = Family(frozenset({4 if proto == "ip" else 6}))
        if fld in ("protocol", "nexthdr") and op in ("==", "!="):
            return [fam, L4(frozenset(_protos(right)), neg, text)]
        if fld == "saddr":
            return [fam, _saddr(ctx, right, neg, text)]
        if fld == "daddr":
            return [fam, _daddr(right, neg, text)]
        return [fam, Unknown(text)]
    if proto in ("icmp", "icmpv6", "igmp", "esp", "ah"):
        return [L4(frozenset({proto}))]  # never tcp/udp: the rule cannot match
    if proto == "ether" and fld == "saddr":
        return [Source("from MAC " + _expr_text(right), neg, text)]
    return [Unknown(text)]


def _saddr(ctx: _Ctx, right: Json, neg: bool, text: str) -> Cond:
    nets = _networks(ctx, right)
    if nets is not None:
        if any(n.prefixlen == 0 for n in nets):
            return Const(not neg, text)
        if all(n.is_loopback for n in nets):
            return Const(neg, text)  # outside sources are never loopback
    return Source("from " + _set_label(ctx, right), neg, text)


def _daddr(right: Json, neg: bool, text: str) -> Cond:
    nets = _networks(None, right)
    if nets and all(n.is_multicast or str(n) == "255.255.255.255/32" for n in nets):
        return Const(neg, text)  # a unicast listener is not a multicast/broadcast address
    if nets and any(n.prefixlen == 0 for n in nets):
        return Const(not neg, text)
    return Unknown(text)


Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(ctx: _Ctx | None, right: Json) -> list[Net] | None:
    elems: list[Json]
    if isinstance(right, str) and right.startswith("@"):
        found = ctx.set_elems(right[1:]) if ctx else None
        if found is None:
            return None
        elems = found
    elif isinstance(right, dict) and isinstance(right.get("set"), list):
        elems = right["set"]
    else:
        elems = [right]
    out: list[Net] = []
    for e in elems:
        if isinstance(e, dict) and "elem" in e and isinstance(e["elem"], dict):
            e = e["elem"].get("val")  # noqa: PLW2901
        try:
            if isinstance(e, str):
                out.append(ipaddress.ip_network(e, strict=False))
            elif isinstance(e, dict) and isinstance(e.get("prefix"), dict):
                p = e["prefix"]
                out.append(ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}", strict=False))
            else:
                return None  # ranges and the like: label only
        except ValueError:
            return None
    return out


def _set_label(ctx: _Ctx, right: Json) -> str:
    if isinstance(right, str) and right.startswith("@"):
        elems = ctx.set_elems(right[1:])
        if elems is None:
            return f"set {right}"
        shown = ", ".join(_expr_text(e) for e in elems[:MAX_SHOWN])
        more = f", … {len(elems)} in all" if len(elems) > MAX_SHOWN else ""
        return f"set {right} {{{shown}{more}}}"
    return _expr_text(right)


def _port_ranges(ctx: _Ctx, op: str, right: Json) -> PortRanges | None:
    if op in ("<", "<=", ">", ">="):
        if not isinstance(right, int):
            return None
        return {
            "<": ((0, right - 1),),
            "<=": ((0, right),),
            ">": ((right + 1, 65535),),
            ">=": ((right, 65535),),
        }[op]
    elems: list[Json]
    if isinstance(right, str) and right.startswith("@"):
        found = ctx.set_elems(right[1:])
        if found is None:
            return None
        elems = found
    elif isinstance(right, dict) and isinstance(right.get("set"), list):
        elems = right["set"]
    else:
        elems = [right]
    out: list[tuple[int, int]] = []
    for e in elems:
        if isinstance(e, dict) and isinstance(e.get("elem"), dict):
            e = e["elem"].get("val")  # noqa: PLW2901
        if isinstance(e, int):
            out.append((e, e))
        elif isinstance(e, dict) and isinstance(e.get("range"), list) and len(e["range"]) == 2:
            lo, hi = e["range"]
            if not isinstance(lo, int) or not isinstance(hi, int):
                return None
            out.append((lo, hi))
        elif isinstance(e, str) and e.isdigit():
            out.append((int(e), int(e)))
        else:
            return None
    return tuple(out)


BARE_META = {"iif", "iifname", "oif", "oifname"}
PROTO_NUMBERS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 33: "dccp"}


def _protos(right: Json) -> set[str]:
    out: set[str] = set()
    for v in _values(right):
        if isinstance(v, int):
            out.add(PROTO_NUMBERS.get(v, str(v)))
        else:
            out.add(str(v))
    return out


def _values(right: Json) -> list[Json]:
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return list(right["set"])
    if isinstance(right, list):
        return list(right)
    return [right]


def _strings(right: Json) -> list[str]:
    return [str(v) for v in _values(right)]


def _payload_protocols(expr: Json) -> set[str]:
    found: set[str] = set()
    if isinstance(expr, dict):
        if isinstance(expr.get("payload"), dict):
            found.add(str(expr["payload"].get("protocol")))
        for v in expr.values():
            found |= _payload_protocols(v)
    elif isinstance(expr, list):
        for v in expr:
            found |= _payload_protocols(v)
    return found


def _expr_text(e: Json) -> str:
    """A short nft-like rendering of an expression, for reasons (not re-parseable)."""
    if isinstance(e, dict) and len(e) == 1:
        k, v = next(iter(e.items()))
        if k == "payload" and isinstance(v, dict):
            return f"{v.get('protocol')} {v.get('field')}"
        if k == "meta" and isinstance(v, dict) and v.get("key") in BARE_META:
            return str(v.get("key"))
        if k in ("meta", "ct") and isinstance(v, dict):
            return f"{k} {v.get('key')}"
        if k == "set" and isinstance(v, list):
            return "{" + ", ".join(_expr_text(x) for x in v) + "}"
        if k == "range" and isinstance(v, list) and len(v) == 2:
            return f"{_expr_text(v[0])}-{_expr_text(v[1])}"
        if k == "prefix" and isinstance(v, dict):
            return f"{v.get('addr')}/{v.get('len')}"
        if k == "elem" and isinstance(v, dict):
            return _expr_text(v.get("val"))
        if k == "concat" and isinstance(v, list):
            return " . ".join(_expr_text(x) for x in v)
        if k == "&" and isinstance(v, list):
            return " & ".join(_expr_text(x) for x in v)
        return str(k)
    if isinstance(e, list):
        return ",".join(_expr_text(x) for x in e)
    if isinstance(e, str):
        return str(e)
    return json.dumps(e)
