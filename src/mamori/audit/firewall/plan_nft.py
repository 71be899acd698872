"""The firewall plan as an nftables script, and applying it (the only backend mamori applies).

Everything lives in one dedicated table, ``inet mamori`` (one table for IPv4 and IPv6), so the
plan can be reloaded whole and removed with ``nft delete table inet mamori`` without touching
anybody else's tables.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mamori import __version__
from mamori.audit.firewall.plan import (
    FirewallPlan,
    RenderedRule,
    RuleKind,
    allowed_summary,
    comment_lines,
)
from mamori.audit.runner import CommandRunner

TABLE = "inet mamori"
REMOVE_COMMAND = f"nft delete table {TABLE}"

ICMP4_ERRORS = "destination-unreachable, time-exceeded, parameter-problem"
ICMP6_ERRORS = "destination-unreachable, packet-too-big, time-exceeded, parameter-problem"
ICMP6_NDP = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
ICMP6_MLD = "mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report"


def _rule_text(plan: FirewallPlan, kind: RuleKind, index: int) -> str:
    burst = plan.ping_rate * 2
    limit = f"limit rate {plan.ping_rate}/second burst {burst} packets"
    match kind:
        case RuleKind.DEFAULT_DENY:
            return "type filter hook input priority filter; policy drop;"
        case RuleKind.ESTABLISHED:
            return 'ct state established,related accept comment "replies and related"'
        case RuleKind.INVALID:
            return 'ct state invalid drop comment "invalid"'
        case RuleKind.LOOPBACK:
            return 'iif "lo" accept comment "loopback"'
        case RuleKind.ICMP4_ERRORS:
            return f'icmp type {{ {ICMP4_ERRORS} }} accept comment "ICMP errors"'
        case RuleKind.ICMP4_ECHO:
            return f'icmp type echo-request {limit} accept comment "ping, rate-limited"'
        case RuleKind.ICMP6_ERRORS:
            return f'icmpv6 type {{ {ICMP6_ERRORS} }} accept comment "ICMPv6 errors"'
        case RuleKind.ICMP6_NDP:
            return (
                f"icmpv6 type {{ {ICMP6_NDP} }} ip6 hoplimit 255 accept "
                'comment "IPv6 neighbour discovery"'
            )
        case RuleKind.ICMP6_MLD:
            return (
                f"icmpv6 type {{ {ICMP6_MLD} }} ip6 saddr fe80::/10 accept "
                'comment "IPv6 multicast listener discovery"'
            )
        case RuleKind.ICMP6_ECHO:
            return f'icmpv6 type echo-request {limit} accept comment "ping6, rate-limited"'
        case RuleKind.DHCP6_CLIENT:
            return 'ip6 daddr fe80::/64 udp dport 546 accept comment "DHCPv6 client"'
        case RuleKind.ALLOW_PORT:
            allowed = plan.rules[index].allowed
            assert allowed is not None  # build_plan sets it on every ALLOW_PORT rule
            return (
                f"{allowed.proto} dport {allowed.ports_text()} accept "
                f'comment "mamori: {allowed.label}"'
            )


def rules(plan: FirewallPlan) -> tuple[RenderedRule, ...]:
    """The input chain's statements, one per plan rule (the first is the chain's header)."""
    return tuple(
        RenderedRule(rule.kind, _rule_text(plan, rule.kind, i), rule.why)
        for i, rule in enumerate(plan.rules)
    )


def render(plan: FirewallPlan) -> str:
    """The nftables script: load with ``nft -f FILE``; loading it again replaces the table."""
    head = [
        "#!/usr/sbin/nft -f",
        f"# mamori {__version__} firewall plan (nftables): inbound default deny; "
        f"allowed: {allowed_summary(plan)}.",
        "# Check: nft -c -f FILE    Load: nft -f FILE    Remove: " + REMOVE_COMMAND,
        "# Everything is in the table inet mamori (IPv4 and IPv6). A packet must be accepted by",
        "# every input chain of every table, so this table closes ports that other tables",
        "# accept, and cannot open ports that they drop. Outbound traffic is not filtered.",
        "",
        "# Create the table if it is missing, then delete it: loading this file again",
        "# replaces the whole table in one transaction instead of adding duplicates.",
        f"table {TABLE}",
        f"delete table {TABLE}",
        "",
        f"table {TABLE} {{",
        "\tchain input {",
    ]
    body: list[str] = []
    for number, rule in enumerate(rules(plan)):
        if number:
            body.append("")
        body += comment_lines(rule.why, "\t\t# ")
        body.append(f"\t\t{rule.text}")
    return "\n".join([*head, *body, "\t}", "}"]) + "\n"


@dataclass(frozen=True)
class ApplyOutcome:
    """What ``apply_nftables`` did: ``ok`` only when the table is loaded and listed back."""

    ok: bool
    step: str  # "check", "load", "verify": the step that failed, or "verify" when all passed
    detail: str  # nft's own message on failure; the listed table on success


def apply_nftables(script: str, runner: CommandRunner, *, check_only: bool = False) -> ApplyOutcome:
    """Check ``script`` with ``nft -c -f``, then (unless ``check_only``) load it with
    ``nft -f`` and list ``table inet mamori`` back to prove it is there.

    Runs in whatever network namespace the process is in. Never raises for nft failures:
    they come back as ``ApplyOutcome(ok=False, step, nft's message)``. Raises ``OSError`` only
    when the temporary script file cannot be written.
    """
    fd, name = tempfile.mkstemp(prefix="mamori-", suffix=".nft")
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(script)
        checked = runner.run(["nft", "-c", "-f", str(path)])
        if not checked.ok:
            return ApplyOutcome(False, "check", _message(checked.stderr, checked.stdout))
        if check_only:
            return ApplyOutcome(True, "check", "")
        loaded = runner.run(["nft", "-f", str(path)])
        if not loaded.ok:
            return ApplyOutcome(False, "load", _message(loaded.stderr, loaded.stdout))
        listed = runner.run(["nft", "list", "table", *TABLE.split()])
        if not listed.ok:
            return ApplyOutcome(False, "verify", _message(listed.stderr, listed.stdout))
        return ApplyOutcome(True, "verify", listed.stdout)
    finally:
        path.unlink(missing_ok=True)


def _message(stderr: str, stdout: str) -> str:
    text = (stderr or stdout).strip()
    return text or "nft failed without a message"
