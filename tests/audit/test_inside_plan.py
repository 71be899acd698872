"""The pure parts of `mamori check`: which listeners are probed where, and severity by exposure."""

from __future__ import annotations

import pytest

from mamori.audit.inside import escalate, group_plans, plan_probes
from mamori.model import Proto, Severity
from mamori.model.audit import Listener, Scope, Verdict
from mamori.scan.pipeline import ScanPlan


def L(address: str, port: int, scope: Scope, proto: Proto = Proto.TCP) -> Listener:
    return Listener(proto, address, port, scope, pid=1, process="x")


def test_loopback_is_at_most_low_and_exposure_raises_it() -> None:
    assert escalate(Severity.HIGH, Scope.LOOPBACK, Verdict.ALLOWED) is Severity.LOW
    assert escalate(Severity.INFO, Scope.LOOPBACK, None) is Severity.INFO
    assert escalate(Severity.HIGH, Scope.ALL, Verdict.ALLOWED) is Severity.CRITICAL
    assert escalate(Severity.HIGH, Scope.ALL, Verdict.NO_FIREWALL) is Severity.CRITICAL
    assert escalate(Severity.CRITICAL, Scope.ALL, Verdict.ALLOWED) is Severity.CRITICAL
    assert escalate(Severity.HIGH, Scope.INTERFACE, Verdict.BLOCKED) is Severity.MEDIUM
    assert escalate(Severity.HIGH, Scope.ALL, Verdict.UNDETERMINED) is Severity.HIGH


def test_probe_addresses_follow_the_bind_address() -> None:
    listeners = [
        L("0.0.0.0", 6379, Scope.ALL), L("::", 22, Scope.ALL), L("127.0.20.5", 25, Scope.LOOPBACK),
        L("::ffff:127.0.0.9", 80, Scope.LOOPBACK), L("192.0.2.2", 8080, Scope.INTERFACE),
        L("0.0.0.0", 2024, Scope.ALL), L("0.0.0.0", 53, Scope.ALL, Proto.UDP),
    ]
    probes, skipped = plan_probes(listeners, probe_bound=False, excluded=[(Proto.TCP, 2024)])
    got = {(p.address, p.listener.port) for p in probes}
    assert got == {("127.0.0.1", 6379), ("::1", 22), ("127.0.20.5", 25), ("127.0.0.9", 80),
                   ("127.0.0.1", 53)}
    reasons = {s.listener.port: s.reason for s in skipped}
    assert "excluded" in reasons[2024] and "--probe-bound" in reasons[8080]
    probes, _ = plan_probes(listeners, probe_bound=True, excluded=[(Proto.TCP, 2024)])
    assert ("192.0.2.2", 8080) in {(p.address, p.listener.port) for p in probes}


def test_plans_probe_exactly_the_listening_ports() -> None:
    probes, _ = plan_probes([L("0.0.0.0", 6379, Scope.ALL), L("127.0.0.1", 25, Scope.LOOPBACK),
                             L("0.0.0.0", 53, Scope.ALL, Proto.UDP)],
                            probe_bound=False, excluded=[])
    plans = group_plans(probes, ScanPlan(targets=(), tcp_ports=()))
    assert len(plans) == 1
    (plan,) = plans
    assert plan.targets[0].address == "127.0.0.1"
    assert plan.tcp_ports == (25, 6379) and plan.udp_ports == (53,)


@pytest.mark.parametrize("severity", list(Severity))
def test_escalation_never_leaves_the_scale(severity: Severity) -> None:
    for scope in Scope:
        for verdict in [*Verdict, None]:
            assert escalate(severity, scope, verdict) in Severity
