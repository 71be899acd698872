"""`mamori check`: this machine from the inside, proved from the outside.

Listeners (which process, which address) come from the audit layer; each one reachable over
loopback is probed with the same identification and exposure checks as `mamori scan`; the
firewall's verdict for it is read from the real ruleset; and a finding's severity follows the
exposure: an unauthenticated Redis on loopback is low, the same on all interfaces with the
firewall letting it in is critical.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mamori.audit.path import HostAddresses, worst_reach
from mamori.audit.path_findings import path_exposure, path_results
from mamori.audit.router_findings import router_results
from mamori.model import (
    CheckResult,
    CheckStatus,
    Endpoint,
    Exposure,
    ListenerRecord,
    ProbeError,
    Proto,
    Service,
    Severity,
    Target,
)
from mamori.model.audit import AuditNote, FirewallDecision, Listener, Scope, Verdict
from mamori.model.path import OutsideResult, PathReport, PathVerdict, Reach, RouterView
from mamori.scan.pipeline import ProgressFn, ScanPlan, ScanSink, run_scan

_ORDER = list(Severity)


def _step(severity: Severity, by: int) -> Severity:
    return _ORDER[max(0, min(len(_ORDER) - 1, _ORDER.index(severity) + by))]


def escalate(severity: Severity, scope: Scope, verdict: Verdict | None,
             reach: Reach | None = None) -> Severity:
    """The severity of a finding on a listener, given how exposed that listener is.

    Loopback only: at most low (only local users and processes reach it). When the joined
    verdict (``audit/path.py``: router, NAT, IPv6, outside probe) knows the reach, it decides:
    internet one step worse, LAN-only as the check says, this host only one step milder.
    Otherwise by the firewall: let in (or no firewall) one step worse, blocked one step
    milder, undetermined as the check says.
    """
    if scope is Scope.LOOPBACK:
        return min(severity, Severity.LOW, key=lambda s: s.rank)
    if reach is Reach.INTERNET:
        return _step(severity, +1)
    if reach is Reach.LAN:
        return severity
    if reach is Reach.HOST:
        return _step(severity, -1)
    if verdict in (Verdict.ALLOWED, Verdict.NO_FIREWALL):
        return _step(severity, +1)
    if verdict is Verdict.BLOCKED:
        return _step(severity, -1)
    return severity


@dataclass(frozen=True)
class ProbeTarget:
    address: str  # where mamori connects: the loopback address, or the bound one
    listener: Listener


@dataclass(frozen=True)
class Skipped:
    listener: Listener
    reason: str


def _loopback_for(listener: Listener) -> str | None:
    address = listener.address.split("%", 1)[0]
    if listener.scope is Scope.ALL:
        return "::1" if ":" in address else "127.0.0.1"
    if listener.scope is Scope.LOOPBACK:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    return None


def plan_probes(
    listeners: Iterable[Listener], *, probe_bound: bool, excluded: Iterable[tuple[Proto, int]]
) -> tuple[list[ProbeTarget], list[Skipped]]:
    """Which listeners to probe, and where; the rest with the reason they are not probed."""
    skip = set(excluded)
    probes: list[ProbeTarget] = []
    skipped: list[Skipped] = []
    for lst in listeners:
        if (lst.proto, lst.port) in skip:
            skipped.append(Skipped(lst, "excluded by --exclude-ports"))
            continue
        address = _loopback_for(lst)
        if address is None and probe_bound:
            address = lst.address.split("%", 1)[0]
        if address is None:
            skipped.append(Skipped(lst, "bound to a non-loopback address only; "
                                        "probe it with --probe-bound"))
            continue
        probes.append(ProbeTarget(address, lst))
    return probes, skipped


def group_plans(probes: Sequence[ProbeTarget], template: ScanPlan) -> list[ScanPlan]:
    """One scan plan per probe address, with exactly the ports listening there."""
    by_address: dict[str, tuple[set[int], set[int]]] = {}
    for p in probes:
        tcp, udp = by_address.setdefault(p.address, (set(), set()))
        (tcp if p.listener.proto is Proto.TCP else udp).add(p.listener.port)
    return [
        dataclasses.replace(template, targets=(Target(address),), tcp_ports=tuple(sorted(tcp)),
                            udp_ports=tuple(sorted(udp)))
        for address, (tcp, udp) in sorted(by_address.items())
    ]


class ExposureSink:
    """Passes records on, re-grading each finding by its listener's exposure."""

    def __init__(self, inner: ScanSink, exposure: dict[tuple[str, Proto, int],
                                                        tuple[Listener, FirewallDecision | None]],
                 reach: Mapping[Listener, Reach | None] | None = None):
        self.inner = inner
        self.exposure = exposure
        self.reach = reach or {}
        self.services: dict[tuple[str, Proto, int], Service] = {}

    def on_host(self, target: Target) -> None:
        self.inner.on_host(target)

    def on_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.inner.on_endpoints(endpoints)

    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None:
        self.services[(address, proto, port)] = service
        self.inner.on_service(address, proto, port, service)

    def on_error(self, error: ProbeError) -> None:
        self.inner.on_error(error)

    def on_not_shown(self, address: str, counts: dict[str, dict[str, int]]) -> None:
        self.inner.on_not_shown(address, counts)

    def on_check(self, result: CheckResult) -> None:
        found = self.exposure.get((result.address, result.proto, result.port))
        if found is not None and result.status is CheckStatus.FINDING:
            listener, decision = found
            verdict = decision.verdict if decision else None
            if decision is not None and decision.only_from:
                verdict = Verdict.UNDETERMINED  # open to some sources only: keep the grade
            reach = self.reach.get(listener)
            if reach is Reach.UNDETERMINED:
                reach = None  # a piece is missing: graded by the firewall alone
            exposure = Exposure(address=listener.address, port=listener.port,
                                scope=listener.scope, firewall=verdict,
                                check_severity=result.severity,
                                reach=reach.value if reach is not None else None)
            result = dataclasses.replace(
                result, severity=escalate(result.severity, listener.scope, verdict, reach),
                exposure=exposure)
        self.inner.on_check(result)


async def run_probes(
    plans: Sequence[ScanPlan], sink: ScanSink, progress: ProgressFn,
) -> None:
    """Run each per-address plan into ``sink``, a few at a time."""
    limit = asyncio.Semaphore(4)

    async def one(plan: ScanPlan) -> None:
        async with limit:
            await run_scan(plan, sink, progress)

    await asyncio.gather(*(one(p) for p in plans))


class InsideSink(Protocol):
    """What `mamori check` writes besides the probe results."""

    def on_check(self, result: CheckResult) -> None: ...
    def on_listener(self, record: ListenerRecord) -> None: ...
    def on_paths(self, report: PathReport) -> None: ...


def listener_record(
    lst: Listener, decision: FirewallDecision | None, service: Service | None,
    probed_at: str | None, skipped: str | None,
) -> ListenerRecord:
    return ListenerRecord(
        proto=lst.proto, address=lst.address, port=lst.port, scope=lst.scope,
        pid=lst.pid, process=lst.process, user=lst.user, exe=lst.exe,
        firewall=decision.verdict if decision else None,
        firewall_backend=decision.backend if decision else "",
        firewall_reason=decision.reason if decision else "",
        firewall_rule=decision.rule if decision else None,
        service=service.name if service else None,
        product=service.product if service else None,
        probe_address=probed_at,
        not_probed=skipped,
    )


def exposure_results(
    listeners: Sequence[Listener], decide: Callable[[Listener], FirewallDecision | None],
    paths: Mapping[Listener, Sequence[PathVerdict]] | None = None,
) -> list[CheckResult]:
    """One "exposed-listener" result per listener reachable from the network (keyed by its
    bind address and port), and whether any firewall filters inbound traffic at all. With
    joined path verdicts (``paths``), the reach they found decides (``path_exposure``)."""
    from mamori.audit.notes import note_result

    results: list[CheckResult] = []
    decisions = [(lst, decide(lst)) for lst in listeners if lst.scope is not Scope.LOOPBACK]
    for lst, decision in decisions:
        where = f"{lst.proto.value}/{lst.port} on {lst.address} ({lst.process or 'unknown'}"
        where += f", pid {lst.pid})" if lst.pid else ")"
        joined = path_exposure(where, lst, (paths or {}).get(lst, ()))
        if joined is not None:
            results.append(joined)
            continue
        if decision is None or decision.verdict is Verdict.UNDETERMINED:
            reason = decision.reason if decision else "no firewall backend could be read"
            note = AuditNote("exposed-listener", None, f"{where}: {reason}", "firewall")
        elif decision.verdict is Verdict.BLOCKED:
            note = AuditNote("exposed-listener", True,
                             f"{where}: blocked by {decision.backend} ({decision.reason})",
                             decision.backend)
        else:
            note = AuditNote("exposed-listener", False,
                             f"{where} is reachable from the network: {decision.reason}",
                             decision.backend)
        results.append(note_result(note, host=lst.address, port=lst.port, proto=lst.proto))
    inactive = firewall_inactive_detail(decisions)
    if inactive is not None:
        results.append(note_result(AuditNote("firewall-inactive", False, inactive, "firewall")))
    return results


def firewall_inactive_detail(
    decisions: Sequence[tuple[Listener, FirewallDecision | None]],
) -> str | None:
    """Which address family nothing filters, read from the listeners' own verdicts (the same
    reading): None when every family a listener was decided for has inbound rules.

    "IPv6 has no inbound rules (no ruleset loaded); IPv4 is filtered by iptables"."""
    open_reasons: dict[int, list[str]] = {}
    filtered: dict[int, str] = {}
    backends: set[str] = set()
    for lst, d in decisions:
        if d is None:
            continue
        if d.verdict is Verdict.NO_FIREWALL:
            why = d.reason.removeprefix(f"IPv{lst.family}: ")
            open_reasons.setdefault(lst.family, [])
            if why not in open_reasons[lst.family]:
                open_reasons[lst.family].append(why)
            backends.add(d.backend)
        elif d.verdict is not Verdict.UNDETERMINED:
            filtered.setdefault(lst.family, d.backend)
    if not open_reasons:
        return None
    families = sorted(open_reasons)
    names = " and ".join(f"IPv{f}" for f in families)
    reasons = sorted({r for f in families for r in open_reasons[f]})
    verb = "have" if len(families) > 1 else "has"
    text = f"{names} {verb} no inbound rules ({'; '.join(reasons)})"
    if backends == {"none"} and not filtered:
        text += ": nftables, iptables, ufw and firewalld are all empty or absent"
    for family, backend in sorted(filtered.items()):
        if family not in open_reasons:
            text += f"; IPv{family} is filtered by {backend}"
    return text


@dataclass(frozen=True)
class CheckJob:
    """Everything `mamori check` needs, with the machine-reading parts injectable for tests."""

    template: ScanPlan  # sweep/identify/check settings; targets and ports are filled per address
    probe_bound: bool
    excluded: frozenset[tuple[Proto, int]]
    read_listeners: Callable[[], list[Listener]]
    decide: Callable[[Listener], FirewallDecision | None]
    read_notes: Callable[[], list[AuditNote]]
    # The path from the internet (issue 13): the router's view (None: not read), the outside
    # probe for (proto, port)s (None: no --outside), this host's own addresses. None: no join.
    read_router: Callable[[], RouterView | None] | None = None
    probe_outside: Callable[[list[tuple[Proto, int]]], Sequence[OutsideResult]] | None = None
    read_addresses: Callable[[], HostAddresses] | None = None


def join_job(job: CheckJob, listeners: Sequence[Listener],
             decisions: Mapping[Listener, FirewallDecision | None]) -> PathReport | None:
    """Read the router, ask the outside service, and join them with the inside view (I/O
    here, the join itself is pure: ``audit/path.join_paths``). None when the job joins
    nothing. A listener on "::" is asked about IPv4 as well (dual-stack), unless an IPv4
    socket holds the same port (then the IPv6 one is v6-only)."""
    if job.read_addresses is None:
        return None
    from mamori.audit.path import Inside, families, join_paths

    v4_ports = {(lst.proto, lst.port) for lst in listeners if lst.family == 4}
    v6only = frozenset(key for lst in listeners
                       if lst.address.split("%", 1)[0] == "::"
                       and (key := (lst.proto, lst.port)) in v4_ports)
    insides = []
    for lst in listeners:
        firewall: dict[int, FirewallDecision | None] = {lst.family: decisions[lst]}
        if 4 in families(lst, (lst.proto, lst.port) in v6only) and lst.family == 6:
            firewall[4] = job.decide(dataclasses.replace(lst, address="0.0.0.0"))
        insides.append(Inside(lst, firewall))
    ports = sorted({(lst.proto, lst.port) for lst in listeners if lst.scope is not Scope.LOOPBACK},
                   key=lambda p: (p[0].value, p[1]))
    outside = tuple(job.probe_outside(ports)) if job.probe_outside and ports else ()
    router = job.read_router() if job.read_router else None
    return join_paths(insides, router, outside, job.read_addresses(), v6only)


async def run_check_job(job: CheckJob, sink: InsideSink, progress: ProgressFn) -> None:
    """Listeners → probes over loopback (findings graded by exposure) → listener records and
    inside findings, all into ``sink``."""
    from mamori.audit.notes import note_result

    progress(stage="listeners")
    listeners = await asyncio.to_thread(job.read_listeners)
    decisions = {lst: await asyncio.to_thread(job.decide, lst) for lst in listeners}
    probes, skipped = plan_probes(listeners, probe_bound=job.probe_bound, excluded=job.excluded)
    exposure = {(p.address, p.listener.proto, p.listener.port): (p.listener, decisions[p.listener])
                for p in probes}
    progress(stage="path")
    paths = await asyncio.to_thread(join_job, job, listeners, decisions)
    by_listener: dict[Listener, list[PathVerdict]] = {}
    if paths is not None:
        keyed = {(v.proto, v.address, v.port): lst for lst in listeners
                 for v in paths.verdicts if (lst.proto, lst.address, lst.port) ==
                 (v.proto, v.address, v.port)}
        for v in paths.verdicts:
            by_listener.setdefault(keyed[(v.proto, v.address, v.port)], []).append(v)
    reach = {lst: worst_reach(vs) for lst, vs in by_listener.items()}
    probing = ExposureSink(sink, exposure, reach)  # type: ignore[arg-type]
    await run_probes(group_plans(probes, job.template), probing, progress)
    probed = {p.listener: p.address for p in probes}
    why_not = {s.listener: s.reason for s in skipped}
    for lst in listeners:
        address = probed.get(lst)
        service = probing.services.get((address, lst.proto, lst.port)) if address else None
        sink.on_listener(listener_record(lst, decisions[lst], service, address, why_not.get(lst)))
    for result in exposure_results(listeners, lambda lst: decisions[lst], by_listener):
        sink.on_check(result)
    if paths is not None:
        for result in path_results(paths):
            sink.on_check(result)
        if paths.router is not None:  # the router is part of the network layer (#13)
            for result in router_results(paths.router):
                sink.on_check(result)
        sink.on_paths(paths)
    for note in await asyncio.to_thread(job.read_notes):
        sink.on_check(note_result(note))
