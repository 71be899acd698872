"""The firewall plan as pf.conf rules (macOS, OpenBSD, FreeBSD); mamori never loads them.

pf evaluates every rule and the *last* match wins (no ``quick`` here), so the file starts with
``block in all`` and each later ``pass`` opens one thing. pf is stateful: ``pass out ... keep
state`` lets replies to this machine's own connections back in.
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

ICMP4_ERRORS = "{ unreach timex paramprob }"
ICMP6_ERRORS = "{ unreach toobig timex paramprob }"
ICMP6_NDP = "{ routersol routeradv neighbrsol neighbradv }"
ICMP6_MLD = "{ listqry listenrep listendone }"


def _rule_text(plan: FirewallPlan, index: int) -> str:
    rule = plan.rules[index]
    match rule.kind:
        case RuleKind.DEFAULT_DENY:
            return "block drop in all"
        case RuleKind.ESTABLISHED:
            return "pass out all keep state"
        case RuleKind.INVALID:
            return "scrub in all"
        case RuleKind.LOOPBACK:
            return "set skip on lo0"
        case RuleKind.ICMP4_ERRORS:
            return f"pass in inet proto icmp icmp-type {ICMP4_ERRORS} keep state"
        case RuleKind.ICMP4_ECHO:
            return "pass in inet proto icmp icmp-type echoreq keep state"
        case RuleKind.ICMP6_ERRORS:
            return f"pass in inet6 proto ipv6-icmp icmp6-type {ICMP6_ERRORS} keep state"
        case RuleKind.ICMP6_NDP:
            return f"pass in inet6 proto ipv6-icmp icmp6-type {ICMP6_NDP} keep state"
        case RuleKind.ICMP6_MLD:
            return f"pass in inet6 proto ipv6-icmp from fe80::/10 icmp6-type {ICMP6_MLD} keep state"
        case RuleKind.ICMP6_ECHO:
            return "pass in inet6 proto ipv6-icmp icmp6-type echoreq keep state"
        case RuleKind.DHCP6_CLIENT:
            return "pass in inet6 proto udp to fe80::/10 port 546 keep state"
        case RuleKind.ALLOW_PORT:
            allowed = rule.allowed
            assert allowed is not None  # build_plan sets it on every ALLOW_PORT rule
            return f"pass in proto {allowed.proto} to any port {allowed.ports_text(':')} keep state"


# pf.conf wants its sections in order: options, normalisation, then filter rules.
_SECTION = {RuleKind.LOOPBACK: 0, RuleKind.INVALID: 1}


def rules(plan: FirewallPlan) -> tuple[RenderedRule, ...]:
    """pf.conf lines, one per plan rule, in the order pf.conf requires (``set`` options,
    then ``scrub``, then filter rules in the plan's order)."""
    rendered = [
        RenderedRule(rule.kind, _rule_text(plan, i), rule.why) for i, rule in enumerate(plan.rules)
    ]
    return tuple(sorted(rendered, key=lambda r: _SECTION.get(r.kind, 2)))


def render(plan: FirewallPlan) -> str:
    """The pf.conf text, each rule preceded by the reason it is there."""
    lines = [
        f"# mamori {__version__} firewall plan (pf): inbound default deny; "
        f"allowed: {allowed_summary(plan)}.",
        "# Check: pfctl -vnf FILE    Load: pfctl -f FILE && pfctl -e    (as root)",
        "# On macOS, keep Apple's own anchors by loading this from /etc/pf.conf, or append",
        "# these rules after the com.apple anchor lines there. pf has no simple rate limit",
        "# for ICMP; leave ping out with --no-ping.",
        "set block-policy drop",
        "",
    ]
    for rule in rules(plan):
        lines += comment_lines(rule.why)
        lines.append(rule.text)
        lines.append("")
    return "\n".join(lines)
