"""`mamori firewall plan`: parsing, the three backends' text, applying, and the real thing.

The two-namespace test loads the nftables plan with the real CLI (`--apply --yes`) inside a
namespace the test creates (FAR), runs listeners there and sweeps it with the real `mamori
scan` from a second namespace (NEAR). Every nft command runs inside those namespaces: the root
namespace's ruleset is compared before and after and must not change. Traffic stays on the
veth pair between the two namespaces (10.203.0.0/30, fd00:203::/64).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mamori.audit.firewall import plan_nft
from mamori.audit.firewall.plan import (
    ALIASES,
    SERVICES,
    AllowSpecError,
    Backend,
    RuleKind,
    build_plan,
    default_backend,
    parse_allow,
    plan_warnings,
)
from mamori.audit.firewall.rulesets import explain, render
from mamori.audit.runner import CommandResult
from mamori.model import Proto
from netns import ip as _ip
from netns import veth_pair

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")


# ---- --allow ------------------------------------------------------------------------------


def test_parse_allow_services_ports_and_ranges() -> None:
    got = parse_allow("https, ssh,8080/tcp,DNS,6000-6010/udp,ssh,22/tcp")
    assert [(a.proto, a.port, a.last, a.label) for a in got] == [
        (Proto.TCP, 22, 22, "ssh"),  # "22/tcp" folds into the ssh entry given first
        (Proto.TCP, 53, 53, "dns"),
        (Proto.UDP, 53, 53, "dns"),
        (Proto.TCP, 443, 443, "https"),
        (Proto.UDP, 6000, 6010, "6000-6010/udp"),
        (Proto.TCP, 8080, 8080, "8080/tcp"),
    ]
    assert parse_allow("") == ()
    assert parse_allow("domain") == parse_allow("dns")


@pytest.mark.parametrize(("spec", "message"), [
    ("telnetx", "unknown service"),
    ("8080", "say which protocol"),
    ("8080/sctp", "tcp or udp"),
    ("0/tcp", "outside 1-65535"),
    ("65536/udp", "outside 1-65535"),
    ("10-5/tcp", "runs backwards"),
    ("ssh,,https", "empty item"),
    ("x/tcp", "not a port number"),
    ("22-/tcp", "not a port number"),
])
def test_parse_allow_rejects(spec: str, message: str) -> None:
    with pytest.raises(AllowSpecError, match=message):
        parse_allow(spec)


def test_service_table_rules() -> None:
    for name, ports in SERVICES.items():
        assert name == name.lower() and name.isalnum(), name
        assert ports, name
        assert len(set(ports)) == len(ports), name
        for port, proto in ports:
            assert 0 < port < 65536 and proto in (Proto.TCP, Proto.UDP)
    for alias, target in ALIASES.items():
        assert target in SERVICES and alias not in SERVICES
    # The list, checked by hand.
    assert SERVICES["ssh"] == ((22, Proto.TCP),)
    assert SERVICES["https"] == ((443, Proto.TCP),)
    assert SERVICES["submission"] == ((587, Proto.TCP),)
    assert SERVICES["imaps"] == ((993, Proto.TCP),)
    assert set(SERVICES["dns"]) == {(53, Proto.UDP), (53, Proto.TCP)}


def test_default_backend_by_platform() -> None:
    assert default_backend("linux") is Backend.NFTABLES
    assert default_backend("darwin") is Backend.PF
    assert default_backend("freebsd14") is Backend.PF
    assert default_backend("win32") is None


# ---- the plan -----------------------------------------------------------------------------


def test_plan_order_and_ping_option() -> None:
    allowed = parse_allow("ssh,8080/tcp")
    plan = build_plan(allowed)
    kinds = plan.kinds()
    assert kinds[0] is RuleKind.DEFAULT_DENY
    assert kinds.index(RuleKind.ESTABLISHED) < kinds.index(RuleKind.ALLOW_PORT)
    assert {RuleKind.ICMP4_ECHO, RuleKind.ICMP6_ECHO, RuleKind.ICMP6_NDP} <= set(kinds)
    assert [r.allowed for r in plan.rules if r.kind is RuleKind.ALLOW_PORT] == list(allowed)
    quiet = build_plan(allowed, ping=False).kinds()
    assert RuleKind.ICMP4_ECHO not in quiet and RuleKind.ICMP6_ECHO not in quiet
    assert RuleKind.ICMP6_NDP in quiet and RuleKind.ICMP4_ERRORS in quiet
    with pytest.raises(ValueError, match="ping_rate"):
        build_plan(allowed, ping_rate=0)


def test_warnings_nothing_allowed_and_ssh_lockout() -> None:
    assert any("nothing is allowed" in w for w in plan_warnings(build_plan(())))
    web = build_plan(parse_allow("https"))
    session = "192.0.2.7 51000 192.0.2.1 22"
    assert any("port 22/tcp" in w for w in plan_warnings(web, session))
    assert plan_warnings(build_plan(parse_allow("ssh")), session) == ()
    assert plan_warnings(build_plan(parse_allow("2200-2300/tcp")),
                         "192.0.2.7 51000 192.0.2.1 2222") == ()
    assert plan_warnings(web, None) == ()


# ---- nftables text ------------------------------------------------------------------------


def _statements(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_nft_text_structure() -> None:
    plan = build_plan(parse_allow("ssh,dns,6000-6010/udp"))
    script = render(plan, Backend.NFTABLES)
    statements = _statements(script)
    assert statements[:4] == ["table inet mamori", "delete table inet mamori",
                              "table inet mamori {", "chain input {"]
    assert statements[4] == "type filter hook input priority filter; policy drop;"
    accepts = [s for s in statements if re.match(r"(tcp|udp) dport ", s)]
    assert accepts == [
        'tcp dport 22 accept comment "mamori: ssh"',
        'tcp dport 53 accept comment "mamori: dns"',
        'udp dport 53 accept comment "mamori: dns"',
        'udp dport 6000-6010 accept comment "mamori: 6000-6010/udp"',
    ]
    # Every rule has its reason written right above it.
    lines = [line.strip() for line in script.splitlines()]
    for rule in plan_nft.rules(plan):
        at = lines.index(rule.text)
        assert lines[at - 1].startswith("# "), rule.text
    assert "packet-too-big" in script and "nd-neighbor-solicit" in script
    assert "echo-request" not in render(build_plan((), ping=False), Backend.NFTABLES)


# ---- ufw text -----------------------------------------------------------------------------

_UFW_COMMAND = re.compile(
    r"ufw (--force reset|default (deny|allow) (incoming|outgoing)"
    r"|allow \d+(:\d+)?/(tcp|udp) comment '[^']+'|--force enable|status verbose)$"
)


def test_ufw_text_structure() -> None:
    script = render(build_plan(parse_allow("ssh,dns,6000-6010/udp")), Backend.UFW)
    commands = _statements(script)
    assert commands == [
        "set -e",
        "ufw --force reset",
        "ufw default deny incoming",
        "ufw default allow outgoing",
        "ufw allow 22/tcp comment 'mamori: ssh'",
        "ufw allow 53/tcp comment 'mamori: dns'",
        "ufw allow 53/udp comment 'mamori: dns'",
        "ufw allow 6000:6010/udp comment 'mamori: 6000-6010/udp'",
        "ufw --force enable",
        "ufw status verbose",
    ]
    assert script.startswith("#!/bin/sh\n")
    assert all(_UFW_COMMAND.match(c) for c in commands[1:])
    # The essentials ufw keeps in its own before*.rules are named, not silently assumed.
    for needed in ("RELATED,ESTABLISHED", "packet-too-big", "neighbour", "before6.rules"):
        assert needed in script
    marker = "--icmp-type echo-request -j ACCEPT"
    assert marker not in script
    assert marker in render(build_plan((), ping=False), Backend.UFW)


# ---- pf text ------------------------------------------------------------------------------


def test_pf_text_order_and_rules() -> None:
    script = render(build_plan(parse_allow("ssh,dns,6000-6010/udp")), Backend.PF)
    assert _statements(script) == [
        "set block-policy drop",
        "set skip on lo0",
        "scrub in all",
        "block drop in all",
        "pass out all keep state",
        "pass in inet proto icmp icmp-type { unreach timex paramprob } keep state",
        "pass in inet proto icmp icmp-type echoreq keep state",
        "pass in inet6 proto ipv6-icmp icmp6-type { unreach toobig timex paramprob } keep state",
        "pass in inet6 proto ipv6-icmp icmp6-type { routersol routeradv neighbrsol neighbradv }"
        " keep state",
        "pass in inet6 proto ipv6-icmp from fe80::/10 icmp6-type { listqry listenrep listendone }"
        " keep state",
        "pass in inet6 proto ipv6-icmp icmp6-type echoreq keep state",
        "pass in inet6 proto udp to fe80::/10 port 546 keep state",
        "pass in proto tcp to any port 22 keep state",
        "pass in proto tcp to any port 53 keep state",
        "pass in proto udp to any port 53 keep state",
        "pass in proto udp to any port 6000:6010 keep state",
    ]
    quiet = _statements(render(build_plan((), ping=False), Backend.PF))
    assert not any("echoreq" in s for s in quiet)
    assert not any(" port " in s and "546" not in s for s in quiet)


def test_explain_walks_every_rule() -> None:
    plan = build_plan(parse_allow("ssh"))
    for backend in Backend:
        text = explain(plan, backend)
        numbered = re.findall(r"^\s*(\d+)\. ", text, re.MULTILINE)
        assert numbered == [str(n) for n in range(1, len(plan.rules) + 1)], backend
    assert "tcp dport 22 accept" in explain(plan, Backend.NFTABLES)


# ---- applying through the runner seam -----------------------------------------------------


@dataclass
class ScriptedRunner:
    """Answers nft commands by their first arguments; records what ran."""

    answers: dict[str, CommandResult]
    calls: list[tuple[str, ...]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def run(self, argv: Sequence[str], timeout: float = 20.0) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        if args[-2:-1] == ("-f",):
            self.scripts.append(Path(args[-1]).read_text(encoding="utf-8"))
        key = " ".join(args[:3]) if args[1] != "-f" else "nft -f"
        return self.answers.get(key, CommandResult(args, 0, "", ""))


def test_apply_stops_at_the_failed_check() -> None:
    bad = CommandResult(("nft",), 1, "", "Error: syntax error, unexpected junk")
    runner = ScriptedRunner({"nft -c -f": bad})
    outcome = plan_nft.apply_nftables("junk\n", runner)
    assert (outcome.ok, outcome.step) == (False, "check")
    assert "syntax error" in outcome.detail
    assert [c[:3] for c in runner.calls] == [("nft", "-c", "-f")]  # never loaded
    assert runner.scripts == ["junk\n"]
    assert not Path(runner.calls[0][-1]).exists()  # the temporary file is gone


def test_apply_loads_and_verifies() -> None:
    listed = CommandResult(("nft",), 0, "table inet mamori {}", "")
    runner = ScriptedRunner({"nft list table": listed})
    script = render(build_plan(parse_allow("ssh")), Backend.NFTABLES)
    outcome = plan_nft.apply_nftables(script, runner)
    assert (outcome.ok, outcome.step, outcome.detail) == (True, "verify", "table inet mamori {}")
    assert [c[:3] for c in runner.calls] == [("nft", "-c", "-f"), ("nft", "-f", runner.calls[1][2]),
                                             ("nft", "list", "table")]
    assert runner.calls[2] == ("nft", "list", "table", "inet", "mamori")
    assert runner.scripts == [script, script]


def test_apply_reports_a_failed_load() -> None:
    runner = ScriptedRunner({"nft -f": CommandResult(("nft",), 1, "", "Error: Operation not "
                                                      "permitted")})
    outcome = plan_nft.apply_nftables("table inet mamori {}\n", runner)
    assert (outcome.ok, outcome.step) == (False, "load")
    assert "not permitted" in outcome.detail


# ---- the CLI (no system change) -----------------------------------------------------------


def _mamori(*args: str, netns: str | None = None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mamori", *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("SSH_CONNECTION", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          input=input, cwd=ROOT, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--allow", "ssh,telnetx"], "unknown service"),
    (["--allow", "8080"], "say which protocol"),
    (["--allow", "ssh", "--backend", "iptables"], "unknown --backend"),
])
def test_cli_bad_usage_is_one_line_exit_2(args: list[str], message: str) -> None:
    done = _mamori("firewall", "plan", *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_cli_writes_the_plan_and_explains_on_stderr(tmp_path: Path) -> None:
    done = _mamori("firewall", "plan", "--allow", "ssh,8080/tcp", "--backend", "pf", "--explain")
    assert done.returncode == 0, done.stderr
    assert done.stdout == render(build_plan(parse_allow("ssh,8080/tcp")), Backend.PF)
    assert " 1. set skip on lo0" in done.stderr and "pass in proto tcp" in done.stderr
    out = tmp_path / "plan.sh"
    done = _mamori("firewall", "plan", "-a", "https", "-b", "ufw", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "ufw allow 443/tcp comment 'mamori: https'" in out.read_text(encoding="utf-8")


def test_cli_apply_other_backends_changes_nothing() -> None:
    done = _mamori("firewall", "plan", "--allow", "ssh", "--backend", "ufw", "--apply", "--yes")
    assert done.returncode == 0, done.stderr
    assert "ufw allow 22/tcp" in done.stdout
    assert "nothing was changed" in done.stderr


# ---- real namespaces ----------------------------------------------------------------------


def _namespaces_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _in_ns(ns: str, *args: str, input: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          input=input, check=check, timeout=60)


def _root_ruleset_digest() -> str:
    """The root namespace's ruleset, read only (nft list changes nothing)."""
    listed = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                            check=False)
    return hashlib.sha256((listed.stdout + listed.stderr).encode()).hexdigest()


@contextlib.contextmanager
def _namespace(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.mark.root
@pytest.mark.parametrize("allow", ["ssh,8080/tcp", "", "dns,https,http3,60000-61000/udp"])
@pytest.mark.parametrize("ping", [True, False])
def test_nft_plans_pass_nft_check_mode(allow: str, ping: bool, tmp_path: Path) -> None:
    why = _namespaces_usable()
    if why:
        pytest.skip(why)
    script = tmp_path / "plan.nft"
    script.write_text(render(build_plan(parse_allow(allow), ping=ping), Backend.NFTABLES))
    with _namespace(f"fwplan-c{os.getpid() % 100000}") as ns:
        checked = _in_ns(ns, "nft", "-c", "-f", str(script), check=False)
        assert checked.returncode == 0, checked.stderr
        # Loading twice replaces the table instead of failing or duplicating rules.
        for _ in range(2):
            _in_ns(ns, "nft", "-f", str(script))
        listed = _in_ns(ns, "nft", "-j", "list", "table", "inet", "mamori").stdout
        items = json.loads(listed)["nftables"]
        chains = [i["chain"] for i in items if "chain" in i]
        assert [(c["name"], c["hook"], c["policy"]) for c in chains] == [("input", "input",
                                                                          "drop")]
        rules = [i["rule"] for i in items if "rule" in i]
        assert len(rules) == len(build_plan(parse_allow(allow), ping=ping).rules) - 1


_LISTENERS = """
import socket, sys
socks = []
for port in (22, 8080, 9000, 5432):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(16); socks.append(s)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", 9999))
import threading
def echo():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(b"echo:" + data, peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# ICMP echo over raw sockets (run as root inside NEAR): prints {"v4": bool, "v6": bool}.
_PING = """
import json, os, select, socket, struct, sys, time
def csum(data):
    if len(data) % 2: data += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def ping(family, addr):
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    req, rep = (8, 0) if family == socket.AF_INET else (128, 129)
    s = socket.socket(family, socket.SOCK_RAW, proto)
    ident = os.getpid() & 0xffff
    for seq in range(3):
        body = struct.pack("!BBHHH", req, 0, 0, ident, seq) + b"mamori-fwplan"
        if family == socket.AF_INET:
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        s.sendto(body, (addr, 0))
        end = time.monotonic() + 1.0
        while (left := end - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data = s.recv(2048)
            if family == socket.AF_INET:
                data = data[(data[0] & 0x0f) * 4:]
            t, _, _, i, _ = struct.unpack("!BBHHH", data[:8])
            if t == rep and i == ident:
                return True
    return False
print(json.dumps({"v4": ping(socket.AF_INET, sys.argv[1]),
                  "v6": ping(socket.AF_INET6, sys.argv[2])}))
"""


@dataclass
class Pair:
    near: str
    far: str
    far4: str = "10.203.0.2"
    far6: str = "fd00:203::2"
    procs: list[subprocess.Popen[str]] = field(default_factory=list)


@contextlib.contextmanager
def _pair() -> Iterator[Pair]:
    """NEAR (10.203.0.1, fd00:203::1) and FAR (10.203.0.2, fd00:203::2) joined by a veth
    pair; no other interface, no route out. Deleted on the way out, even on failure."""
    tag = os.getpid() % 100000
    pair = Pair(f"fwplan-near{tag}", f"fwplan-far{tag}")
    with veth_pair(pair.near, pair.far, (f"fwpn{tag}", f"fwpf{tag}"),
                   (["10.203.0.1/30", "fd00:203::1/64"], ["10.203.0.2/30", "fd00:203::2/64"]),
                   pair.procs):
        yield pair


def _start_listeners(pair: Pair) -> None:
    proc = subprocess.Popen(["ip", "netns", "exec", pair.far, sys.executable, "-c",
                             textwrap.dedent(_LISTENERS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pair.procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"


def _scan(pair: Pair, target: str, ports: dict[str, tuple[int, ...]],
          db: Path) -> dict[tuple[str, int], str]:
    """`mamori scan` from NEAR: (proto, port) → state for every port in ``ports``.

    Closed ports are counted, not listed, in the JSON: a port the report leaves out gets the
    state of ``not_shown`` only when that count accounts for exactly the ports left out.
    """
    spec = ",".join(f"{p[0].upper()}:" + ",".join(map(str, n)) for p, n in ports.items() if n)
    done = _mamori("scan", target, "-p", spec, "--no-identify", "--no-checks", "--format",
                   "json", "--timeout", "1", "--db", str(db), netns=pair.near)
    assert done.returncode == 0, done.stderr[-2000:]
    (host,) = json.loads(done.stdout)["hosts"]
    states = {(e["proto"], e["port"]): e["state"] for e in host["endpoints"]}
    for proto, numbers in ports.items():
        missing = [n for n in numbers if (proto, n) not in states]
        counted = host["not_shown"].get(proto, {})
        if missing:
            assert len(counted) == 1 and sum(counted.values()) == len(missing), host
            (state,) = counted
            states.update({(proto, n): state for n in missing})
    assert set(states) == {(p, n) for p, ns in ports.items() for n in ns}, host
    return states


def _ping(pair: Pair) -> dict[str, bool]:
    for ns in (pair.near, pair.far):  # neighbour discovery must happen again, through the plan
        _ip("-n", ns, "neigh", "flush", "all")
    done = _in_ns(pair.near, sys.executable, "-c", textwrap.dedent(_PING), pair.far4, pair.far6)
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def _mamori_table(pair: Pair) -> str:
    return _in_ns(pair.far, "nft", "list", "table", "inet", "mamori").stdout


@pytest.mark.root
def test_two_namespaces_exactly_the_allowed_ports_are_reachable(tmp_path: Path) -> None:
    why = _namespaces_usable()
    if why:
        pytest.skip(why)
    root_before = _root_ruleset_digest()
    db = tmp_path / "scan.db"
    tcp = (22, 8080, 9000, 5432)
    ports = {"tcp": tcp, "udp": (9999, 9998)}
    with _pair() as pair:
        _start_listeners(pair)

        # Without a firewall every listener answers: what is filtered later is the plan's doing.
        before = _scan(pair, pair.far4, ports, db)
        assert {before[("tcp", p)] for p in tcp} == {"open"}, before
        assert before[("udp", 9999)] == "open" and before[("udp", 9998)] == "closed", before

        done = _mamori("firewall", "plan", "--allow", "ssh,8080/tcp", "--apply", "--yes",
                       netns=pair.far)
        assert done.returncode == 0, done.stderr
        assert "applied" in done.stderr and "tcp dport 8080 accept" in done.stdout
        assert 'tcp dport 22 accept comment "mamori: ssh"' in _mamori_table(pair)

        for target in (pair.far4, pair.far6):
            states = _scan(pair, target, ports, db)
            assert {p for p in tcp if states[("tcp", p)] == "open"} == {22, 8080}, (target, states)
            assert states[("tcp", 9000)] == states[("tcp", 5432)] == "filtered", (target, states)
            # Dropped, not refused: an answering UDP listener looks like silence now.
            assert states[("udp", 9999)] == states[("udp", 9998)] == "open|filtered", states
        # Ping answers, and neighbour discovery (flushed before each ping) still works.
        assert _ping(pair) == {"v4": True, "v6": True}

        # Applying again replaces the table: now UDP 9999 and 5432 are in, 8080 and ping out.
        done = _mamori("firewall", "plan", "--allow", "ssh,5432/tcp,9999/udp", "--no-ping",
                       "--apply", "--yes", netns=pair.far)
        assert done.returncode == 0, done.stderr
        table = _mamori_table(pair)
        assert "8080" not in table and table.count("tcp dport 22 accept") == 1
        states = _scan(pair, pair.far6, ports, db)  # over IPv6: NDP must pass the plan
        assert {p for p in tcp if states[("tcp", p)] == "open"} == {22, 5432}, states
        assert states[("tcp", 8080)] == states[("tcp", 9000)] == "filtered", states
        assert states[("udp", 9999)] == "open" and states[("udp", 9998)] == "open|filtered"
        assert _ping(pair) == {"v4": False, "v6": False}

        # Declining the confirmation changes nothing.
        done = _mamori("firewall", "plan", "--allow", "9000/tcp", "--apply", netns=pair.far,
                       input="n\n")
        assert done.returncode == 130, done.stderr
        assert _mamori_table(pair) == table

        # And the documented undo removes the plan entirely.
        _in_ns(pair.far, *plan_nft.REMOVE_COMMAND.split())
        assert _scan(pair, pair.far4, {"tcp": (22, 9000)}, db) == {("tcp", 22): "open",
                                                          ("tcp", 9000): "open"}
    assert _root_ruleset_digest() == root_before  # the machine's own ruleset never changed
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=False)
    assert "mamori" not in listed.stdout
