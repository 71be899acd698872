"""Records of the inside view (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mamori.model import Proto


class Scope(StrEnum):
    """Who can reach a listener, judged from its bind address alone."""

    LOOPBACK = "loopback"  # 127.0.0.0/8, ::1: this machine only
    INTERFACE = "interface"  # one address of one interface
    ALL = "all"  # 0.0.0.0 / :: : every interface, every address


@dataclass(frozen=True)
class Listener:
    proto: Proto
    address: str  # as bound: "0.0.0.0", "::", "127.0.0.1", "192.0.2.2", "fe80::1%eth0"
    port: int
    scope: Scope
    pid: int | None = None
    process: str | None = None
    user: str | None = None
    exe: str | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


class Verdict(StrEnum):
    ALLOWED = "allowed"  # inbound traffic from outside reaches the listener
    BLOCKED = "blocked"
    UNDETERMINED = "undetermined"  # too complex to decide: say why
    NO_FIREWALL = "no-firewall"  # nothing filters: same as allowed, said plainly


@dataclass(frozen=True)
class FirewallDecision:
    """The firewall's answer for inbound (proto, port) from a non-local source."""

    verdict: Verdict
    backend: str  # "nftables", "iptables", "ufw", "firewalld", "pf", "none"
    reason: str  # one line: the deciding rule or policy, or why it is undetermined
    rule: str | None = None  # the rule text that decided, when one did
    # ALLOWED only for these sources ("from 10.0.0.0/8", "on interface eth0"); () = anyone
    only_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditNote:
    """An inside fact worth a checklist line (sharing service, hygiene item)."""

    check_id: str  # e.g. "os-empty-passwords", "sharing-samba-guest"
    ok: bool | None  # True: fine, False: a problem, None: could not tell (say why)
    detail: str  # one line with the evidence (file, command, value)
    source: str  # the command or file read
