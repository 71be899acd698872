"""The joined verdict end to end, over a home network built of network namespaces
(tests/router_lab.py): "internet" 11.0.0.1 runs a real `mamori serve` (embedded backend);
"router" does NAT with nftables (masquerade, DNAT forwards of 22 and 8081 to home, an IPv6
forward filter that lets only port 80 in) and runs real miniupnpd; "home" runs real sshd,
redis and nginx (tests/daemons.py, through tests/path_home.py) and `mamori check --outside`.
Mappings are added with real upnpc, as applications do.

Every packet stays inside the test's namespaces. The service's name resolves only through
/etc/netns/HOME/hosts (bind-mounted by `ip netns exec`, with `hosts: files` alone in that
namespace's nsswitch.conf): no resolver is asked.

The host-firewall contradiction is built honestly: home's nftables drops tcp/8081 in its input
chain after `ct state established,related,untracked accept`, and a raw-priority chain marks
tcp/8081 `notrack`. mamori's reader takes the untracked accept for a reply-only rule and reads
"blocked"; the kernel accepts the untracked SYN, and the outside probe gets in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.daemons import DaemonUnavailable

from router_lab import LabConfig, RouterLab, router_lab

ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = "outside.mamori.test"
SERVE_PORT = 8080
HOME_NFT = """\
table inet homefw {
  chain raw {
    type filter hook prerouting priority raw; policy accept;
    tcp dport 8081 notrack
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related,untracked accept
    tcp dport 8081 drop
  }
}
"""
NO_PUBLIC = ("the router reports no public IPv4 address (behind CGNAT or another NAT): not "
             "reachable over IPv4 from the internet, likely")
HOME_DAEMONS = ("sshd:sshd:0.0.0.0:22", "redis:redis:0.0.0.0:6379", "web:nginx:0.0.0.0:80:v6",
                "admin:nginx:0.0.0.0:8081", "torrent:nginx:0.0.0.0:51413")


def _env(tmp: Path) -> dict[str, str]:
    (tmp / "settings.toml").touch()
    return {"MAMORI_DB": str(tmp / "check.db"), "MAMORI_SETTINGS": str(tmp / "settings.toml"),
            "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "400", "NO_COLOR": "1"}


@contextlib.contextmanager
def _name_only_here(ns: str, v4: str, v6: str) -> Iterator[None]:
    """SERVICE_NAME → the internet namespace's addresses, for commands in namespace ``ns``."""
    etc = Path("/etc/netns") / ns
    etc.mkdir(parents=True, exist_ok=True)
    try:
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{v4} {SERVICE_NAME}\n"
                                   f"{v6} {SERVICE_NAME}\n")
        (etc / "nsswitch.conf").write_text("hosts: files\n")
        yield
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        with contextlib.suppress(OSError):
            etc.parent.rmdir()  # /etc/netns itself, when no one else keeps a file there


@contextlib.contextmanager
def _home_daemons(lab: RouterLab, tmp: Path, specs: tuple[str, ...]) -> Iterator[None]:
    proc = subprocess.Popen(
        lab.argv(lab.home, sys.executable, str(ROOT / "tests" / "path_home.py"),
                 str(tmp / "home"), *specs),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={
            **os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline() or '{"unavailable": "helper died"}')
        if "unavailable" in line:
            pytest.skip(f"home daemons: {line['unavailable']}")
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _serve(lab: RouterLab, tmp: Path) -> Iterator[str]:
    """Real `mamori serve` in the internet namespace, one per family (an asyncio server on
    "::" is IPv6-only): 11.0.0.1:8080 and [2a0e:8b00:1::1]:8080, each with its own store."""
    procs = []
    for family, bind in ((4, lab.internet_v4), (6, lab.internet_v6)):
        settings = tmp / f"serve{family}.toml"
        settings.write_text(
            "[serve]\n"
            f'bind = "{bind}"\nport = {SERVE_PORT}\n'
            f'public_url = "http://{SERVICE_NAME}:{SERVE_PORT}"\n'
            f'allowed_hosts = ["{SERVICE_NAME}:{SERVE_PORT}", "{SERVICE_NAME}"]\n'
            'secret_key = "0123456789abcdef0123456789abcdef0123456789abcdef"\n'
            f'db = "{tmp / f"serve{family}.db"}"\n'
            "probe_timeout = 0.5\nheartbeat_seconds = 0.5\n")
        procs.append((lab.popen(lab.internet, [sys.executable, "-m", "mamori", "serve",
                                               "--settings", str(settings)],
                                tmp / f"serve{family}.log"), bind, family))
    for proc, bind, family in procs:
        end = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"mamori serve ({bind}) did not start:\n"
                            + (tmp / f"serve{family}.log").read_text()[-2000:])
            ready = lab.run(lab.internet, sys.executable, "-c",
                            f"import socket; socket.create_connection(('{bind}', 8080), 1)")
            if ready.returncode == 0:
                break
            time.sleep(0.2)
    yield f"http://{SERVICE_NAME}:{SERVE_PORT}"


def _upnpc(lab: RouterLab, *args: str) -> None:
    done = lab.run(lab.home, "upnpc", "-m", lab.home_if, *args, timeout=30)
    assert "is redirected to internal" in done.stdout or done.returncode == 0, done.stdout


def _check(lab: RouterLab, tmp: Path, *args: str) -> dict[str, Any]:
    done = lab.run(lab.home, sys.executable, "-m", "mamori", "check", "--no-checks",
                   "--format", "json", *args, env=_env(tmp), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    doc: dict[str, Any] = json.loads(done.stdout)
    shown = lab.run(lab.home, sys.executable, "-m", "mamori", "show", str(doc["scan"]["id"]),
                    "--format", "json", env=_env(tmp), timeout=60)
    assert json.loads(shown.stdout)["paths"] == doc["paths"]  # stored, and shown again
    _log_table(doc)
    return doc


def _log_table(doc: dict[str, Any]) -> None:
    """The joined verdicts the run produced, one line each, into the test log."""
    from mamori.model.path_json import path_report_from_dict
    from mamori.report.paths import outside_lines, path_lines, path_rows

    report = path_report_from_dict(doc["paths"])
    print("\nLISTENER | FAMILY | REACH | CHAIN | WHY")
    for r in path_rows(report, "en"):
        print(f"{r.listener} | {r.family} | {r.reach} | {r.chain} | {r.why}")
    print("\n".join(path_lines(report, "en") + outside_lines(report.outside, "en")))


def _verdict(doc: dict[str, Any], port: int, family: int) -> dict[str, Any]:
    (v,) = [v for v in doc["paths"]["verdicts"] if v["port"] == port and v["family"] == family]
    return v


def _lab(tmp: Path, config: LabConfig) -> contextlib.AbstractContextManager[RouterLab]:
    if shutil.which("upnpc") is None:
        pytest.skip("upnpc not installed: run scripts/install-test-deps")
    try:
        return router_lab(tmp, config)
    except DaemonUnavailable as exc:  # pragma: no cover - raised on enter, see below
        pytest.skip(str(exc))


def test_the_joined_verdicts_over_a_real_home_network(tmp_path: Path) -> None:
    config = LabConfig(dnat=(("tcp", 22, 22), ("tcp", 8081, 8081)), v6_forward_ports=(80,),
                       secure_mode=False)
    try:
        lab_cm = _lab(tmp_path, config)
        lab = lab_cm.__enter__()
    except DaemonUnavailable as exc:
        pytest.skip(str(exc))
    try:
        with _home_daemons(lab, tmp_path, HOME_DAEMONS), \
                _name_only_here(lab.home, lab.internet_v4, lab.internet_v6), \
                _serve(lab, tmp_path) as url:
            # after the daemons started: their readiness check goes over loopback, where
            # conntrack saw the SYN on output already (not untracked: the drop would apply)
            lab.run(lab.home, "nft", "-f", "-", input=HOME_NFT, check=True)
            # as applications do: a permanent mapping, one to nothing, one to another host
            _upnpc(lab, "-e", "Transmission", "-a", lab.home_v4, "51413", "51413", "TCP", "0")
            _upnpc(lab, "-e", "old game server", "-a", lab.home_v4, "27015", "27015", "TCP",
                   "0")
            _upnpc(lab, "-e", "nas", "-a", "192.168.77.20", "5001", "5001", "TCP", "0")
            doc = _check(lab, tmp_path, "--outside", url)
    finally:
        lab_cm.__exit__(None, None, None)

    router = doc["paths"]["router"]
    assert router["found"] and router["external_address"] == "11.0.0.2"
    assert router["nat"] == "public"
    # forwarded sshd (a DNAT set in the router, which UPnP does not list): proven from outside
    ssh = _verdict(doc, 22, 4)
    assert ssh["reach"] == "internet" and ssh["proven"]
    assert any(n.startswith("static-forward") for n in ssh["notes"])
    # redis on 0.0.0.0 without a forward: the LAN only, the outside probe was refused
    redis = _verdict(doc, 6379, 4)
    assert redis["reach"] == "lan" and not redis["proven"]
    assert [s["verdict"] for s in redis["steps"] if s["name"] in ("router", "outside")] == [
        "no-mapping", "closed"]
    # the mapping an application opened through UPnP: internet, named as such
    torrent = _verdict(doc, 51413, 4)
    assert torrent["reach"] == "internet" and torrent["proven"]
    assert torrent["mapping"]["description"] == "Transmission"
    router_step = next(s for s in torrent["steps"] if s["name"] == "router")
    # asked for lease 0; Debian's miniupnpd 2.3.1 grants a week (604800 s) instead, and the
    # table says so (the "lease 0 = permanent" wording: tests/audit/test_path_join.py)
    assert "opened by UPnP, description 'Transmission', lease 60" in router_step["detail"]
    # nginx on [::] with the router letting IPv6 port 80 in, its IPv4 twin behind NAT
    web4 = next(v for v in doc["paths"]["verdicts"]
                if v["port"] == 80 and v["family"] == 4 and v["address"] == "0.0.0.0")
    web6 = next(v for v in doc["paths"]["verdicts"] if v["port"] == 80 and v["family"] == 6)
    assert web4["reach"] == "lan" and web6["reach"] == "internet" and web6["proven"]
    assert any(n.startswith("ipv6-exposes-what-nat-hides") for n in web6["notes"])
    # the host firewall reads "blocked", the outside probe got in: a contradiction finding
    admin = _verdict(doc, 8081, 4)
    assert admin["reach"] == "internet" and admin["proven"]
    assert next(s for s in admin["steps"] if s["name"] == "host-firewall")["verdict"] == (
        "blocked")
    (contra,) = [c for c in doc["checks"] if c["check_id"] == "path-contradiction"]
    assert contra["status"] == "finding" and contra["port"] == 8081
    # a mapping to nothing is a finding; one to another LAN host is listed, not blamed here
    (unused,) = [c for c in doc["checks"] if c["check_id"] == "router-mapping-unused"]
    assert unused["port"] == 27015 and "old game server" in unused["summary"]
    assert [m["internal_client"] for m in doc["paths"]["other_hosts"]] == ["192.168.77.20"]
    # severity follows the joined reach
    graded = {c["port"]: c for c in doc["checks"] if c["check_id"] == "exposed-listener"}
    assert graded[22]["severity"] == "high" and graded[6379]["severity"] == "medium"


def test_behind_cgnat_the_router_hides_its_address_and_ipv4_is_closed(tmp_path: Path) -> None:
    """The router's WAN in 100.64.0.0/10. Real miniupnpd refuses to tell a reserved external
    address (an empty NewExternalIPAddress while GetStatusInfo says Connected, NAT-PMP
    "network failure"): the router has no public IPv4 address, likely, and the IPv4 path is
    LAN-only for that reason, even with the router's own forward of port 22. The outside
    service (on the ISP side, 100.64.1.1) refuses to probe a CGNAT address but says which
    address it saw: the router step names it. (A router that does tell 100.64.x.y gives
    "behind CGNAT: not reachable over IPv4": test_path_join.py.)"""
    config = LabConfig(wan_v4="100.64.1.2", dnat=(("tcp", 22, 22),))
    try:
        lab_cm = _lab(tmp_path, config)
        lab = lab_cm.__enter__()
    except DaemonUnavailable as exc:
        pytest.skip(str(exc))
    try:
        with _home_daemons(lab, tmp_path, ("sshd:sshd:0.0.0.0:22",)), \
                _name_only_here(lab.home, lab.internet_v4, lab.internet_v6), \
                _serve(lab, tmp_path) as url:
            doc = _check(lab, tmp_path, "--outside", url)
            shown = lab.run(lab.home, sys.executable, "-m", "mamori", "show",
                            str(doc["scan"]["id"]), "--format", "markdown",
                            env=_env(tmp_path), timeout=60)
    finally:
        lab_cm.__exit__(None, None, None)
    router = doc["paths"]["router"]
    assert router["found"] and router["external_address"] is None
    assert (router["nat"], router["connection_status"]) == ("no-public-ipv4", "Connected")
    ssh = _verdict(doc, 22, 4)
    assert ssh["reach"] == "lan" and not ssh["proven"]
    steps = {s["name"]: s for s in ssh["steps"]}
    assert steps["router"]["verdict"] == "no-mapping"
    assert ("the internet sees this line as 100.64.1.2 (the router told no external address)"
            in steps["router"]["detail"])
    assert steps["nat"]["verdict"] == "no-public-ipv4"
    assert NO_PUBLIC in steps["nat"]["detail"] and NO_PUBLIC in ssh["notes"]
    assert steps["outside"]["verdict"] == "not-tested"
    (v4,) = [o for o in doc["paths"]["outside"] if o["family"] == 4]
    assert v4["seen_address"] == "100.64.1.2" and "carrier-grade NAT" in v4["error"]
    # the report says it in words, not "NAT unknown"
    md = " ".join(shown.stdout.replace("\\", "").split())  # Markdown escapes ( and )
    assert NO_PUBLIC in md, shown.stdout[-3000:]
    assert "external address not told (no-public-ipv4)" in md and "(unknown)" not in md
