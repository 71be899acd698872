"""Native nftables rules in tables iptables also names, and the firewall-inactive finding per
address family: real rulesets loaded in test namespaces (10.211.<n>.0/30, fd00:211:<n>::/64),
read back with the real nft / iptables-save, decided, and proved by real connects over IPv4
and IPv6 from the near namespace."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from fixtures_firewall import NetnsRunner, netns_unavailable
from mamori.audit.firewall import FirewallState, decide, detect
from mamori.audit.inside import exposure_results
from mamori.model import CheckStatus, Proto
from mamori.model.audit import Listener, Scope, Verdict
from netns import veth_pair

TCP = Proto.TCP
PORTS = [22, 80, 443, 8080]


@dataclass
class DualPair:
    near: str
    far: str
    far4: str
    far6: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, ns: str, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(["ip", "netns", "exec", ns, *args], input=stdin, text=True,
                             capture_output=True, check=False, timeout=30)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    def nft(self, script: str) -> None:
        self.run(self.far, "nft", "-f", "-", stdin=script)

    def restore(self, text: str, family: int = 4) -> None:
        self.run(self.far, "ip6tables-restore" if family == 6 else "iptables-restore",
                 stdin=text)

    def listen(self, ports: Sequence[int]) -> None:
        """Dual-stack TCP listeners on [::]:<ports> (IPv4 too) in the far namespace."""
        code = f"""
            import select, socket, sys
            socks = []
            for p in {list(ports)!r}:
                s = socket.socket(socket.AF_INET6)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("::", p)); s.listen(16); socks.append(s)
            print("ready", flush=True)
            while True:
                r, _, _ = select.select(socks + [sys.stdin], [], [])
                if sys.stdin in r:
                    break
                for s in r:
                    c, _ = s.accept(); c.close()
        """
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.far, sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

    def connect(self, ports: Sequence[int]) -> dict[tuple[int, int], bool]:
        """Real connects from near to far over IPv4 and IPv6: (port, family) -> opened.
        2.5 s each: a first SYN lost while the neighbour is resolved is sent again at 1 s."""
        code = f"""
            import json, socket, threading
            res = {{}}
            def one(p, fam, addr):
                s = socket.socket(fam); s.settimeout(2.5)
                try:
                    s.connect((addr, p)); res[f"{{p}}/{{4 if fam == socket.AF_INET else 6}}"] = 1
                except OSError:
                    res[f"{{p}}/{{4 if fam == socket.AF_INET else 6}}"] = 0
                finally:
                    s.close()
            ts = [threading.Thread(target=one, args=(p, f, a)) for p in {list(ports)!r}
                  for f, a in ((socket.AF_INET, {self.far4!r}), (socket.AF_INET6, {self.far6!r}))]
            [t.start() for t in ts]; [t.join() for t in ts]
            print(json.dumps(res))
        """
        out = self.run(self.near, sys.executable, "-c", textwrap.dedent(code))
        got = json.loads(out.strip().splitlines()[-1])
        return {(int(k.split("/")[0]), int(k.split("/")[1])): bool(v) for k, v in got.items()}


@contextlib.contextmanager
def dual_pair(n: int) -> Iterator[DualPair]:
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    tag = f"{os.getpid() % 100000}-{n}"
    pair = DualPair(f"mfn-n{tag}", f"mfn-f{tag}", f"10.211.{n}.2", f"fd00:211:{n}::2")
    with veth_pair(pair.near, pair.far, (f"mfnn{tag}"[:15], f"mfnf{tag}"[:15]),
                   ([f"10.211.{n}.1/30", f"fd00:211:{n}::1/64"],
                    [f"10.211.{n}.2/30", f"fd00:211:{n}::2/64"]), pair.procs):
        yield pair


def may_connect(state: FirewallState, port: int, family: int) -> bool:
    d = decide(state, TCP, port, family)
    assert d.verdict is not Verdict.UNDETERMINED, (port, family, d)
    return d.verdict in (Verdict.ALLOWED, Verdict.NO_FIREWALL) and not d.only_from


def assert_proved(pair: DualPair, state: FirewallState) -> None:
    """The kernel's behaviour and mamori's reading agree for every port and family."""
    seen = pair.connect(PORTS)
    for (port, family), opened in seen.items():
        assert opened == may_connect(state, port, family), (port, family, seen,
                                                            decide(state, TCP, port, family))


# ---- item 20: native rules in tables iptables-save cannot show --------------------------------

NATIVE = {
    # The case people write by hand: iptables-save prints "incompatible base-chains" and an
    # empty INPUT ACCEPT chain for it.
    "ip filter": """
        table ip filter {
          chain input { type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        tcp dport 22 accept; }
        }""",
    "ip6 filter": """
        table ip6 filter {
          chain input { type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
                        tcp dport 22 accept; }
        }""",
    "inet filter": """
        table inet filter {
          chain input { type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
                        tcp dport 22 accept; }
        }""",
    # A filter chain in a table named nat (iptables-save: "nat contains incompatible ...").
    "ip nat": """
        table ip nat {
          chain prerouting { type nat hook prerouting priority -100; policy accept; }
          chain input { type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        tcp dport 22 accept; }
        }""",
    "ip custom": """
        table ip custom {
          chain input { type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        tcp dport 22 accept; }
        }""",
    # Chain named like iptables' own, so iptables-save calls it compatible, but the set is
    # beyond it: it prints "-A INPUT -p tcp -j ACCEPT" (every TCP port).
    "ip filter INPUT with a set": """
        table ip filter {
          chain INPUT { type filter hook input priority 0; policy drop;
                        tcp dport { 22, 443 } accept; }
        }""",
}
EXPECTED_OPEN = {
    "ip filter": {22},
    "ip6 filter": {22},
    "inet filter": {22},
    "ip nat": {22},
    "ip custom": {22},
    "ip filter INPUT with a set": {22, 443},
}


@pytest.mark.root
@pytest.mark.parametrize("case", list(NATIVE))
def test_native_table_is_read_from_nft(case: str) -> None:
    with dual_pair(1 + list(NATIVE).index(case)) as pair:
        pair.listen(PORTS)
        pair.nft(textwrap.dedent(NATIVE[case]) + "\n")
        if case == "ip filter INPUT with a set":  # the lie this case is about
            assert "-A INPUT -p tcp -j ACCEPT" in pair.run(pair.far, "iptables-save")
        state = detect(NetnsRunner(pair.far))
        assert state.problem is None, state
        family, _, _ = case.partition(" ")
        families = {"ip": {4}, "ip6": {6}, "inet": {4, 6}}[family]
        for fam in (4, 6):
            for port in PORTS:
                d = decide(state, TCP, port, fam)
                if fam not in families:
                    assert d.verdict is Verdict.NO_FIREWALL, (fam, port, d)
                elif port in EXPECTED_OPEN[case]:
                    assert d.verdict is Verdict.ALLOWED, (fam, port, d)
                else:
                    assert d.verdict is Verdict.BLOCKED, (fam, port, d)
                    assert "policy drop" in d.reason and "nftables" in d.backend, d
        assert_proved(pair, state)


@pytest.mark.root
def test_iptables_nft_rules_and_native_rules_side_by_side() -> None:
    """iptables-nft writes INPUT (with an xt multiport match nft cannot show natively); a
    native chain "input" is added to the same table by hand. Both run; iptables-save calls the
    table incompatible and shows only INPUT; nft shows both but INPUT's match only as "xt"."""
    with dual_pair(11) as pair:
        pair.listen(PORTS)
        pair.restore("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n"
                     "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                     "-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT\nCOMMIT\n")
        pair.nft("add chain ip filter input { type filter hook input priority 10; "
                 "policy accept; }\nadd rule ip filter input tcp dport 443 drop\n")
        saved = pair.run(pair.far, "iptables-save")
        assert "incompatible" in saved and "--dports 22,80,443" in saved
        state = detect(NetnsRunner(pair.far))
        assert state.problem is None, state
        v4 = {p: decide(state, TCP, p, 4) for p in PORTS}
        assert v4[22].verdict is Verdict.ALLOWED and v4[80].verdict is Verdict.ALLOWED, v4
        assert v4[443].verdict is Verdict.BLOCKED and "dport 443 drop" in v4[443].reason, v4
        assert v4[8080].verdict is Verdict.BLOCKED and "policy drop" in v4[8080].reason, v4
        assert_proved(pair, state)


# ---- item 21: firewall-inactive from the same reading, per family -----------------------------


@pytest.mark.root
def test_firewall_inactive_names_the_unfiltered_family() -> None:
    with dual_pair(12) as pair:
        pair.listen(PORTS)
        pair.restore("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n"
                     "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                     "-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
        state = detect(NetnsRunner(pair.far))
        listeners = [
            Listener(TCP, "0.0.0.0", 22, Scope.ALL, 10, "sshd"),
            Listener(TCP, "0.0.0.0", 8080, Scope.ALL, 11, "web"),
            Listener(TCP, "::", 443, Scope.ALL, 12, "dual"),
        ]
        verdicts = {lst.port: decide(state, TCP, lst.port, lst.family).verdict
                    for lst in listeners}
        assert verdicts == {22: Verdict.ALLOWED, 8080: Verdict.BLOCKED,
                            443: Verdict.NO_FIREWALL}
        results = exposure_results(
            listeners, lambda lst: decide(state, lst.proto, lst.port, lst.family))
        (inactive,) = [r for r in results if r.check_id == "firewall-inactive"]
        assert inactive.status is CheckStatus.FINDING
        assert inactive.summary.startswith("IPv6 has no inbound rules"), inactive.summary
        assert "IPv4" in inactive.summary and "iptables" in inactive.summary
        assert "all empty or absent" not in inactive.summary
        seen = pair.connect([22, 443, 8080])
        assert seen[(22, 4)] and not seen[(8080, 4)] and seen[(443, 6)] and seen[(8080, 6)]

        pair.restore("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n"
                     "-A INPUT -p ipv6-icmp -j ACCEPT\n"
                     "-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n", 6)
        state = detect(NetnsRunner(pair.far))
        results = exposure_results(
            listeners, lambda lst: decide(state, lst.proto, lst.port, lst.family))
        assert not [r for r in results if r.check_id == "firewall-inactive"]


def test_firewall_inactive_when_both_families_are_unfiltered() -> None:
    from mamori.model.audit import FirewallDecision

    listeners = [Listener(TCP, "0.0.0.0", 22, Scope.ALL), Listener(TCP, "::", 22, Scope.ALL)]

    def none(lst: Listener) -> FirewallDecision:
        return FirewallDecision(Verdict.NO_FIREWALL, "none", f"IPv{lst.family}: no ruleset loaded")

    (inactive,) = [r for r in exposure_results(listeners, none)
                   if r.check_id == "firewall-inactive"]
    assert inactive.summary.startswith("IPv4 and IPv6 have no inbound rules"), inactive.summary


# ---- the pure parts, on recorded output -------------------------------------------------------

INCOMPATIBLE_SAVE = """# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Dec  7 23:53:35 2026
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
# Completed on Mon Dec  7 23:53:35 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Dec  7 23:53:35 2026
*mangle
:PREROUTING ACCEPT [0:0]
COMMIT
"""  # noqa: E501 (iptables-save's own line)


def test_save_info_and_split_name_the_incompatible_table() -> None:
    from mamori.audit.firewall.iptables import save_info
    from mamori.audit.firewall.tables import split_save

    assert save_info(INCOMPATIBLE_SAVE).incompatible == ("filter",)
    whole = "# Table `mangle' is incompatible, use 'nft' tool.\n"  # nothing else printed
    assert save_info(whole).incompatible == ("mangle",)
    kept, moved = split_save(INCOMPATIBLE_SAVE, ["filter"])
    assert "*filter" in moved and "--dport 80" in moved and "*filter" not in kept
    assert "*mangle" in kept and "*mangle" not in moved


def test_beyond_iptables_sees_sets_not_xt() -> None:
    from mamori.audit.firewall.tables import beyond_iptables

    def rule(table: str, *expr: object) -> dict[str, object]:
        return {"rule": {"family": "ip", "table": table, "chain": "INPUT", "expr": list(expr)}}

    doc = json.dumps({"nftables": [
        rule("filter", {"match": {"op": "==", "left": {"payload": {"protocol": "tcp",
             "field": "dport"}}, "right": {"set": [22, 443]}}}, {"accept": None}),
        rule("mangle", {"xt": {"type": "match", "name": "multiport"}}, {"accept": None}),
        rule("raw", {"match": {"op": "==", "left": {"payload": {"protocol": "ip",
             "field": "saddr"}}, "right": "@blocked"}}, {"drop": None}),
        rule("security", {"match": {"op": "==", "left": {"payload": {"protocol": "tcp",
             "field": "dport"}}, "right": {"set": [1]}}}, {"accept": None}),
    ]})
    owned = {("ip", "filter"), ("ip", "mangle"), ("ip", "raw")}
    assert beyond_iptables(doc, owned) == {("ip", "filter"), ("ip", "raw")}
    assert beyond_iptables("not json", owned) == set()


def test_incompatible_table_without_nft_is_undetermined_not_open() -> None:
    """iptables-save's empty INPUT ACCEPT for a table it cannot show is no reading at all:
    without nft to read the table, every verdict is undetermined, with the reason."""
    from mamori.audit.runner import ReplayRunner

    runner = ReplayRunner({"iptables-save": {"stdout": INCOMPATIBLE_SAVE},
                           "ip6tables-save": {"stdout": ""}})  # nft not installed
    state = detect(runner)
    d = decide(state, TCP, 8080, 4)
    assert d.verdict is Verdict.UNDETERMINED, d
    assert "filter" in d.reason and "nft" in d.reason, d
