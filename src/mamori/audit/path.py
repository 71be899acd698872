"""The joined verdict: who can reach each listener, from the inside and outside views together.

Pure (no I/O): ``join_paths`` takes the listeners with the host firewall's answer per address
family, the router's view (None: not read), the outside probe's results and this host's
addresses, and walks, per listener and family, the chain bind → host firewall → router
(mapping / NAT / CGNAT) or IPv6 path → outside result. The resulting ``Reach``:

- ``internet``: the outside probe connected (proven), or a router mapping points at the
  listener / the host has a public address, and nothing known blocks it;
- ``lan``: the LAN reaches it, the internet does not (no mapping, CGNAT, double NAT, no global
  IPv6 address, or the outside probe was refused/dropped);
- ``host``: this machine only (loopback, or the host firewall blocks it);
- ``undetermined``: a piece is missing, and ``missing`` names it.

The outside result wins over every inference; when it contradicts the host firewall
("blocked" but the probe got in) the verdict carries a contradiction note.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mamori.model import Proto
from mamori.model.audit import FirewallDecision, Listener, Scope, Verdict
from mamori.model.path import (
    NatKind,
    OutsideResult,
    OutsideState,
    PathReport,
    PathStep,
    PathVerdict,
    PortMapping,
    Reach,
    RouterView,
)
from mamori.model.path_json import (
    CGNAT_NOTE,
    CONTRADICTION,
    NAT_HIDES,
    NO_PUBLIC_NOTE,
    STATIC_FORWARD,
    mapping_words,
)

_RANK = {Reach.HOST: 0, Reach.LAN: 1, Reach.UNDETERMINED: 2, Reach.INTERNET: 3}


@dataclass(frozen=True)
class Inside:
    """One listener and the host firewall's answer for it, per address family it serves."""

    listener: Listener
    firewall: Mapping[int, FirewallDecision | None]


@dataclass(frozen=True)
class HostAddresses:
    """This host's own addresses: IPv4 (any), IPv6 (address, "global" | "ula")."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[tuple[str, str], ...] = ()


def families(listener: Listener, v6only: bool = False) -> tuple[int, ...]:
    """The families a listener serves: "::" also takes IPv4 unless the socket is v6-only."""
    address = listener.address.split("%", 1)[0]
    if address in ("::", "*"):
        return (6,) if v6only else (4, 6)
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return (4,)
    return (ip.version,)


def _firewall_step(d: FirewallDecision | None) -> tuple[PathStep, bool | None]:
    """The host-firewall step and whether it blocks (None: not known)."""
    if d is None:
        return PathStep("host-firewall", "unknown", "no firewall backend could be read"), None
    if d.verdict is Verdict.BLOCKED:
        return PathStep("host-firewall", "blocked", f"{d.backend}: {d.reason}"), True
    if d.verdict is Verdict.UNDETERMINED:
        return PathStep("host-firewall", "unknown", f"{d.backend}: {d.reason}"), None
    only = f" (only {', '.join(d.only_from)})" if d.only_from else ""
    return PathStep("host-firewall", "open", f"{d.backend}: {d.reason}{only}"), False


def _outside_state(outside: Sequence[OutsideResult], family: int, proto: Proto,
                   port: int) -> tuple[OutsideState | None, str]:
    for r in outside:
        if r.family != family:
            continue
        for p in r.ports:
            if p.proto is proto and p.port == port:
                seen = f" at {r.seen_address}" if r.seen_address else ""
                why = f": {p.reason}" if p.reason else ""
                text = f"{r.service}{seen} (check {r.check_id[:12]}): {p.state.value}{why}"
                return (None if p.state is OutsideState.NOT_TESTED else p.state), text
        if r.error:
            return None, f"{r.service}: not tested: {r.error}"
        return None, f"{r.service}: not tested: port not in the result"
    return None, "not tested: no outside probe for this family (--outside URL)"


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global and not (isinstance(ip, ipaddress.IPv4Address)
                                 and ip in ipaddress.IPv4Network("100.64.0.0/10"))


def _mapping_for(router: RouterView | None, lst: Listener,
                 own_v4: Iterable[str]) -> PortMapping | None:
    if router is None:
        return None
    own = set(own_v4)
    bound = lst.address.split("%", 1)[0]
    for m in router.mappings:
        if m.proto is not lst.proto or m.internal_port != lst.port or not m.enabled:
            continue
        if m.internal_client == bound or (lst.scope is Scope.ALL and m.internal_client in own):
            return m
    return None


def seen_as(router: RouterView, outside: Sequence[OutsideResult]) -> str:
    """"; the internet sees this line as X …" when the outside probe saw the request come
    from an address other than the router's external one (or the router told none); ""."""
    seen = next((r.seen_address for r in outside if r.family == 4 and r.seen_address), None)
    if seen is None or seen == router.external_address:
        return ""
    if not router.external_address:
        return f"; the internet sees this line as {seen} (the router told no external address)"
    return (f"; the internet sees this line as {seen}, not as the router's external address "
            f"{router.external_address}: another NAT or another way out")


def _ipv4_path(lst: Listener, router: RouterView | None, addrs: HostAddresses,
               outside: Sequence[OutsideResult] = ()
               ) -> tuple[list[PathStep], Reach, str, PortMapping | None, str]:
    """(steps, reach inferred before the outside result, missing, mapping, note)."""
    bound = lst.address.split("%", 1)[0]
    public = [a for a in addrs.ipv4 if _is_public(a)] if lst.scope is Scope.ALL else (
        [bound] if _is_public(bound) else [])
    if public:
        return ([PathStep("nat", "public", f"this host has the public address {public[0]}")],
                Reach.INTERNET, "", None, "")
    if router is None or not router.found:
        why = (router.error if router is not None and router.error else "no router answered")
        return ([PathStep("router", "unknown", why)], Reach.UNDETERMINED,
                f"{why} and no outside probe", None, "")
    ext = router.external_address or "unknown"
    mapping = _mapping_for(router, lst, addrs.ipv4)
    said = (mapping_words(mapping) if mapping else
            f"{router.protocol or 'router'} at {router.gateway}: no mapping to "
            f"{lst.proto.value}/{lst.port} on this host ({len(router.mappings)} mappings read"
            f"{', table cut' if router.mappings_truncated else ''})")
    steps = [PathStep("router", "mapped" if mapping else "no-mapping",
                      said + seen_as(router, outside))]
    if router.nat is NatKind.NO_PUBLIC:
        steps.append(PathStep("nat", router.nat.value, NO_PUBLIC_NOTE))
        return steps, Reach.LAN, "", mapping, NO_PUBLIC_NOTE
    if router.nat is NatKind.CGNAT:
        steps.append(PathStep("nat", "cgnat", f"external address {ext} is in 100.64.0.0/10: "
                                              f"{CGNAT_NOTE}"))
        return steps, Reach.LAN, "", mapping, CGNAT_NOTE
    if router.nat is NatKind.PRIVATE:
        steps.append(PathStep("nat", "double-nat", f"external address {ext} is not public: "
                                                   "another NAT stands upstream"))
        return steps, Reach.LAN, "", mapping, ""
    steps.append(PathStep("nat", router.nat.value, f"external address {ext}"))
    if mapping is not None:
        return steps, Reach.INTERNET, "", mapping, ""
    if router.mappings_truncated:
        return steps, Reach.UNDETERMINED, "the router's mapping table was cut", None, ""
    return steps, Reach.LAN, "", None, ""


def _ipv6_path(lst: Listener, addrs: HostAddresses) -> tuple[list[PathStep], Reach, str]:
    bound = lst.address.split("%", 1)[0]
    if lst.scope is Scope.ALL:
        globals_ = [a for a, k in addrs.ipv6 if k == "global"]
    else:
        globals_ = [bound] if _is_public(bound) else []
    if not globals_:
        ula = [a for a, k in addrs.ipv6 if k == "ula"]
        detail = ("no global IPv6 address" + (f" (ULA {ula[0]} only: site-local)" if ula else ""))
        return [PathStep("ipv6", "no-global-address", detail)], Reach.LAN, ""
    return ([PathStep("ipv6", "global-address",
                      f"{globals_[0]} is a global address: no NAT on IPv6; only a firewall "
                      "stops it (the router's is known only from an outside probe)")],
            Reach.UNDETERMINED, "the router's IPv6 firewall: no outside probe over IPv6")


def _one(inside: Inside, family: int, router: RouterView | None,
         outside: Sequence[OutsideResult], addrs: HostAddresses) -> PathVerdict:
    lst = inside.listener
    bind = PathStep("bind", lst.scope.value, f"{lst.process or 'unknown process'}"
                    f"{f' (pid {lst.pid})' if lst.pid else ''} on {lst.address}:{lst.port}")
    base = PathVerdict(lst.proto, lst.address, lst.port, family, Reach.HOST, steps=(bind,))
    if lst.scope is Scope.LOOPBACK:
        return base
    fw_step, blocks = _firewall_step(inside.firewall.get(family))
    steps = [bind, fw_step]
    mapping: PortMapping | None = None
    note = ""
    if family == 4:
        more, reach, missing, mapping, note = _ipv4_path(lst, router, addrs, outside)
    else:
        more, reach, missing = _ipv6_path(lst, addrs)
    steps += more
    state, seen = _outside_state(outside, family, lst.proto, lst.port)
    steps.append(PathStep("outside", state.value if state else "not-tested", seen))
    notes: list[str] = [note] if note else []
    if blocks:
        reach, missing = Reach.HOST, ""
    if reach is Reach.UNDETERMINED and blocks is None and missing == "":
        missing = "the host firewall verdict"
    if state is OutsideState.OPEN:
        if blocks:
            notes.append(f"{CONTRADICTION}: the host firewall reading says blocked "
                         f"({fw_step.detail}) but the outside probe connected: the reading "
                         "is wrong or incomplete")
        if any(s.verdict == "no-mapping" for s in steps):
            notes.append(f"{STATIC_FORWARD}: reachable although the router lists no mapping "
                         "for it over UPnP: a port forward set in the router itself, or a "
                         "DMZ host")
        return PathVerdict(lst.proto, lst.address, lst.port, family, Reach.INTERNET,
                           tuple(steps), "", mapping, True, tuple(notes))
    if state in (OutsideState.CLOSED, OutsideState.FILTERED):
        if mapping is not None and reach is Reach.INTERNET:
            notes.append(f"the router maps a port to it but the outside probe was "
                         f"{state.value}: something on the path stops it")
        reach = Reach.HOST if blocks else Reach.LAN
        missing = ""
    if reach is Reach.INTERNET and blocks is None and fw_step.verdict == "unknown":
        notes.append("unless the host firewall blocks it (its verdict is undetermined)")
    return PathVerdict(lst.proto, lst.address, lst.port, family, reach, tuple(steps),
                       missing if reach is Reach.UNDETERMINED else "", mapping, False,
                       tuple(notes))


def _closed_v4(v4: PathVerdict) -> bool:
    """The IPv4 path is closed by the router (no mapping, CGNAT, double NAT, or the outside
    probe), not by the host firewall."""
    return v4.reach is Reach.LAN and any(
        s.name in ("router", "nat", "outside") and s.verdict in (
            "no-mapping", "cgnat", "double-nat", NatKind.NO_PUBLIC.value, "closed", "filtered")
        for s in v4.steps)


def join_paths(insides: Sequence[Inside], router: RouterView | None,
               outside: Sequence[OutsideResult], addrs: HostAddresses,
               v6only: frozenset[tuple[Proto, int]] = frozenset()) -> PathReport:
    """One verdict per listener and family, the mappings that point elsewhere, and those
    that point at this host where nothing listens."""
    verdicts: list[PathVerdict] = []
    for inside in insides:
        lst = inside.listener
        fams = families(lst, (lst.proto, lst.port) in v6only)
        verdicts += [_one(inside, f, router, outside, addrs) for f in fams]
    # per (proto, port): one socket on "::" for both families, or an IPv4 and an IPv6 socket
    v4_closed = {(v.proto, v.port) for v in verdicts if v.family == 4 and _closed_v4(v)}
    for i, v in enumerate(verdicts):
        if (v.family == 6 and (v.proto, v.port) in v4_closed
                and v.reach in (Reach.INTERNET, Reach.UNDETERMINED)):
            verdicts[i] = PathVerdict(v.proto, v.address, v.port, 6, v.reach, v.steps,
                                      v.missing, v.mapping, v.proven,
                                      (*v.notes, f"{NAT_HIDES}: IPv6 exposes what NAT hides: "
                                       "IPv4 is closed at the router, IPv6 is not known to "
                                       "be"))
    other: list[PortMapping] = []
    unmatched: list[PortMapping] = []
    own = set(addrs.ipv4)
    used = {v.mapping for v in verdicts if v.mapping is not None}
    for m in router.mappings if router is not None else ():
        if m in used:
            continue
        if m.internal_client in own:
            unmatched.append(m)
        else:
            other.append(m)
    return PathReport(verdicts=tuple(verdicts), router=router, outside=tuple(outside),
                      ipv6=addrs.ipv6, other_hosts=tuple(other), unmatched=tuple(unmatched))


def worst_reach(verdicts: Iterable[PathVerdict]) -> Reach | None:
    """The widest reach among ``verdicts`` (internet > undetermined > lan > host)."""
    found = [v.reach for v in verdicts]
    return max(found, key=_RANK.__getitem__) if found else None


def chain_text(v: PathVerdict) -> str:
    """"bind all → host-firewall open → router mapped → nat public → outside open"."""
    return " → ".join(f"{s.name} {s.verdict}" for s in v.steps)
