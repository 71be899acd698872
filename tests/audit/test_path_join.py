"""The joined verdict (audit/path.py), from hand-made records: each case of issue 13's list,
plus the missing pieces. The namespace test (tests/audit/test_path_netns.py) runs the same
join over real daemons, a real router and a real mamori serve."""

from __future__ import annotations

from mamori.audit.inside import escalate
from mamori.audit.path import HostAddresses, Inside, join_paths, worst_reach
from mamori.audit.path_findings import path_exposure, path_results
from mamori.model import Proto, Severity
from mamori.model.audit import FirewallDecision, Listener, Scope, Verdict
from mamori.model.path import (
    NatKind,
    OutsidePort,
    OutsideResult,
    OutsideState,
    PortMapping,
    Reach,
    RouterView,
)

HOME = "192.168.77.10"
ADDRS = HostAddresses(ipv4=("127.0.0.1", HOME),
                      ipv6=(("2a0e:8b00:77::10", "global"), ("fd00::10", "ula")))
OPEN = FirewallDecision(Verdict.NO_FIREWALL, "none", "no ruleset loaded")
BLOCKED = FirewallDecision(Verdict.BLOCKED, "nftables", "inet filter input: tcp dport 6380 drop")
SSH_FWD = PortMapping(2222, Proto.TCP, HOME, 22, "ssh forward", 0, source="upnp")
TRANSMISSION = PortMapping(51413, Proto.TCP, HOME, 51413, "Transmission", 0)
GHOST = PortMapping(8080, Proto.TCP, HOME, 8080, "old game server", 3600)
OTHER = PortMapping(3389, Proto.TCP, "192.168.77.20", 3389, "rdp", 0)


def router(*mappings: PortMapping, nat: NatKind = NatKind.PUBLIC,
           external: str = "11.0.0.2") -> RouterView:
    return RouterView(found=True, protocol="upnp-igd2", gateway="192.168.77.1",
                      external_address=external, nat=nat, mappings=mappings)


def lst(address: str, port: int, process: str = "daemon") -> Listener:
    scope = (Scope.ALL if address in ("0.0.0.0", "::") else
             Scope.LOOPBACK if address in ("127.0.0.1", "::1") else Scope.INTERFACE)
    return Listener(Proto.TCP, address, port, scope, pid=100 + port, process=process)


def inside(listener: Listener, v4: FirewallDecision | None = OPEN,
           v6: FirewallDecision | None = OPEN) -> Inside:
    return Inside(listener, {4: v4, 6: v6})


def outside(family: int, *ports: tuple[int, OutsideState]) -> OutsideResult:
    return OutsideResult("http://11.0.0.1:8080", family, "11.0.0.2" if family == 4 else
                         "2a0e:8b00:77::10",
                         tuple(OutsidePort(Proto.TCP, p, s) for p, s in ports), None, "c0ffee")


def one(report, port: int, family: int):  # type: ignore[no-untyped-def]
    (v,) = [v for v in report.verdicts if v.port == port and v.family == family]
    return v


def test_a_forwarded_sshd_reaches_the_internet_with_its_mapping_named() -> None:
    r = join_paths([inside(lst("0.0.0.0", 22, "sshd"))], router(SSH_FWD), (), ADDRS)
    v = one(r, 22, 4)
    assert v.reach is Reach.INTERNET and not v.proven and v.mapping == SSH_FWD
    assert [s.name for s in v.steps] == ["bind", "host-firewall", "router", "nat", "outside"]
    assert v.steps[2].verdict == "mapped"
    assert "opened by UPnP, description 'ssh forward', lease 0 = permanent" in v.steps[2].detail


def test_redis_on_all_interfaces_without_a_forward_is_lan_only() -> None:
    r = join_paths([inside(lst("0.0.0.0", 6379, "redis-server"))], router(SSH_FWD), (), ADDRS)
    v = one(r, 6379, 4)
    assert v.reach is Reach.LAN and v.mapping is None and v.steps[2].verdict == "no-mapping"
    # the LAN-only grade is milder than the internet one
    lan = escalate(Severity.HIGH, Scope.ALL, Verdict.NO_FIREWALL, Reach.LAN)
    net = escalate(Severity.HIGH, Scope.ALL, Verdict.NO_FIREWALL, Reach.INTERNET)
    assert (lan, net) == (Severity.HIGH, Severity.CRITICAL)
    assert escalate(Severity.HIGH, Scope.ALL, Verdict.NO_FIREWALL) is Severity.CRITICAL


def test_a_upnp_mapping_opened_by_an_application_is_named_as_such() -> None:
    r = join_paths([inside(lst("0.0.0.0", 51413, "transmission-da"))], router(TRANSMISSION),
                   (), ADDRS)
    v = one(r, 51413, 4)
    assert v.reach is Reach.INTERNET
    assert ("opened by UPnP, description 'Transmission', lease 0 = permanent"
            in v.steps[2].detail)


def test_ipv6_exposes_what_nat_hides() -> None:
    nginx = lst("::", 80, "nginx")
    r = join_paths([inside(nginx)], router(SSH_FWD),
                   (outside(4, (80, OutsideState.FILTERED)), outside(6, (80, OutsideState.OPEN))),
                   ADDRS)
    v4, v6 = one(r, 80, 4), one(r, 80, 6)
    assert v4.reach is Reach.LAN and v6.reach is Reach.INTERNET and v6.proven
    assert any("IPv6 exposes what NAT hides" in n for n in v6.notes)
    # unknown from outside: still said, the IPv6 path is not known to be closed
    r2 = join_paths([inside(nginx)], router(), (), ADDRS)
    assert one(r2, 80, 6).reach is Reach.UNDETERMINED
    assert "IPv6 firewall" in one(r2, 80, 6).missing
    assert any("IPv6 exposes what NAT hides" in n for n in one(r2, 80, 6).notes)
    # refused over IPv6 from outside: known closed, no note
    r3 = join_paths([inside(nginx)], router(),
                    (outside(6, (80, OutsideState.CLOSED)),), ADDRS)
    assert one(r3, 80, 6).reach is Reach.LAN and not one(r3, 80, 6).notes


def test_a_v6_only_socket_next_to_an_ipv4_one_is_not_asked_about_ipv4() -> None:
    r = join_paths([inside(lst("0.0.0.0", 80)), inside(lst("::", 80))], router(), (), ADDRS,
                   v6only=frozenset({(Proto.TCP, 80)}))
    assert sorted((v.address, v.family) for v in r.verdicts) == [("0.0.0.0", 4), ("::", 6)]


def test_cgnat_is_not_reachable_over_ipv4_even_with_a_mapping() -> None:
    r = join_paths([inside(lst("0.0.0.0", 22))],
                   router(SSH_FWD, nat=NatKind.CGNAT, external="100.64.3.4"), (), ADDRS)
    v = one(r, 22, 4)
    assert v.reach is Reach.LAN and "behind CGNAT: not reachable over IPv4" in v.notes
    assert v.steps[3].verdict == "cgnat"


def test_a_blocking_host_firewall_that_the_outside_probe_got_through_is_a_contradiction() -> None:
    r = join_paths([inside(lst("0.0.0.0", 6380), v4=BLOCKED)],
                   router(PortMapping(6380, Proto.TCP, HOME, 6380, "x", 0)),
                   (outside(4, (6380, OutsideState.OPEN)),), ADDRS)
    v = one(r, 6380, 4)
    assert v.reach is Reach.INTERNET and v.proven
    (finding,) = path_results(r)
    assert finding.check_id == "path-contradiction" and finding.severity is Severity.HIGH
    assert "reading says blocked" in finding.summary and "tcp dport 6380 drop" in finding.summary
    # without the outside probe the same reading is believed: this host only, no finding
    r2 = join_paths([inside(lst("0.0.0.0", 6380), v4=BLOCKED)], router(), (), ADDRS)
    assert one(r2, 6380, 4).reach is Reach.HOST and path_results(r2) == []


def test_mappings_to_nothing_are_findings_and_to_other_hosts_are_listed() -> None:
    r = join_paths([inside(lst("0.0.0.0", 22))], router(SSH_FWD, GHOST, OTHER), (), ADDRS)
    assert r.unmatched == (GHOST,) and r.other_hosts == (OTHER,)
    (finding,) = path_results(r)
    assert finding.check_id == "router-mapping-unused" and finding.port == 8080
    assert "nothing on this host listens on tcp/8080" in finding.summary
    assert "lease 3600 s left" in finding.summary


def test_no_router_and_no_outside_probe_is_undetermined_with_the_missing_piece() -> None:
    r = join_paths([inside(lst("0.0.0.0", 22))], None, (), HostAddresses(ipv4=(HOME,)))
    v = one(r, 22, 4)
    assert v.reach is Reach.UNDETERMINED
    assert v.missing == "no router answered and no outside probe"
    # the firewall-only reading stands then
    assert path_exposure("tcp/22", lst("0.0.0.0", 22), r.verdicts) is None


def test_outside_refused_beats_a_mapping_and_is_said() -> None:
    r = join_paths([inside(lst("0.0.0.0", 22))], router(SSH_FWD),
                   (outside(4, (22, OutsideState.FILTERED)),), ADDRS)
    v = one(r, 22, 4)
    assert v.reach is Reach.LAN and any("outside probe was filtered" in n for n in v.notes)


def test_loopback_is_host_and_public_address_is_internet() -> None:
    r = join_paths([inside(lst("127.0.0.1", 5432))], router(), (), ADDRS)
    assert one(r, 5432, 4).reach is Reach.HOST
    r2 = join_paths([inside(lst("0.0.0.0", 25))], None, (),
                    HostAddresses(ipv4=("11.0.0.5",)))
    assert one(r2, 25, 4).reach is Reach.INTERNET
    assert one(r2, 25, 4).steps[2].detail == "this host has the public address 11.0.0.5"


def test_the_exposed_listener_grade_follows_the_joined_reach() -> None:
    ssh, redis = lst("0.0.0.0", 22, "sshd"), lst("0.0.0.0", 6379, "redis-server")
    r = join_paths([inside(ssh), inside(redis)], router(SSH_FWD), (), ADDRS)
    net = path_exposure("tcp/22", ssh, [v for v in r.verdicts if v.port == 22])
    lan = path_exposure("tcp/6379", redis, [v for v in r.verdicts if v.port == 6379])
    assert net is not None and lan is not None
    assert net.severity is Severity.HIGH and "reachable from the internet" in net.summary
    assert lan.severity is Severity.MEDIUM and "from the LAN, not from the internet" in lan.summary
    assert worst_reach(r.verdicts) is Reach.INTERNET


def test_nat_hides_is_said_across_an_ipv4_and_an_ipv6_socket_on_one_port() -> None:
    r = join_paths([inside(lst("0.0.0.0", 80)), inside(lst("::", 80))], router(),
                   (outside(4, (80, OutsideState.FILTERED)), outside(6, (80, OutsideState.OPEN))),
                   ADDRS, v6only=frozenset({(Proto.TCP, 80)}))
    v6 = next(v for v in r.verdicts if v.family == 6)
    assert v6.reach is Reach.INTERNET and any("IPv6 exposes what NAT hides" in n for n in v6.notes)


def test_a_dual_stack_listener_is_asked_about_each_family_and_v6only_is_seen() -> None:
    from mamori.audit.inside import CheckJob, join_job
    from mamori.scan.pipeline import ScanPlan

    asked: list[str] = []

    def decide(listener: Listener) -> FirewallDecision:
        asked.append(listener.address)
        return BLOCKED if listener.family == 4 else OPEN

    both, v6, v4 = lst("::", 8443), lst("::", 80), lst("0.0.0.0", 80)
    job = CheckJob(ScanPlan(targets=(), tcp_ports=()), False, frozenset(), lambda: [],
                   decide, lambda: [], read_addresses=lambda: ADDRS)
    decisions = {x: decide(x) for x in (both, v6, v4)}
    asked.clear()
    report = join_job(job, [both, v6, v4], decisions)
    assert report is not None and asked == ["0.0.0.0"]  # only the dual-stack one, for IPv4
    fams = sorted((v.address, v.port, v.family, v.reach.value) for v in report.verdicts)
    assert fams == [("0.0.0.0", 80, 4, "host"), ("::", 80, 6, "undetermined"),
                    ("::", 8443, 4, "host"), ("::", 8443, 6, "undetermined")]


NO_PUBLIC_WORDS = ("the router reports no public IPv4 address (behind CGNAT or another NAT): "
                   "not reachable over IPv4 from the internet, likely")


def test_a_router_without_a_public_ipv4_address_makes_ipv4_lan_with_the_reason() -> None:
    """Debian's miniupnpd (Connected, but an empty external address) behind CGNAT: the
    IPv4 path is LAN-only for that reason, not "NAT unknown", even with a mapping."""
    view = router(SSH_FWD, nat=NatKind.NO_PUBLIC, external="")
    r = join_paths([inside(lst("0.0.0.0", 22, "sshd")), inside(lst("::", 80, "nginx"))],
                   view, (), ADDRS)
    v = one(r, 22, 4)
    assert v.reach is Reach.LAN and v.mapping == SSH_FWD
    nat = next(s for s in v.steps if s.name == "nat")
    assert (nat.verdict, nat.detail) == ("no-public-ipv4", NO_PUBLIC_WORDS)
    assert NO_PUBLIC_WORDS in v.notes
    # its IPv6 twin is still asked about, and NAT hiding IPv4 is said
    web6 = one(r, 80, 6)
    assert any(n.startswith("ipv6-exposes-what-nat-hides") for n in web6.notes)


def test_the_outside_probe_says_how_the_internet_sees_the_line() -> None:
    seen = OutsideResult("http://11.0.0.1:8080", 4, "203.0.113.9",
                         (OutsidePort(Proto.TCP, 22, OutsideState.FILTERED),), None, "c0ffee")
    told_none = join_paths([inside(lst("0.0.0.0", 22, "sshd"))],
                           router(nat=NatKind.NO_PUBLIC, external=""), (seen,), ADDRS)
    step = next(s for s in one(told_none, 22, 4).steps if s.name == "router")
    assert ("the internet sees this line as 203.0.113.9 (the router told no external "
            "address)") in step.detail
    other = join_paths([inside(lst("0.0.0.0", 22, "sshd"))], router(), (seen,), ADDRS)
    step = next(s for s in one(other, 22, 4).steps if s.name == "router")
    assert ("the internet sees this line as 203.0.113.9, not as the router's external "
            "address 11.0.0.2") in step.detail
    same = join_paths([inside(lst("0.0.0.0", 22, "sshd"))], router(),
                      (outside(4, (22, OutsideState.CLOSED)),), ADDRS)
    step = next(s for s in one(same, 22, 4).steps if s.name == "router")
    assert "the internet sees" not in step.detail


def test_a_disconnected_router_is_not_called_cgnat() -> None:
    view = RouterView(found=True, protocol="upnp-igd1", gateway="192.168.77.1",
                      external_address=None, nat=NatKind.UNKNOWN,
                      connection_status="Disconnected")
    v = one(join_paths([inside(lst("0.0.0.0", 22, "sshd"))], view, (), ADDRS), 22, 4)
    assert all(s.verdict not in ("cgnat", "no-public-ipv4") for s in v.steps)
    assert not any("CGNAT" in n for n in v.notes)
