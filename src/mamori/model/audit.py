"""Records of the inside view (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mamori.model.base import Proto


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


@dataclass(frozen=True, slots=True)
class ListenerRecord:
    """One socket listening on this machine, as ``mamori check`` stores and reports it.

    ``firewall`` is None when the firewall was not asked (a loopback-only listener, where it
    does not matter); ``Verdict.UNDETERMINED`` with ``firewall_reason`` when it was asked and
    could not tell. ``probe_address`` is where the probes went (None: not probed, and
    ``not_probed`` says why); ``service``/``product`` are what identification named there.
    """

    proto: Proto
    address: str  # as bound: "0.0.0.0", "::", "127.0.0.1", "fe80::1%eth0"
    port: int
    scope: Scope
    pid: int | None = None
    process: str | None = None
    user: str | None = None
    exe: str | None = None
    firewall: Verdict | None = None
    firewall_backend: str = ""  # "nftables", "iptables", "ufw", "firewalld", "pf", "none"
    firewall_reason: str = ""  # the deciding rule or policy, or why it is undetermined
    firewall_rule: str | None = None  # the rule text that decided, when one did
    service: str | None = None
    product: str | None = None
    probe_address: str | None = None
    not_probed: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.address, self.proto.value, self.port)

    @property
    def exposure(self) -> tuple[int, int, int]:
        """Sort key, most exposed first: reachable from outside (loopback last), then by
        firewall verdict (allowed / no firewall, then undetermined or not asked, then
        blocked), then by scope (all interfaces before one interface)."""
        scope = self.scope.value
        rank = _VERDICT_RANK.get(self.firewall.value, 1) if self.firewall is not None else 1
        return (1 if scope == "loopback" else 0, rank, 0 if scope == "all" else 1)


# Verdict values (audit.model.Verdict) by exposure: let in first, blocked last.
_VERDICT_RANK: dict[str, int] = {"allowed": 0, "no-firewall": 0, "undetermined": 1, "blocked": 2}
