"""Which adapters read this machine: Linux for real, macOS from its own commands, others not.

Returns the three readers `mamori check` needs, each bound to the real CommandRunner.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from mamori.audit.runner import CommandRunner, SystemRunner
from mamori.model.audit import AuditNote, FirewallDecision, Listener, Scope

Readers = tuple[
    Callable[[], list[Listener]],
    Callable[[Listener], FirewallDecision | None],
    Callable[[], list[AuditNote]],
]


def machine_readers(runner: CommandRunner | None = None, system: str | None = None) -> Readers:
    """(read listeners, decide a listener's firewall verdict, read the inside notes)."""
    run = runner or SystemRunner()
    name = system or platform.system()
    from mamori.audit.listeners import list_listeners

    decide = _firewall(run, name)

    def notes() -> list[AuditNote]:
        from mamori.audit.hygiene import hygiene_notes

        found = [*_sharing(run, name), *hygiene_notes(run, name)]
        # Both the sharing and the hygiene adapters read sshd's effective config; keep one
        # note per check (the first: the sharing adapter's, which also covers root login).
        unique: dict[str, AuditNote] = {}
        for note in found:
            unique.setdefault(note.check_id, note)
        return list(unique.values())

    return list_listeners, decide, notes


def _firewall(run: CommandRunner, name: str) -> Callable[[Listener], FirewallDecision | None]:
    """Read the ruleset once, on first use; loopback listeners need no verdict."""
    state: list[object] = []

    def decide(lst: Listener) -> FirewallDecision | None:
        if lst.scope is Scope.LOOPBACK:
            return None
        if name == "Linux":
            from mamori.audit import firewall

            if not state:
                state.append(firewall.detect(run))
            detected = state[0]
            assert isinstance(detected, firewall.FirewallState)
            return firewall.decide(detected, lst.proto, lst.port, lst.family)
        if name == "Darwin":
            from mamori.audit import firewall_macos

            if not state:
                state.append((firewall_macos.read_app_firewall(run)[0],
                              firewall_macos.read_pf(run)[0]))
            read = state[0]
            assert isinstance(read, tuple)
            return firewall_macos.decide_macos(lst, read[0], read[1])
        from mamori.model.audit import Verdict

        return FirewallDecision(Verdict.UNDETERMINED, "none", f"{name}: not supported")

    return decide


def _sharing(run: CommandRunner, name: str) -> list[AuditNote]:
    if name == "Linux":
        from mamori.audit.sharing_linux import audit_sharing_linux

        return audit_sharing_linux(run)
    if name == "Darwin":
        from mamori.audit.firewall_macos import audit_firewall_macos
        from mamori.audit.sharing_macos import audit_sharing_macos

        return [*audit_sharing_macos(run), *audit_firewall_macos(run)]
    return []
