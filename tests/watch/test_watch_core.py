"""Detectors and incident grouping on synthetic event streams (pure, no I/O)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from mamori.model.watch import Danger, Event, EventType
from mamori.watch.detect import DetectConfig, Detectors, technique_of
from mamori.watch.incidents import IncidentGrouper, event_kind, kind_rank

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def connect(src: str, port: int, t: float, dst: str = "127.0.140.1") -> Event:
    return Event(
        time=at(t), type=EventType.DECOY_CONNECT, source=f"decoy:tcp/{dst}:{port}",
        src=src, src_port=40000, dst=dst, dst_port=port, proto="tcp",
    )


def drop(src: str, port: int, t: float, flags: str, proto: str = "tcp") -> Event:
    return Event(
        time=at(t), type=EventType.FIREWALL_DROP, source="log:/var/log/kern.log", src=src,
        dst="192.0.2.1", dst_port=port, proto=proto, fields=MappingProxyType({"flags": flags}),
    )


def failure(src: str, t: float, user: str = "root", type_: EventType = EventType.AUTH_FAILURE,
            service: str | None = None) -> Event:
    fields = {"username": user}
    if service:
        fields["service"] = service
    return Event(time=at(t), type=type_, source="log:/var/log/auth.log", src=src,
                 dst_port=22, proto="tcp", fields=MappingProxyType(fields))


def echo(src: str, dst: str, t: float) -> Event:
    return Event(time=at(t), type=EventType.ICMP_ECHO, source="icmp", src=src, dst=dst,
                 proto="icmp")


def http(src: str, t: float, path: str, sigs: tuple[str, ...] = (),
         danger: Danger = Danger.INFO) -> Event:
    return Event(
        time=at(t), type=EventType.HTTP_REQUEST, source="log:/var/log/nginx/access.log",
        src=src, dst_port=80, proto="tcp", signatures=sigs, danger=danger,
        fields=MappingProxyType({"method": "GET", "path": path, "status": "404"}),
        excerpt=f"GET {path} HTTP/1.0",
    )


# -- port scans ---------------------------------------------------------------------------------


def test_scan_fires_once_at_the_threshold_with_ports_and_technique() -> None:
    det = Detectors(DetectConfig(scan_ports=5, scan_window=60))
    out = [det.feed(connect("203.0.113.9", p, i)) for i, p in enumerate((21, 22, 23, 25))]
    assert out == [[], [], [], []]  # 4 distinct ports: below the threshold
    fired = det.feed(connect("203.0.113.9", 80, 4))
    assert len(fired) == 1
    scan = fired[0]
    assert scan.type is EventType.SCAN_PORTS and scan.src == "203.0.113.9"
    assert scan.fields["ports"] == "21/tcp,22/tcp,23/tcp,25/tcp,80/tcp"
    assert scan.fields["technique"] == "connect" and scan.fields["count"] == "5"
    assert scan.time == at(4) and scan.source == "detector:portscan"
    # The rest of the same scan inside the window: no more derived events.
    assert det.feed_all(connect("203.0.113.9", p, 5 + p / 1000) for p in range(100, 400)) == []


def test_repeated_ports_do_not_count_and_window_boundary_is_inclusive() -> None:
    det = Detectors(DetectConfig(scan_ports=3, scan_window=10))
    # The same port hammered: never a scan.
    assert det.feed_all(connect("198.51.100.1", 23, i * 0.1) for i in range(200)) == []
    # Ports 10 s apart exactly: still within the window (inclusive), fires at the third.
    det2 = Detectors(DetectConfig(scan_ports=3, scan_window=10))
    assert det2.feed(connect("198.51.100.2", 1, 0)) == []
    assert det2.feed(connect("198.51.100.2", 2, 5)) == []
    assert len(det2.feed(connect("198.51.100.2", 3, 10))) == 1
    # Just over the window: the first port has aged out, no detection.
    det3 = Detectors(DetectConfig(scan_ports=3, scan_window=10))
    det3.feed(connect("198.51.100.3", 1, 0))
    det3.feed(connect("198.51.100.3", 2, 5))
    assert det3.feed(connect("198.51.100.3", 3, 10.001)) == []
    assert len(det3.feed(connect("198.51.100.3", 4, 12))) == 1


def test_one_detection_per_window_then_a_new_one_for_a_later_scan() -> None:
    det = Detectors(DetectConfig(scan_ports=5, scan_window=60))
    fired = det.feed_all(connect("192.0.2.7", p, p * 0.01) for p in range(1, 1001))
    assert len(fired) == 1  # 1,000 ports within one second: one event
    # Still going 61 s after the window that fired began: a second (and only a second) event.
    later = det.feed_all(connect("192.0.2.7", p, 61 + p * 0.01) for p in range(1, 1001))
    assert len(later) == 1


def test_two_sources_are_counted_apart() -> None:
    det = Detectors(DetectConfig(scan_ports=4))
    events = []
    for p in range(1, 4):  # 3 ports each: neither reaches 4
        events += [connect("10.0.0.1", p, p), connect("10.0.0.2", p + 10, p)]
    assert det.feed_all(events) == []


@pytest.mark.parametrize(
    ("flags", "technique", "danger"),
    [
        ("SYN", "syn", Danger.LOW),
        ("", "null", Danger.MEDIUM),
        ("FIN", "fin", Danger.MEDIUM),
        ("FIN PSH URG", "xmas", Danger.MEDIUM),
        ("ACK SYN", "tcp", Danger.LOW),
    ],
)
def test_firewall_drops_name_the_scan_technique(flags: str, technique: str,
                                                danger: Danger) -> None:
    det = Detectors(DetectConfig(scan_ports=5))
    out = det.feed_all(drop("203.0.113.50", p, p / 10, flags) for p in range(1, 6))
    assert [(e.fields["technique"], e.danger) for e in out] == [(technique, danger)]


def test_udp_decoys_and_udp_drops_count_as_a_udp_scan() -> None:
    det = Detectors(DetectConfig(scan_ports=3))
    events = [
        Event(time=at(0), type=EventType.DECOY_UDP, source="decoy:udp/127.0.140.1:1900",
              src="10.9.9.9", dst="127.0.140.1", dst_port=1900, proto="udp"),
        drop("10.9.9.9", 161, 1, "", proto="udp"),
        drop("10.9.9.9", 53, 2, "", proto="udp"),
    ]
    (scan,) = det.feed_all(events)
    assert scan.fields["technique"] == "udp"
    assert scan.fields["ports"] == "53/udp,161/udp,1900/udp"
    assert technique_of(events[0]) == "udp"


# -- brute force --------------------------------------------------------------------------------


def test_bruteforce_counts_failures_per_source_and_service() -> None:
    det = Detectors(DetectConfig(brute_failures=5, brute_window=300))
    users = ["root", "admin", "pi", "ubuntu"]
    assert det.feed_all(failure("192.0.2.44", i * 10, users[i]) for i in range(4)) == []
    # Decoy logins to telnet from the same source are another service: counted apart.
    telnet = [failure("192.0.2.44", 41 + i, "root", EventType.DECOY_LOGIN, "telnet")
              for i in range(4)]
    assert det.feed_all(telnet) == []
    (brute,) = det.feed(failure("192.0.2.44", 50, "oracle"))
    assert brute.type is EventType.BRUTE_FORCE and brute.danger is Danger.MEDIUM
    assert brute.fields["service"] == "ssh" and brute.fields["failures"] == "5"
    assert brute.fields["usernames"] == "root,admin,pi,ubuntu,oracle"
    (brute2,) = det.feed(failure("192.0.2.44", 52, "x", EventType.DECOY_LOGIN, "telnet"))
    assert brute2.fields["service"] == "telnet"
    # More failures inside the window that fired: nothing new.
    assert det.feed_all(failure("192.0.2.44", 60 + i) for i in range(50)) == []


def test_bruteforce_spread_thinner_than_the_window_is_not_reported() -> None:
    det = Detectors(DetectConfig(brute_failures=3, brute_window=60))
    # One failure every 31 s: never 3 inside 60 s.
    assert det.feed_all(failure("192.0.2.45", i * 31) for i in range(20)) == []


def test_auth_success_and_invalid_user_lines_do_not_inflate_the_count() -> None:
    det = Detectors(DetectConfig(brute_failures=3))
    events = [failure("192.0.2.46", i, "bob", EventType.AUTH_INVALID_USER) for i in range(10)]
    events += [failure("192.0.2.46", 20 + i, "bob", EventType.AUTH_SUCCESS) for i in range(10)]
    assert det.feed_all(events) == []


# -- ping sweeps ----------------------------------------------------------------------------------


def test_ping_sweep_needs_distinct_destinations() -> None:
    det = Detectors(DetectConfig(sweep_hosts=4, sweep_window=60))
    # Pinging one host many times is not a sweep.
    assert det.feed_all(echo("10.1.1.1", "10.1.1.254", i) for i in range(30)) == []
    out = det.feed_all(echo("10.1.1.1", f"10.1.1.{i}", 40 + i) for i in range(1, 11))
    assert len(out) == 1
    assert out[0].type is EventType.SCAN_PING_SWEEP
    assert out[0].fields["count"] == "4"


# -- bounded memory -------------------------------------------------------------------------------


def test_state_is_bounded_under_100k_distinct_sources() -> None:
    det = Detectors(DetectConfig(max_sources=2_000))

    def flood(first: int, last: int) -> None:
        for i in range(first, last):
            src = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            det.feed(connect(src, 1000 + i % 7, i / 1000))
            if i % 5 == 0:  # fewer of these (time), same LRU table code
                det.feed(failure(src, i / 1000))
                det.feed(echo(src, "10.255.0.1", i / 1000))

    flood(0, 80_000)
    assert det.tracked_sources == 3 * 2_000
    # Once the tables are full, 20,000 more sources only replace old states: what the traced
    # stretch leaves allocated is one table's worth (~5 MB), not 28,000 states (~20 MB).
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        flood(80_000, 100_000)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert det.tracked_sources == 3 * 2_000
    assert det.evicted == (100_000 - 2_000) + 2 * (20_000 - 2_000)
    assert grown < 8 * 1024 * 1024, grown
    # Quiet sources are forgotten altogether.
    assert det.prune(at(100 + 10_000)) == 3 * 2_000 and det.tracked_sources == 0


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="scan_ports"):
        DetectConfig(scan_ports=0)
    with pytest.raises(ValueError, match="brute_window"):
        DetectConfig(brute_window=0)


# -- incidents ------------------------------------------------------------------------------------

SIG_KINDS = {
    "codered": "worm.codered",
    "log4shell-jndi": "exploit.log4shell",
    "env-file": "probe.env",
    "scanner-nmap": "scanner.ua",
}


def grouper(**kw: object) -> IncidentGrouper:
    return IncidentGrouper(signature_kind=SIG_KINDS.get, **kw)  # type: ignore[arg-type]


def run(g: IncidentGrouper, det: Detectors | None, events: list[Event]) -> None:
    for e in events:
        g.add(e)
        for d in det.feed(e) if det else []:
            g.add(d)


def all_incidents(g: IncidentGrouper) -> list:
    g.close_all()
    return [inc for _, inc in g.drain_closed()]


def test_kind_ranking_follows_the_documented_order() -> None:
    order = ["worm.codered", "exploit.log4shell", "bruteforce", "scan.ports", "probe.env",
             "scan.ping_sweep", "decoy.contact"]
    ranks = [kind_rank(k) for k in order]
    assert ranks == sorted(ranks, reverse=True) and len(set(ranks)) == len(ranks)
    assert event_kind(http("1.2.3.4", 0, "/x", ("env-file", "scanner-nmap")),
                      SIG_KINDS.get) == "probe.env"


def test_a_port_scan_of_several_decoys_is_one_scan_incident() -> None:
    g, det = grouper(), Detectors()
    events = [connect("127.0.0.1", p, i * 0.01, dst=f"127.0.140.{1 + i % 3}")
              for i, p in enumerate([2323, 8081, 2222, 6379, 3306, 445, 3389] * 3)]
    run(g, det, events)
    (inc,) = all_incidents(g)
    assert inc.kind == "scan.ports" and inc.src == "127.0.0.1"  # loopback: not whitelisted
    assert inc.count == len(events) + 1  # the derived scan.ports event is folded in too
    assert inc.danger is Danger.LOW
    assert set(inc.types) == {"decoy.connect", "scan.ports"}
    assert inc.first_seen == at(0) and inc.last_seen == events[-1].time
    assert any(ex.startswith("scan.ports") for ex in inc.examples)


def test_a_replayed_worm_log_is_one_worm_incident() -> None:
    g = grouper()
    lines = [http("192.168.1.77", i * 7.0, "/default.ida?NNNNNNNN", ("codered",),
                  Danger.HIGH) for i in range(60)]  # 7 minutes of Code Red from a LAN host
    lines.insert(10, http("192.168.1.77", 65, "/robots.txt"))
    run(g, Detectors(), lines)
    (inc,) = all_incidents(g)
    assert inc.kind == "worm.codered" and inc.src == "192.168.1.77"
    assert inc.count == 61 and inc.danger is Danger.HIGH
    assert inc.signatures == ("codered",)
    assert len(inc.examples) <= 5


def test_the_most_dangerous_kind_wins_and_escalation_is_reported() -> None:
    g = grouper()
    first = g.add(connect("10.0.0.5", 23, 0))
    assert first is not None and first.opened and first.incident.kind == "decoy.contact"
    probe = g.add(http("10.0.0.5", 1, "/.env", ("env-file",), Danger.MEDIUM))
    assert probe is not None and probe.escalated and not probe.opened
    assert probe.incident.kind == "probe.env" and probe.key == first.key
    same = g.add(connect("10.0.0.5", 23, 2))
    assert same is not None and not same.escalated and same.incident.kind == "probe.env"
    exploit = g.add(http("10.0.0.5", 3, "/${jndi:ldap://x/a}", ("log4shell-jndi",),
                         Danger.CRITICAL))
    assert exploit is not None and exploit.escalated
    assert (exploit.incident.kind, exploit.incident.danger) == ("exploit.log4shell",
                                                                Danger.CRITICAL)


def test_inactivity_window_splits_incidents_and_sources_stay_apart() -> None:
    g = grouper(window=900)
    g.add(connect("10.0.0.8", 23, 0))
    g.add(connect("10.0.0.8", 23, 900))  # exactly the window later: same incident
    g.add(connect("10.0.0.9", 23, 901))
    g.add(connect("10.0.0.8", 23, 1800.5))  # quiet for more than the window: a new one
    incs = sorted(all_incidents(g), key=lambda i: (i.src, i.first_seen))
    assert [(i.src, i.count) for i in incs] == [("10.0.0.8", 2), ("10.0.0.8", 1),
                                                ("10.0.0.9", 1)]


def test_private_and_loopback_sources_are_not_whitelisted() -> None:
    g = grouper()
    for src in ("127.0.0.1", "192.168.0.10", "10.1.2.3", "172.16.5.5", "::1", "fe80::1"):
        assert g.add(connect(src, 23, 0)) is not None
    assert len(g) == 6


def test_ordinary_traffic_and_sensor_events_open_nothing() -> None:
    g = grouper()
    assert g.add(http("203.0.113.1", 0, "/index.html")) is None
    assert g.add(failure("203.0.113.1", 1, "me", EventType.AUTH_SUCCESS)) is None
    assert g.add(Event(time=at(2), type=EventType.SENSOR_ERROR, source="decoy",
                       fields=MappingProxyType({"reason": "port in use"}))) is None
    assert len(g) == 0


def test_a_login_after_a_brute_force_raises_the_danger() -> None:
    g, det = grouper(), Detectors(DetectConfig(brute_failures=3))
    run(g, det, [failure("198.51.100.20", i) for i in range(3)])
    fold = g.add(failure("198.51.100.20", 5, "root", EventType.AUTH_SUCCESS))
    assert fold is not None and fold.escalated
    assert fold.incident.kind == "bruteforce" and fold.incident.danger is Danger.HIGH
    assert any("login succeeded" in ex for ex in fold.incident.examples)


def test_wall_clock_expiry_and_the_open_bound() -> None:
    g = grouper(window=60, max_open=100)
    for i in range(1_000):
        g.add(connect(f"10.2.{i >> 8}.{i & 255}", 23, i / 100))
    assert len(g) == 100 and g.closed_early == 900
    closed = g.drain_closed()
    assert len(closed) == 900 and len({k for k, _ in closed}) == 900
    assert g.expire(at(10 + 61)) == 100 and len(g) == 0


def test_examples_are_bounded_and_keep_the_telling_ones() -> None:
    g = grouper(max_examples=3)
    for i in range(20):
        g.add(connect("10.3.3.3", 1000 + i, i * 0.1))
    fold = g.add(http("10.3.3.3", 3, "/default.ida?NNNN", ("codered",), Danger.HIGH))
    assert fold is not None
    assert len(fold.incident.examples) == 3
    assert any("codered" in ex for ex in fold.incident.examples)
