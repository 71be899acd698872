"""Which tool tells the truth about which nf_tables table. Pure.

iptables-nft keeps its rules in ordinary nf_tables tables (ip/ip6 filter, nat, mangle, raw,
security), so both `iptables-save` and `nft -j list ruleset` show them. iptables-save writes
them in iptables' own words (better reasons, and the matches nft only shows as opaque "xt"
expressions), but only while the table holds what iptables can express. A table written or
extended by hand with nft is different: iptables-save says "incompatible base-chains" and
prints empty built-in chains instead, or, worse, prints a rule whose set it cannot show as a
rule without it (`tcp dport {22, 443} accept` as `-p tcp -j ACCEPT`). Such tables are read
from nft; an "xt" rule inside them is taken from iptables-save's line for the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

TableKey = tuple[str, str]  # (nft family, table name), e.g. ("ip", "filter")

# Expressions only nft writes: iptables-nft never puts sets, maps or verdict maps in a rule.
_NATIVE_ONLY = frozenset({"set", "vmap", "map"})
_NATIVE_OBJECTS = frozenset({"set", "map", "flowtable"})


def nft_family(family: int) -> str:
    """The nft family of iptables-save (4) / ip6tables-save (6) tables."""
    return "ip6" if family == 6 else "ip"


def beyond_iptables(nft_text: str, owned: Collection[TableKey]) -> set[TableKey]:
    """Of the `owned` tables (those iptables-save lists), the ones whose nft JSON holds
    something iptables cannot express: a named set or map, an anonymous set, a verdict map,
    or a set reference. Text that is not nft JSON gives the empty set (the nft parser reports
    it)."""
    try:
        items = json.loads(nft_text).get("nftables", [])
    except (ValueError, AttributeError):
        return set()
    found: set[TableKey] = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict):
            continue
        key = (str(body.get("family")), str(body.get("table", body.get("name"))))
        if key not in owned:
            continue
        if kind in _NATIVE_OBJECTS or (kind == "rule" and _native_only(body.get("expr"))):
            found.add(key)
    return found


def _native_only(expr: Any) -> bool:
    if isinstance(expr, dict):
        if "xt" in expr:
            return False
        return any(k in _NATIVE_ONLY or _native_only(v) for k, v in expr.items())
    if isinstance(expr, list):
        return any(_native_only(v) for v in expr)
    return isinstance(expr, str) and expr.startswith("@")


def split_save(text: str, tables: Iterable[str]) -> tuple[str, str]:
    """iptables-save `text` cut in two: (without `tables`, only `tables`). A table's section
    runs from its `*name` line to its COMMIT; comment lines go with the part they stand in."""
    moved = set(tables)
    keep: list[str] = []
    take: list[str] = []
    into = keep
    for line in text.splitlines(keepends=True):
        if line.startswith("*"):
            into = take if line[1:].strip() in moved else keep
        into.append(line)
        if line.strip() == "COMMIT":
            into = keep
    return "".join(keep), "".join(take)
