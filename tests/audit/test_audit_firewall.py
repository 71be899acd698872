"""Firewall evaluation: real rulesets loaded in test namespaces, read back with the real tools,
decided, and checked against real TCP connects from a second namespace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures_firewall import (
    ADDRESS_SET_PORTS,
    DEFAULT_ACCEPT_NFT,
    DEFAULT_DROP_IPTABLES,
    DEFAULT_DROP_NFT,
    FIREWALLD_SERVICES,
    FIREWALLD_ZONES,
    UFW_SAVE,
    Pair,
    address_set_nft,
    netns_pair,
    ufw_root,
)
from mamori.audit.firewall import FirewallState, decide, detect, detect_and_decide
from mamori.audit.firewall.evaluate import decide_ruleset
from mamori.audit.firewall.firewalld import FirewalldState, decide_firewalld, parse_zones
from mamori.audit.firewall.iptables import parse_iptables_save
from mamori.audit.firewall.nftables import parse_nft_json
from mamori.audit.firewall.ufw import parse_ufw_status
from mamori.audit.runner import ReplayRunner
from mamori.model import Proto
from mamori.model.audit import Verdict

TCP = Proto.TCP


def assert_behaviour(pair: Pair, state: FirewallState, ports: list[int]) -> None:
    """The proof: a real connect from the near namespace succeeds exactly where decide()
    says the near host may connect (allowed for anyone, or allowed from a set naming it)."""
    seen = pair.connect(ports)
    for port in ports:
        d = decide(state, TCP, port, 4)
        may = d.verdict in (Verdict.ALLOWED, Verdict.NO_FIREWALL) and (
            not d.only_from or any(pair.near_ip in s for s in d.only_from)
        )
        assert (seen[port] == "open") == may, (port, seen[port], d)


# ---- real rulesets in namespaces --------------------------------------------------------


@pytest.mark.root
def test_no_ruleset_and_default_accept() -> None:
    with netns_pair(1) as pair:
        pair.listen([22, 8080])
        state = detect(pair.runner())
        assert state.problem is None
        d = decide(state, TCP, 8080, 4)
        assert d.verdict is Verdict.NO_FIREWALL and "no ruleset" in d.reason
        assert_behaviour(pair, state, [22, 8080])

        pair.nft(DEFAULT_ACCEPT_NFT)
        state = detect(pair.runner())
        assert state.backend == "nftables"
        d = decide(state, TCP, 8080, 4)
        assert d.verdict is Verdict.NO_FIREWALL and "policy accept" in d.reason
        assert_behaviour(pair, state, [22, 8080])


@pytest.mark.root
def test_default_drop_nft_with_allowed_ports() -> None:
    with netns_pair(2) as pair:
        pair.listen([22, 443, 8080])
        pair.nft(DEFAULT_DROP_NFT)
        state = detect(pair.runner())
        assert state.backend == "nftables"
        for port in (22, 443):
            d = decide(state, TCP, port, 4)
            assert d.verdict is Verdict.ALLOWED and "dport {22, 443} accept" in d.reason
            assert decide(state, TCP, port, 6).verdict is Verdict.ALLOWED  # inet: both
        d = decide(state, TCP, 8080, 4)
        # ct state established,related accept must not let a NEW connection in
        assert d.verdict is Verdict.BLOCKED and "policy drop" in d.reason
        assert decide(state, Proto.UDP, 443, 4).verdict is Verdict.BLOCKED
        assert decide(state, TCP, 8080, 4, iface="lo").verdict is Verdict.ALLOWED
        assert_behaviour(pair, state, [22, 443, 8080])


@pytest.mark.root
def test_default_drop_iptables_and_ip6tables() -> None:
    with netns_pair(3) as pair:
        pair.listen([22, 443, 8080])
        pair.iptables_restore(DEFAULT_DROP_IPTABLES, 4)
        pair.iptables_restore(DEFAULT_DROP_IPTABLES.replace("-p icmp", "-p ipv6-icmp"), 6)
        state = detect(pair.runner())
        assert state.backend == "iptables", state
        assert decide(state, TCP, 443, 4).verdict is Verdict.ALLOWED
        assert decide(state, TCP, 443, 6).verdict is Verdict.ALLOWED
        d = decide(state, TCP, 8080, 6)
        assert d.verdict is Verdict.BLOCKED and "ip6tables filter INPUT: policy drop" in d.reason
        assert_behaviour(pair, state, [22, 443, 8080])


@pytest.mark.root
@pytest.mark.parametrize("source", ["real-ufw", "ufw-chains"])
def test_ufw_style(tmp_path: Path, source: str) -> None:
    """real-ufw: ufw itself (private --rootdir) enables its rules inside the namespace;
    ufw-chains: the chains it writes, loaded with iptables-restore."""
    if source == "real-ufw" and not shutil.which("ufw"):
        pytest.skip("ufw is not installed")
    with netns_pair(4 if source == "real-ufw" else 7) as pair:
        pair.listen([22, 2222, 8080, 9090])
        if source == "real-ufw":
            with ufw_root(tmp_path) as root:
                ufw = ["ufw", f"--rootdir={root}", f"--datadir={root}"]
                for args in (
                    ["default", "deny", "incoming"],
                    ["allow", "22/tcp"],
                    ["limit", "2222/tcp"],
                    ["allow", "from", "10.99.0.0/16", "to", "any", "port", "9090", "proto", "tcp"],
                    ["--force", "enable"],
                ):
                    pair.exec(pair.far, *ufw, *args)
                status = parse_ufw_status(pair.exec(pair.far, *ufw, "status", "verbose"))
                assert status.active and status.default_incoming == "deny"
                assert any("2222/tcp" in r and "LIMIT" in r for r in status.rules)
        else:
            pair.iptables_restore(UFW_SAVE, 4)
        saved = pair.exec(pair.far, "iptables-save")
        assert ":ufw-user-input" in saved and "-j ufw-before-input" in saved
        rs = parse_iptables_save(saved, 4, "ufw")
        state = FirewallState("ufw", rs)
        assert decide(state, TCP, 22, 4).verdict is Verdict.ALLOWED
        d = decide(state, TCP, 2222, 4)
        assert d.verdict is Verdict.ALLOWED and "rate-limited" in d.reason
        d = decide(state, TCP, 9090, 4)
        assert d.verdict is Verdict.ALLOWED and d.only_from == ("from 10.99.0.0/16",)
        d = decide(state, TCP, 8080, 4)
        assert d.verdict is Verdict.BLOCKED and d.backend == "ufw"
        d = decide(state, TCP, 445, 4)  # ufw's after-rules drop SMB quietly
        assert d.verdict is Verdict.BLOCKED and "ufw-skip-to-policy-input" in d.reason
        assert_behaviour(pair, state, [22, 2222, 8080, 9090])


@pytest.mark.root
def test_address_set_nft() -> None:
    with netns_pair(5) as pair:
        pair.listen(ADDRESS_SET_PORTS)
        pair.nft(address_set_nft([pair.near_ip, "192.168.0.0/16"]))
        state = detect(pair.runner())
        d = decide(state, TCP, 8080, 4)
        assert d.verdict is Verdict.ALLOWED
        assert len(d.only_from) == 1 and "@allowed_src" in d.only_from[0]
        assert pair.near_ip in d.only_from[0] and "192.168.0.0/16" in d.only_from[0]
        d = decide(state, TCP, 9090, 4)
        assert d.verdict is Verdict.ALLOWED and "10.99.0.0/16" in d.only_from[0]
        assert decide(state, TCP, 22, 4).verdict is Verdict.BLOCKED
        assert decide(state, TCP, 8080, 6).verdict is Verdict.BLOCKED  # an ipv4 set
        assert_behaviour(pair, state, ADDRESS_SET_PORTS)  # 8080 open, 9090 and 22 not


@pytest.mark.root
def test_nft_and_iptables_together_drop_wins() -> None:
    """The kernel runs every input base chain: an accept in one does not beat a drop in
    another. iptables-nft's table is read from iptables-save, the native one from nft."""
    with netns_pair(6) as pair:
        pair.listen([80, 443])
        pair.nft(
            "table inet mine {\n chain input { type filter hook input priority -10; "
            "policy accept; tcp dport 80 accept; }\n}\n"
        )
        pair.iptables_restore(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n"
        )
        state = detect(pair.runner())
        assert state.backend == "nftables+iptables", state
        d = decide(state, TCP, 80, 4)
        assert d.verdict is Verdict.BLOCKED and "--dport 80 -j DROP" in d.reason
        assert decide(state, TCP, 443, 4).verdict is Verdict.ALLOWED
        assert_behaviour(pair, state, [80, 443])


# ---- parsers and walks on recorded / hand-written input -------------------------------------


def nft_doc(*rules: list[object], policy: str = "drop") -> str:
    items: list[object] = [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {
            "chain": {
                "family": "inet",
                "table": "t",
                "name": "input",
                "handle": 1,
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": policy,
            }
        },
        {"chain": {"family": "inet", "table": "t", "name": "sub", "handle": 2}},
    ]
    for r in rules:
        chain, expr = r[0], r[1:]
        items.append({"rule": {"family": "inet", "table": "t", "chain": chain, "expr": expr}})
    return json.dumps({"nftables": items})


def dport(p: object, proto: str = "tcp", op: str = "==") -> dict[str, object]:
    return {
        "match": {"op": op, "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": p}
    }


ACCEPT: dict[str, None] = {"accept": None}


def test_nft_unknown_on_the_path_is_undetermined_with_the_reason() -> None:
    mark = {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}
    rs = parse_nft_json(nft_doc(["input", mark, dport(8080), ACCEPT]))
    d = decide_ruleset(rs, TCP, 8080, 4)
    assert d.verdict is Verdict.UNDETERMINED and "meta mark" in d.reason
    # the same unknown does not matter for a port the rule cannot match
    assert decide_ruleset(rs, TCP, 22, 4).verdict is Verdict.BLOCKED
    # a queue verdict hands the packet to a program: undetermined
    rs = parse_nft_json(nft_doc(["input", dport(22), {"queue": {"num": 1}}], policy="accept"))
    d = decide_ruleset(rs, TCP, 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "queue" in d.reason


def test_nft_jumps_gotos_returns_ranges_and_vmap() -> None:
    ct_vmap = {
        "vmap": {
            "key": {"ct": {"key": "state"}},
            "data": {
                "set": [
                    ["established", {"accept": None}],
                    ["related", {"accept": None}],
                    ["invalid", {"drop": None}],
                ]
            },
        }
    }
    port_vmap = {
        "vmap": {
            "key": {"payload": {"protocol": "tcp", "field": "dport"}},
            "data": {
                "set": [[25, {"drop": None}], [{"range": [100, 200]}, {"jump": {"target": "sub"}}]]
            },
        }
    }
    rs = parse_nft_json(
        nft_doc(
            ["input", ct_vmap],
            ["input", port_vmap],
            ["input", dport({"range": [1000, 2000]}), ACCEPT],
            ["input", dport(5000, "th"), ACCEPT],
            ["input", dport(1024, op="<"), {"drop": None}],
            ["input", ACCEPT],
            ["sub", dport(150), {"return": None}],
            ["sub", {"drop": None}],
        )
    )
    v = {p: decide_ruleset(rs, TCP, p, 4).verdict for p in (25, 120, 150, 1500, 80, 3000)}
    assert v == {
        25: Verdict.BLOCKED,
        120: Verdict.BLOCKED,
        150: Verdict.BLOCKED,
        1500: Verdict.ALLOWED,
        80: Verdict.BLOCKED,
        3000: Verdict.ALLOWED,
    }
    assert decide_ruleset(rs, Proto.UDP, 5000, 4).verdict is Verdict.ALLOWED  # th dport


def test_nft_jump_loop_is_undetermined_not_a_hang() -> None:
    rs = parse_nft_json(
        nft_doc(["input", {"jump": {"target": "sub"}}], ["sub", {"jump": {"target": "sub"}}])
    )
    d = decide_ruleset(rs, TCP, 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "nested" in d.reason


def test_iptables_unknown_module_and_target() -> None:
    rs = parse_iptables_save(
        "*filter\n:INPUT DROP [0:0]\n"
        "-A INPUT -p tcp -m u32 --u32 0x1 -j ACCEPT\n"
        "-A INPUT -p udp --dport 53 -j NFQUEUE --queue-num 1\nCOMMIT\n",
        4,
    )
    d = decide_ruleset(rs, TCP, 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "u32" in d.reason
    d = decide_ruleset(rs, Proto.UDP, 53, 4)
    assert d.verdict is Verdict.UNDETERMINED and "NFQUEUE" in d.reason
    assert decide_ruleset(rs, Proto.UDP, 54, 4).verdict is Verdict.BLOCKED


def test_firewalld_zones_from_recorded_output() -> None:
    zones = parse_zones(FIREWALLD_ZONES)
    assert [z.name for z in zones] == ["block", "public", "internal", "trusted"]
    runner = ReplayRunner(
        {
            "firewall-cmd --state": {"stdout": "running\n"},
            "firewall-cmd --list-all-zones": {"stdout": FIREWALLD_ZONES},
            **{
                f"firewall-cmd --info-service={k}": {"stdout": v}
                for k, v in FIREWALLD_SERVICES.items()
            },
        }
    )
    state = detect(runner)
    assert state.backend == "firewalld" and isinstance(state.rules, FirewalldState)
    assert decide(state, TCP, 22, 4).verdict is Verdict.ALLOWED
    assert decide(state, TCP, 8443, 4).verdict is Verdict.ALLOWED
    assert decide(state, Proto.UDP, 60500, 4).verdict is Verdict.ALLOWED
    d = decide(state, TCP, 23, 4)  # rejected by a rich rule, except for trusted sources
    assert d.verdict is Verdict.ALLOWED and "rich rule" in d.reason
    assert d.only_from == ("from 10.8.0.0/24 (zone trusted: target ACCEPT)",)
    assert decide_firewalld(state.rules, TCP, 23, 4, "eth0").verdict is Verdict.ALLOWED
    d = decide(state, TCP, 3306, 4)
    assert d.verdict is Verdict.ALLOWED and "from 192.168.1.0/24" in d.only_from
    d = decide(state, TCP, 445, 4)  # samba only in the internal zone (eth1), or trusted
    assert d.verdict is Verdict.ALLOWED and any("eth1" in s for s in d.only_from)
    on_eth0 = decide_firewalld(state.rules, TCP, 445, 4, iface="eth0")
    assert on_eth0.only_from == ("from 10.8.0.0/24 (zone trusted: target ACCEPT)",)
    d = decide(state, TCP, 8080, 4)  # default zone rejects; trusted sources get everything
    assert d.verdict is Verdict.ALLOWED and any("10.8.0.0/24" in s for s in d.only_from)
    no_trusted = FirewalldState(
        tuple(z for z in state.rules.zones if z.name != "trusted"), state.rules.services
    )
    d = decide_firewalld(no_trusted, TCP, 8080, 4, iface="eth0")
    assert d.verdict is Verdict.BLOCKED and d.reason == "zone public: target default (reject)"
    assert decide_firewalld(no_trusted, TCP, 445, 4).only_from == (
        "on interface eth1 (zone internal: service samba)",
    )


def test_detection_errors_are_data() -> None:
    denied = {"returncode": 1, "stderr": "Operation not permitted (you must be root)\n"}
    d = detect_and_decide(ReplayRunner({"nft -j list ruleset": denied}), TCP, 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "Operation not permitted" in d.reason
    d = detect_and_decide(ReplayRunner({}), TCP, 22, 4)  # nothing installed
    assert d.verdict is Verdict.UNDETERMINED and "cannot read the ruleset" in d.reason
    empty = ReplayRunner(
        {
            "nft -j list ruleset": {"stdout": '{"nftables": [{"metainfo": {}}]}'},
            "iptables-save": {"stdout": ""},
            "ip6tables-save": {"stdout": ""},
        }
    )
    d = detect_and_decide(empty, TCP, 22, 4)
    assert d.verdict is Verdict.NO_FIREWALL
    garbage = ReplayRunner({"nft -j list ruleset": {"stdout": "table inet x {"}})
    d = detect_and_decide(garbage, TCP, 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "not nft JSON" in d.reason


def test_ufw_status_parse() -> None:
    s = parse_ufw_status("Status: inactive\n")
    assert not s.active and s.rules == ()
