"""Linux firewall evaluation: read the active ruleset once, then decide each listener.

    state = detect(SystemRunner())            # nft / iptables-save / ufw / firewalld
    decide(state, Proto.TCP, 22, 4)           # -> FirewallDecision

Every command goes through the CommandRunner seam, so detection replays from recordings.
"""

from __future__ import annotations

from dataclasses import dataclass

from mamori.audit.firewall.evaluate import Rule, Ruleset, decide_ruleset, merge
from mamori.audit.firewall.firewalld import (
    FirewalldState,
    decide_firewalld,
    parse_service_info,
    parse_zones,
)
from mamori.audit.firewall.iptables import IptablesParseError, parse_iptables_save, save_info
from mamori.audit.firewall.nftables import NftParseError, parse_nft_json
from mamori.audit.firewall.tables import beyond_iptables, nft_family, split_save
from mamori.audit.firewall.ufw import UfwStatus, has_ufw_chains, parse_ufw_status
from mamori.audit.runner import CommandResult, CommandRunner
from mamori.model import Proto
from mamori.model.audit import FirewallDecision, Verdict

__all__ = ["FirewallState", "decide", "detect", "detect_and_decide"]

MAX_SERVICES = 64  # firewall-cmd --info-service calls per detection


@dataclass(frozen=True)
class FirewallState:
    """What detection found: the rules to decide with, or why there are none to read."""

    backend: str  # "nftables", "iptables", "ufw", "firewalld", "+"-joined, or "none"
    rules: Ruleset | FirewalldState | None
    problem: str | None = None  # set when the ruleset could not be read
    ufw: UfwStatus | None = None  # for display, when ufw is installed
    commands: tuple[str, ...] = ()  # what was run, for evidence


def _failed(r: CommandResult) -> str:
    why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[0]
    return f"{' '.join(r.argv)}: {why[:200]}"


def _firewalld(runner: CommandRunner, ran: list[str]) -> FirewallState | None:
    state = runner.run(["firewall-cmd", "--state"])
    ran.append("firewall-cmd --state")
    if not state.ok or state.stdout.strip() != "running":
        return None
    listing = runner.run(["firewall-cmd", "--list-all-zones"])
    ran.append("firewall-cmd --list-all-zones")
    if not listing.ok:
        return FirewallState("firewalld", None, _failed(listing), commands=tuple(ran))
    zones = parse_zones(listing.stdout)
    wanted = sorted(
        {s for z in zones if z.active or z.default for s in z.services}
        | {r.service for z in zones for r in z.rich if r.service}
    )
    services = {}
    for name in wanted[:MAX_SERVICES]:
        info = runner.run(["firewall-cmd", f"--info-service={name}"])
        ran.append(f"firewall-cmd --info-service={name}")
        if info.ok:
            services[name] = parse_service_info(info.stdout)
    return FirewallState("firewalld", FirewalldState(zones, services), commands=tuple(ran))


def detect(runner: CommandRunner) -> FirewallState:
    """Read the active firewall through `runner`. Never raises: a ruleset that cannot be read
    (not root, tool missing, output not understood) comes back with `problem` set.

    firewalld, when running, is decided from its zones. Otherwise the nftables ruleset and
    the iptables (and ip6tables) rules are read together, since the kernel runs both: tables
    that iptables-nft manages are taken from iptables-save, the rest from `nft -j`, and so
    are iptables' own tables that hold what iptables-save cannot show (tables.py).
    """
    ran: list[str] = []
    fwd = _firewalld(runner, ran)
    if fwd is not None:
        return fwd
    problems: list[str] = []
    parts: list[Ruleset] = []
    ufw_res = runner.run(["ufw", "status", "verbose"])
    ran.append("ufw status verbose")
    ufw = parse_ufw_status(ufw_res.stdout) if ufw_res.ok else None
    readable, owned, saves = _read_iptables(runner, ran, problems)
    nft = runner.run(["nft", "-j", "list", "ruleset"])
    ran.append("nft -j list ruleset")
    # Tables iptables-save cannot show faithfully are read from nft (see tables.py).
    native = {
        (nft_family(family), t) for family, text in saves for t in save_info(text).incompatible
    } | (beyond_iptables(nft.stdout, owned) if nft.ok else set())
    if native and not nft.ok:  # what iptables-save prints for them is made up: no reading
        why = "not installed" if nft.missing else _failed(nft)
        tables = ", ".join(" ".join(t) for t in sorted(native))
        problems.append(f"iptables-save cannot show table {tables} and nft could not read "
                        f"it ({why})")
    xt_rules: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
    for family, saved in saves:
        backend = "ufw" if ufw is not None and ufw.active and has_ufw_chains(saved) else "iptables"
        variant = save_info(saved).variant
        text = saved
        if variant == "nf_tables" and nft.ok:
            text, moved = split_save(saved, (t for f, t in native if f == nft_family(family)))
            xt_rules.update(_saved_chains(moved, family))
        try:
            rs = parse_iptables_save(text, family, backend)
        except IptablesParseError as exc:
            problems.append(f"iptables-save (IPv{family}): {exc}")
            continue
        parts.append(_retag(rs, "legacy ") if variant == "legacy" else rs)
    if nft.ok:
        readable += 1
        try:
            parts.insert(0, parse_nft_json(nft.stdout, owned - native, xt_rules))
        except NftParseError as exc:
            problems.append(f"nft -j list ruleset: {exc}")
    elif not nft.missing:
        problems.append(_failed(nft))
    if problems:
        return FirewallState("none", None, "; ".join(problems), ufw, tuple(ran))
    if readable == 0:
        return FirewallState(
            "none",
            None,
            "neither nft nor iptables-save is installed: cannot read the ruleset",
            ufw,
            tuple(ran),
        )
    parts = [p for p in parts if not p.empty]
    if not parts:
        return FirewallState("none", Ruleset("none", (), {}), None, ufw, tuple(ran))
    rs = merge(parts)
    return FirewallState(rs.backend, rs, None, ufw, tuple(ran))


def _saved_chains(text: str, family: int) -> dict[tuple[str, str, str], tuple[Rule, ...]]:
    """The rules of iptables-save `text` by (nft family, table, chain); {} when unparsable."""
    try:
        rs = parse_iptables_save(text, family)
    except IptablesParseError:
        return {}
    prefix = "ip6tables " if family == 6 else "iptables "
    return {
        (nft_family(family), table.removeprefix(prefix), name): chain.rules
        for table, chains in rs.chains.items()
        for name, chain in chains.items()
    }


def _read_iptables(
    runner: CommandRunner, ran: list[str], problems: list[str]
) -> tuple[int, set[tuple[str, str]], list[tuple[int, str]]]:
    """Run the iptables-save family: (how many answered, nft tables they own, their texts)."""
    readable = 0
    skip: set[tuple[str, str]] = set()
    saves: list[tuple[int, str]] = []
    plain: dict[int, str] = {}  # family -> variant of the plain iptables-save
    for family, argv in (
        (4, ["iptables-save"]),
        (6, ["ip6tables-save"]),
        (4, ["iptables-legacy-save"]),
        (6, ["ip6tables-legacy-save"]),
    ):
        legacy_cmd = "legacy" in argv[0]
        if legacy_cmd and plain.get(family, "nf_tables") != "nf_tables":
            continue  # the plain command already read the legacy tables
        res = runner.run(argv)
        ran.append(argv[0])
        if res.missing:
            continue
        if not res.ok:
            if not legacy_cmd:
                problems.append(_failed(res))
            continue
        readable += 1
        info = save_info(res.stdout)
        if not legacy_cmd:
            plain[family] = info.variant or "nf_tables"
        if not info.tables:
            continue
        if info.variant == "nf_tables":
            skip |= {(nft_family(family), t) for t in info.tables}
        saves.append((family, res.stdout))
    return readable, skip, saves


def _retag(rs: Ruleset, tag: str) -> Ruleset:
    """Legacy tables live apart from the nf_tables ones: keep their keys apart too."""
    chains = {f"{tag}{k}": v for k, v in rs.chains.items()}
    base = tuple(
        type(b)(f"{tag}{b.table}", b.name, b.stage, b.priority, b.policy, b.families)
        for b in rs.base
    )
    return Ruleset(rs.backend, base, chains, rs.notes)


def decide(
    state: FirewallState, proto: Proto, port: int, family: int, iface: str | None = None
) -> FirewallDecision:
    """Decide a NEW inbound connection from a non-local source to local (proto, port).

    `family` is 4 or 6; `iface` the interface it arrives on (None: any). Returns UNDETERMINED
    with the reason when the ruleset could not be read; never raises.
    """
    if state.rules is None:
        return FirewallDecision(
            Verdict.UNDETERMINED, state.backend, f"ruleset unreadable: {state.problem}"
        )
    if isinstance(state.rules, FirewalldState):
        return decide_firewalld(state.rules, proto, port, family, iface)
    return decide_ruleset(state.rules, proto, port, family, iface)


def detect_and_decide(
    runner: CommandRunner, proto: Proto, port: int, family: int, iface: str | None = None
) -> FirewallDecision:
    """detect() then decide() for one listener (call detect() once for many)."""
    return decide(detect(runner), proto, port, family, iface)
