"""ufw: its state from `ufw status verbose` (for display); its rules from iptables-save.

ufw keeps no rules of its own at run time: it writes iptables chains (ufw-before-input,
ufw-user-input, …). The decision therefore walks iptables-save output; this module reads the
status text that says whether ufw is on and what its defaults are, so reports can quote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class UfwStatus:
    active: bool
    default_incoming: str | None  # "deny", "allow", "reject"; None when not shown
    logging: str | None
    rules: tuple[str, ...]  # the rule lines as ufw prints them ("22/tcp  ALLOW IN  Anywhere")


def parse_ufw_status(text: str) -> UfwStatus:
    """Parse `ufw status verbose` (or plain `ufw status`) output. Never raises: text that is
    not ufw output reads as inactive with no rules."""
    active = bool(re.search(r"^Status:\s*active\b", text, re.MULTILINE))
    m = re.search(r"^Default:\s*(\w+)\s*\(incoming\)", text, re.MULTILINE)
    lm = re.search(r"^Logging:\s*(.+)$", text, re.MULTILINE)
    rules: list[str] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^-+\s+-+", line):
            in_table = True
            continue
        if in_table and line.strip():
            rules.append(re.sub(r"\s{2,}", "  ", line.strip()))
    return UfwStatus(
        active, m.group(1) if m else None, lm.group(1).strip() if lm else None, tuple(rules)
    )


def has_ufw_chains(iptables_save: str) -> bool:
    """True when iptables-save output holds the chains ufw generates."""
    return bool(re.search(r"^:ufw6?-user-input ", iptables_save, re.MULTILINE))
