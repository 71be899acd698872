"""The firewall plan as ufw commands (a shell script the owner runs; mamori never runs it).

ufw writes the essentials itself: its stock ``before.rules`` / ``before6.rules`` accept
established/related traffic, loopback, the ICMP errors, ping, and IPv6 neighbour/router
discovery and MLD, and drop invalid packets. Those plan rules therefore become comments that
say where ufw keeps them; only the policy and the allowed ports are commands.
"""

from __future__ import annotations

from mamori import __version__
from mamori.audit.firewall.plan import (
    FirewallPlan,
    RenderedRule,
    RuleKind,
    allowed_summary,
    comment_lines,
)

_BUILT_IN = {
    RuleKind.ESTABLISHED: "# built in: ufw-before-input accepts RELATED,ESTABLISHED "
    "(/etc/ufw/before.rules, before6.rules)",
    RuleKind.INVALID: "# built in: ufw-before-input drops INVALID (/etc/ufw/before.rules)",
    RuleKind.LOOPBACK: "# built in: ufw-before-input accepts everything on lo",
    RuleKind.ICMP4_ERRORS: "# built in: destination-unreachable, time-exceeded, "
    "parameter-problem accepted (/etc/ufw/before.rules)",
    RuleKind.ICMP4_ECHO: "# built in: echo-request accepted (/etc/ufw/before.rules; ufw has "
    "no rate limit for it)",
    RuleKind.ICMP6_ERRORS: "# built in: ICMPv6 destination-unreachable, packet-too-big, "
    "time-exceeded, parameter-problem accepted (/etc/ufw/before6.rules)",
    RuleKind.ICMP6_NDP: "# built in: ICMPv6 neighbour and router discovery accepted with hop "
    "limit 255 (/etc/ufw/before6.rules)",
    RuleKind.ICMP6_MLD: "# built in: ICMPv6 MLD accepted from fe80::/10 (/etc/ufw/before6.rules)",
    RuleKind.ICMP6_ECHO: "# built in: ICMPv6 echo-request accepted (/etc/ufw/before6.rules)",
    RuleKind.DHCP6_CLIENT: "# built in: DHCPv6 client replies to fe80::/10 port 546 accepted "
    "(/etc/ufw/before6.rules)",
}
_NO_PING = (
    "# --no-ping: ufw answers ping from its before.rules; to stop that, comment out the\n"
    "# '-A ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT' line in\n"
    "# /etc/ufw/before.rules (and the echo-request line in before6.rules), then: ufw reload"
)


def _rule_text(plan: FirewallPlan, index: int) -> str:
    rule = plan.rules[index]
    if rule.kind is RuleKind.DEFAULT_DENY:
        return "ufw default deny incoming"
    if rule.kind is RuleKind.ALLOW_PORT:
        allowed = rule.allowed
        assert allowed is not None  # build_plan sets it on every ALLOW_PORT rule
        return (
            f"ufw allow {allowed.ports_text(':')}/{allowed.proto} comment 'mamori: {allowed.label}'"
        )
    return _BUILT_IN[rule.kind]


def rules(plan: FirewallPlan) -> tuple[RenderedRule, ...]:
    """One ufw command (or, for what ufw does by itself, one comment) per plan rule."""
    return tuple(
        RenderedRule(rule.kind, _rule_text(plan, i), rule.why) for i, rule in enumerate(plan.rules)
    )


def render(plan: FirewallPlan) -> str:
    """A shell script of ufw commands, each preceded by the reason it is there."""
    lines = [
        "#!/bin/sh",
        f"# mamori {__version__} firewall plan (ufw): inbound default deny; "
        f"allowed: {allowed_summary(plan)}.",
        "# Run as root. IPv6 is covered when IPV6=yes in /etc/default/ufw (the default).",
        "set -e",
        "",
        "# Start from ufw's stock rules: rules added earlier are removed (ufw keeps a backup",
        "# of them in /etc/ufw), so that exactly what follows is allowed.",
        "ufw --force reset",
        "",
    ]
    for rule in rules(plan):
        lines += comment_lines(rule.why)
        lines.append(rule.text)
        if rule.kind is RuleKind.DEFAULT_DENY:
            lines.append("# Outbound stays open: this plan is about what reaches this machine.")
            lines.append("ufw default allow outgoing")
        lines.append("")
    if not plan.ping:
        lines += [_NO_PING, ""]
    lines += [
        "# Turn the firewall on now and at every boot (--force: do not ask, even over SSH).",
        "ufw --force enable",
        "ufw status verbose",
    ]
    return "\n".join(lines) + "\n"
