"""TCP sweep against real listeners on loopback (127.0.10.0/24, ::1) and across a veth pair
between two network namespaces the test creates (for "filtered", which loopback cannot show).
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from mamori.model import Reason
from mamori.net.limits import RttEstimator, TokenBucket
from mamori.net.sweep import SweepOptions, tcp_sweep
from mamori.net.sweepbase import close_rst, is_self_connect
from sweep_fixtures import (
    ALL_PORTS,
    TcpListeners,
    free_tcp_ports,
    netns_pair,
    run_python,
    run_tcp,
    wildcard_tcp_listeners,
)

# ---- pure helpers --------------------------------------------------------------------------


def test_rtt_estimator_starts_at_initial_and_adapts_within_clamps() -> None:
    est = RttEstimator(initial_timeout=1.0, min_timeout=0.1, max_timeout=1.5)
    assert est.timeout() == 1.0
    for _ in range(20):
        est.update(0.0001)
    assert est.timeout() == pytest.approx(0.1)  # clamped at the floor
    for _ in range(50):
        est.update(0.2)
    # srtt -> 0.2, rttvar -> small: timeout a little above the real RTT
    assert 0.2 <= est.timeout() < 0.45
    est.update(10.0)
    assert est.timeout() == 1.5  # never above the user's --timeout
    assert RttEstimator(9.0, 0.1, 1.5).timeout() == 1.5


def test_rtt_estimator_follows_jitter() -> None:
    est = RttEstimator(1.0, 0.01, 5.0)
    for i in range(40):
        est.update(0.05 if i % 2 else 0.15)
    # mean 0.1, deviation 0.05: srtt + 4*rttvar around 0.3
    assert 0.2 < est.timeout() < 0.45


def test_token_bucket_rate() -> None:
    t = 1000.0
    bucket = TokenBucket(100.0, burst=1, now=t)
    granted = 0
    for i in range(100):
        granted += bucket.take(10, now=t + i * 0.01)
    assert 95 <= granted <= 101  # ~1 s at 100/s
    assert bucket.take(5, now=t + 0.995) == 0
    assert bucket.wait_time(now=t + 0.995) > 0


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        SweepOptions(min_timeout=2.0, max_timeout=1.0)
    with pytest.raises(ValueError):
        SweepOptions(rate=0)
    with pytest.raises(ValueError):
        SweepOptions(max_inflight=0)
    with pytest.raises(ValueError):
        SweepOptions(source_address="localhost")


def test_targets_are_validated() -> None:
    with pytest.raises(ValueError):
        tcp_sweep(["localhost"], [80], SweepOptions(), lambda r: None)
    with pytest.raises(ValueError):
        tcp_sweep(["127.0.10.1"], [0], SweepOptions(), lambda r: None)
    with pytest.raises(ValueError):
        tcp_sweep(["127.0.10.1"], [65536], SweepOptions(), lambda r: None)


# ---- loopback ------------------------------------------------------------------------------


def test_full_sweep_finds_exactly_the_listeners_ipv4() -> None:
    host = "127.0.10.1"
    # One listener inside the ephemeral range, where self-connects would lurk.
    ports = [*free_tcp_ports(host, 4), *free_tcp_ports(host, 1, 40000, 41000)]
    wild_before = wildcard_tcp_listeners()
    with TcpListeners([(host, p) for p in ports]):
        run = run_tcp([host], ALL_PORTS)
    wild_after = wildcard_tcp_listeners()
    stats = run.stats
    assert stats is not None
    opened = run.ports("open")
    assert set(ports) <= opened
    # Anything else open must be some process listening on every address (0.0.0.0 / ::).
    assert opened - set(ports) <= wild_before | wild_after
    assert not run.errors
    counts = stats.counts[host]
    assert counts["filtered"] == 0
    assert counts["open"] == len(opened)
    assert counts["open"] + counts["closed"] == len(ALL_PORTS)
    assert stats.attempts == len(ALL_PORTS)
    assert sum(run.progress) == len(ALL_PORTS)
    assert len(run.progress) < 200  # batched, not per port
    assert all(r.reason is Reason.SYN_ACK and r.rtt_ms is not None for r in run.results)


def test_ipv6_loopback() -> None:
    ports = free_tcp_ports("::1", 3)
    wild = wildcard_tcp_listeners()
    with TcpListeners([("::1", p) for p in ports]):
        run = run_tcp(["::1"], range(15000, 35000))
    assert run.stats is not None
    assert set(ports) <= run.ports("open")
    assert run.ports("open") - set(ports) <= wild
    assert run.stats.counts["::1"]["closed"] == 20000 - len(run.ports("open"))
    assert not run.errors


def test_multi_host_sweep_keeps_hosts_apart() -> None:
    hosts = [f"127.0.10.{i}" for i in range(20, 28)]
    listen = [("127.0.10.21", 25111), ("127.0.10.26", 25111), ("127.0.10.26", 25222)]
    ports = list(range(25000, 25500))
    wild = wildcard_tcp_listeners()
    with TcpListeners(listen):
        run = run_tcp(hosts, ports)
    found = {(a, p) for a, p in run.by_state("open") if p not in wild}
    assert found == set(listen)
    assert run.stats is not None
    for h in hosts:
        assert sum(run.stats.counts[h].values()) == len(ports)


def test_two_workers_and_one_worker_agree() -> None:
    host = "127.0.10.5"
    ports = free_tcp_ports(host, 3)
    with TcpListeners([(host, p) for p in ports]):
        one = run_tcp([host], range(20000, 30000), SweepOptions(workers=1))
        two = run_tcp([host], range(20000, 30000), SweepOptions(workers=2))
        # All lanes in worker processes, the caller only draining (what the CLI runs).
        forked = run_tcp([host], range(20000, 30000), SweepOptions(workers=2, parent_lane=False))
    assert one.ports("open") == two.ports("open") == forked.ports("open")
    assert set(ports) <= one.ports("open")
    assert one.stats is not None and two.stats is not None and forked.stats is not None
    assert one.stats.counts == two.stats.counts == forked.stats.counts
    assert forked.stats.attempts >= 10000


def test_self_connect_is_detected_directly() -> None:
    host = "127.0.10.9"
    port, other = free_tcp_ports(host, 2, 45000, 50000)
    s = socket.socket()
    s.bind((host, port))
    s.settimeout(2)
    s.connect((host, port))  # TCP simultaneous open with itself: "connects"
    try:
        assert is_self_connect(s)
    finally:
        close_rst(s)
    with TcpListeners([(host, other)]) as lst:
        c = socket.create_connection(lst.endpoints[0], timeout=2)
        try:
            assert not is_self_connect(c)
        finally:
            c.close()


def test_sweep_reports_self_connect_as_closed() -> None:
    # Bound to the target's own address, the sweep's socket (source port P, drawn from the
    # ephemeral range) meets itself when it probes port P: simultaneous open, not a listener.
    host = "127.0.10.9"
    ephemeral = range(32768, 61000)
    wild = wildcard_tcp_listeners()
    self_connects = 0
    for _ in range(3):
        run = run_tcp([host], ephemeral, SweepOptions(source_address=host, workers=1))
        assert run.stats is not None
        assert run.ports("open") <= wild  # never reported open
        self_connects += run.stats.self_connects
        if self_connects:
            break
    assert self_connects >= 1


def test_rate_cap_is_honoured() -> None:
    host = "127.0.10.2"
    t0 = time.monotonic()
    run = run_tcp([host], range(20000, 20300), SweepOptions(rate=1000))
    elapsed = time.monotonic() - t0
    assert run.stats is not None and run.stats.attempts == 300
    assert elapsed >= 0.28  # 300 attempts at 1000/s (burst 10)
    fast = run_tcp([host], range(20000, 20300))
    assert fast.stats is not None and fast.stats.elapsed < elapsed


def test_should_stop_ends_the_sweep_early() -> None:
    host = "127.0.10.3"
    t0 = time.monotonic()
    deadline = t0 + 0.3
    run = run_tcp(
        [host], ALL_PORTS, SweepOptions(rate=5000), should_stop=lambda: time.monotonic() > deadline
    )
    assert run.stats is not None
    assert run.stats.stopped
    assert time.monotonic() - t0 < 1.5
    decided = sum(run.stats.counts[host].values())
    assert 0 < decided < len(ALL_PORTS)
    assert sum(run.progress) == decided


def test_callback_exception_propagates_and_stops() -> None:
    host = "127.0.10.4"
    with TcpListeners([(host, p) for p in free_tcp_ports(host, 2)]):

        def boom(_r: object) -> None:
            raise RuntimeError("consumer failed")

        with pytest.raises(RuntimeError, match="consumer failed"):
            tcp_sweep([host], range(20000, 30000), SweepOptions(workers=2), boom)
    assert _children() == set()  # the worker process was stopped and reaped


def _children() -> set[int]:
    kids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
            kids.update(int(x) for x in fh.read().split())
    return kids


def test_should_stop_with_worker_processes() -> None:
    host = "127.0.10.7"
    t0 = time.monotonic()
    run = run_tcp(
        [host],
        ALL_PORTS,
        SweepOptions(workers=2),
        should_stop=lambda: time.monotonic() - t0 > 0.15,
    )
    assert run.stats is not None and run.stats.stopped
    decided = sum(run.stats.counts[host].values())
    assert 0 < decided < len(ALL_PORTS)
    assert sum(run.progress) == decided
    assert _children() == set()


def test_worker_crash_is_raised_not_hidden() -> None:
    data = run_python(
        """
        import json, os
        import mamori.net.tcplane as tl
        from mamori.net.sweep import SweepOptions, WorkerCrash, tcp_sweep
        parent = os.getpid()
        real_run = tl.TcpLane.run
        def run(self):
            if os.getpid() != parent:
                raise ZeroDivisionError("bug in a worker")
            return real_run(self)
        tl.TcpLane.run = run
        try:
            tcp_sweep(["127.0.10.8"], range(20000, 30000), SweepOptions(workers=2), print)
            out = {"raised": None}
        except WorkerCrash as exc:
            out = {"raised": str(exc)}
        print(json.dumps(out))
        """
    )
    assert data["raised"] is not None
    assert "ZeroDivisionError: bug in a worker" in data["raised"]


# ---- descriptor limits and back-off (fresh interpreters: they change process limits) --------


def test_fd_limit_is_raised_toward_hard_but_never_beyond() -> None:
    data = run_python(
        """
        import json, resource
        from mamori.net.limits import inflight_budget
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300))
        budget = inflight_budget(None)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(json.dumps({"budget": budget, "soft": soft, "hard": hard}))
        """
    )
    assert data["hard"] == 300
    assert data["soft"] == 300  # raised to the hard limit, not beyond
    assert isinstance(data["budget"], int) and 100 < data["budget"] < 300


def test_descriptor_exhaustion_backs_off_instead_of_reporting_closed() -> None:
    # The sweep starts with no descriptor left (another thread holds them all) and gets them
    # back 0.3 s later: socket() fails with EMFILE meanwhile. The sweep must wait and finish
    # with exact results: no errors, nothing "closed" that was not probed.
    data = run_python(
        """
        import json, os, resource, socket, threading, time
        from mamori.net.sweep import SweepOptions, tcp_sweep
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        host = "127.0.10.6"
        listeners = []
        for port in (21001, 38002, 52003):
            s = socket.socket(); s.bind((host, port)); s.listen(64); listeners.append(s)
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        released = []
        def release():
            time.sleep(0.3)
            released.append(time.monotonic())
            for fd in fds:
                os.close(fd)
        threading.Thread(target=release).start()
        ports = [p for p in range(1, 65536) if p != 2024]
        found, errors = [], []
        t0 = time.monotonic()
        st = tcp_sweep([host], ports, SweepOptions(), lambda r: found.append(r.port),
                       lambda e: errors.append(e.detail))
        print(json.dumps({"found": sorted(found), "errors": errors, "counts": st.counts[host],
                          "backoffs": st.backoffs, "t0": t0, "t1": time.monotonic(),
                          "released": released[0]}))
        """
    )
    assert data["errors"] == []
    assert {21001, 38002, 52003} <= set(data["found"])
    counts = data["counts"]
    assert isinstance(counts, dict)
    assert counts["open"] + counts["closed"] == len(ALL_PORTS)
    assert counts["filtered"] == 0
    assert data["t1"] > data["released"]
    assert isinstance(data["backoffs"], int) and data["backoffs"] >= 1


# ---- filtered, for real: two namespaces, nftables dropping/rejecting in the far one ---------

_FAR_TCP_SERVER = """
import socket, sys, threading
socks = []
for port in (8001, 8002, 8003):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{far}", port)); s.listen(64); socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

_NEAR_SWEEP = """
import json
from mamori.net.sweep import SweepOptions, tcp_sweep
res, errs = [], []
st = tcp_sweep(["{far}"], {ports!r}, SweepOptions(**{opts!r}),
               lambda r: res.append([r.port, r.state.value, r.reason.value]),
               lambda e: errs.append(e.detail))
print(json.dumps({{"results": res, "errors": errs, "counts": st.counts["{far}"],
                  "attempts": st.attempts, "retried": st.retried, "elapsed": st.elapsed}}))
"""


@pytest.mark.root
def test_filtered_closed_open_across_namespaces() -> None:
    with netns_pair(subnet=41) as ns:
        ns.nft(
            ns.far,
            """
            table inet mamori_test {
              chain input {
                type filter hook input priority 0; policy accept;
                tcp dport { 8002, 9002 } drop
                tcp dport 8003 reject with icmpx type admin-prohibited
              }
            }
            """,
        )
        ns.serve(_FAR_TCP_SERVER.format(far=ns.far_ip))
        ports = [8001, 8002, 8003, 9001, 9002]
        opts = {"initial_timeout": 0.3, "min_timeout": 0.1, "max_timeout": 0.5, "retries": 1}
        data = run_python(_NEAR_SWEEP.format(far=ns.far_ip, ports=ports, opts=opts), netns=ns.near)
    states = {p: (s, r) for p, s, r in data["results"]}
    assert states[8001] == ("open", "syn-ack")
    assert states[8002] == ("filtered", "no-response")  # a listener, but DROPped
    assert states[8003] == ("filtered", "host-unreach")  # ICMP admin-prohibited
    assert states[9002] == ("filtered", "no-response")
    assert 9001 not in states  # closed (RST): only counted
    assert data["counts"] == {"open": 1, "closed": 1, "filtered": 3}
    assert data["errors"] == []
    # Each silent port was tried once more before being called filtered.
    assert data["retried"] == 2
    assert data["attempts"] == len(ports) + 2


@pytest.mark.root
def test_per_host_cap_and_adaptive_timeout_across_namespaces() -> None:
    # 20 dropped ports, at most 5 in flight, 0.2 s per try, 2 tries: >= 4 waves * 0.4 s.
    with netns_pair(subnet=42) as ns:
        ns.nft(
            ns.far,
            """
            table inet mamori_test {
              chain input {
                type filter hook input priority 0; policy accept;
                tcp dport 9000-9019 drop
              }
            }
            """,
        )
        ports = list(range(9000, 9020))
        capped = {
            "initial_timeout": 0.2,
            "min_timeout": 0.2,
            "max_timeout": 0.2,
            "per_host": 5,
            "workers": 1,
        }
        data = run_python(
            _NEAR_SWEEP.format(far=ns.far_ip, ports=ports, opts=capped), netns=ns.near
        )
        assert data["counts"] == {"open": 0, "closed": 0, "filtered": 20}
        assert data["elapsed"] >= 1.5
        # The global cap bounds the same way when no per-host cap is given.
        capped = {**capped, "per_host": None, "max_inflight": 5}
        data = run_python(
            _NEAR_SWEEP.format(far=ns.far_ip, ports=ports, opts=capped), netns=ns.near
        )
        assert data["counts"] == {"open": 0, "closed": 0, "filtered": 20}
        assert data["elapsed"] >= 1.5
        # Without caps all 20 wait at once: two 0.2 s rounds.
        free = {**capped, "max_inflight": None}
        data = run_python(_NEAR_SWEEP.format(far=ns.far_ip, ports=ports, opts=free), netns=ns.near)
        assert data["counts"] == {"open": 0, "closed": 0, "filtered": 20}
        assert data["elapsed"] < 1.2
        # Closed ports answer at once: the measured RTT pulls the timeout down to min_timeout
        # (0.05 s) long before the initial 1 s, so 2 dropped ports after 2000 closed ones
        # take well under the 2 * 1 s an unadapted sweep would need.
        mixed = list(range(7000, 9002))
        adaptive = {"initial_timeout": 1.0, "min_timeout": 0.05, "max_timeout": 1.5}
        data = run_python(
            _NEAR_SWEEP.format(far=ns.far_ip, ports=mixed, opts=adaptive), netns=ns.near
        )
        assert data["counts"] == {"open": 0, "closed": 2000, "filtered": 2}
        assert data["elapsed"] < 1.0
