"""A firewall plan in a backend's syntax: the one place that knows every backend module.

The backend modules import the plan's records from ``plan``; this module imports the backends,
so nothing imports in a circle.
"""

from __future__ import annotations

from mamori.audit.firewall import plan_nft, plan_pf, plan_ufw
from mamori.audit.firewall.plan import Backend, FirewallPlan, RenderedRule


def rendered_rules(plan: FirewallPlan, backend: Backend) -> tuple[RenderedRule, ...]:
    """``plan``'s rules in ``backend``'s syntax, in order (no header, no frame)."""
    renderers = {
        Backend.NFTABLES: plan_nft.rules,
        Backend.UFW: plan_ufw.rules,
        Backend.PF: plan_pf.rules,
    }
    return renderers[backend](plan)


def render(plan: FirewallPlan, backend: Backend) -> str:
    """The whole ruleset (nftables script, ufw shell commands, or pf.conf text) with a comment
    above each rule saying why it is there."""
    renderers = {
        Backend.NFTABLES: plan_nft.render,
        Backend.UFW: plan_ufw.render,
        Backend.PF: plan_pf.render,
    }
    return renderers[backend](plan)


def explain(plan: FirewallPlan, backend: Backend) -> str:
    """A numbered plain-language walk through ``plan``'s rules as ``backend`` writes them."""
    lines = [f"The {backend} plan, rule by rule:"]
    for number, rule in enumerate(rendered_rules(plan, backend), start=1):
        lines.append(f"{number:2}. {rule.text.splitlines()[0]}")
        lines.append(f"    {rule.why}")
    return "\n".join(lines) + "\n"
