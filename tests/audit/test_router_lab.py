"""`mamori router` against real miniupnpd in a router namespace (tests/router_lab.py).

A home host adds a mapping with real ``upnpc`` as Transmission would; ``mamori router show``
run in the home namespace must list it with every field, ``mamori router close`` must remove
it (upnpc -l then shows it gone), and a router that turns our control requests away must be
``control_open: false`` with the reason recorded.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router_lab import LabConfig, RouterLab, running_router_lab

pytestmark = [pytest.mark.root, pytest.mark.daemon]


def mamori(lab: RouterLab, *args: str, input: str | None = None) -> Any:
    return lab.run(lab.home, sys.executable, "-m", "mamori", *args, input=input, timeout=90)


def upnpc(lab: RouterLab, *args: str) -> str:
    done = lab.run(lab.home, "upnpc", "-m", lab.home_if, *args, timeout=30)
    return done.stdout + done.stderr


def upnpc_list(lab: RouterLab) -> list[tuple[str, int, str, int, str, int]]:
    """(proto, external port, client, internal port, description, lease) per mapping."""
    out = upnpc(lab, "-l")
    rows = re.findall(r"^\s*\d+ (TCP|UDP)\s+(\d+)->([\d.]+):(\d+)\s+'([^']*)' '[^']*' (\d+)",
                      out, re.M)
    return [(p, int(e), c, int(i), d, int(lease)) for p, e, c, i, d, lease in rows]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterLab]:
    # secure_mode off: the home host may also map to another LAN host (as a TV would for
    # itself), so the table holds a mapping that does not point at this host
    with running_router_lab(tmp_path_factory.mktemp("router-lab"),
                            LabConfig(secure_mode=False)) as running:
        yield running


def test_show_json_lists_the_upnp_mapping_with_every_field(lab: RouterLab) -> None:
    added = upnpc(lab, "-e", "Transmission", "-a", lab.home_v4, "51413", "51413", "TCP", "0")
    assert "is redirected to internal 192.168.77.10:51413" in added, added
    upnpc(lab, "-e", "TV", "-a", "192.168.77.20", "8200", "18200", "UDP", "3600")
    listed = {(r[0], r[1]): r for r in upnpc_list(lab)}
    assert ("TCP", 51413) in listed and ("UDP", 18200) in listed

    done = mamori(lab, "router", "show", "--format", "json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["found"] is True
    assert view["protocol"] == "upnp-igd1"
    assert view["gateway"] == lab.lan_v4
    assert view["control_url"] == f"http://{lab.lan_v4}:5000/ctl/IPConn"
    assert "MiniUPnPd" in view["server"]
    assert view["external_address"] == lab.wan_v4
    assert view["nat"] == "public"
    assert view["control_open"] is True
    assert view["mappings_truncated"] is False
    assert view["error"] is None
    assert lab.home_v4 in view["this_host"]
    by_port = {m["external_port"]: m for m in view["mappings"]}
    t = by_port[51413]
    assert {k: t[k] for k in ("proto", "internal_client", "internal_port", "description",
                              "enabled", "remote_host", "source", "to_this_host")} == {
        "proto": "tcp", "internal_client": lab.home_v4, "internal_port": 51413,
        "description": "Transmission", "enabled": True, "remote_host": "", "source": "upnp",
        "to_this_host": True}
    # the lease as the router itself reports it (upnpc -l asks the same table)
    assert abs(t["lease_seconds"] - listed[("TCP", 51413)][5]) <= 5
    assert "opened by UPnP, description 'Transmission'" in t["words"]
    tv = by_port[18200]
    assert (tv["proto"], tv["internal_client"], tv["internal_port"], tv["to_this_host"]) == (
        "udp", "192.168.77.20", 8200, False)
    evidence = "\n".join(view["evidence"])
    assert "POST GetExternalIPAddress: HTTP 200" in evidence
    assert "GetGenericPortMappingEntry(2): fault 713" in evidence


def test_show_table_says_who_opened_what(lab: RouterLab) -> None:
    done = mamori(lab, "router", "show")
    assert done.returncode == 0, done.stderr
    assert f"external address: {lab.wan_v4}" in done.stdout
    assert "NAT: public" in done.stdout
    assert re.search(r"\[this host\] external tcp/51413 → 192\.168\.77\.10:51413, opened by "
                     r"UPnP, description 'Transmission', lease \d+ s left", done.stdout), \
        done.stdout
    assert "[other host] external udp/18200 → 192.168.77.20:8200" in done.stdout


def test_close_without_a_terminal_and_without_yes_changes_nothing(lab: RouterLab) -> None:
    done = mamori(lab, "router", "close", "51413/tcp", input="y\n")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("mamori: error: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "stdin is not a terminal; pass --yes" in done.stderr
    assert ("TCP", 51413) in {(r[0], r[1]) for r in upnpc_list(lab)}


def test_close_of_a_mapping_the_router_does_not_have(lab: RouterLab) -> None:
    done = mamori(lab, "router", "close", "4444/udp", "--yes")
    assert done.returncode == 3
    assert "has no mapping udp/4444" in done.stderr


def test_close_removes_the_mapping_and_says_what(lab: RouterLab) -> None:
    done = mamori(lab, "router", "close", "51413/tcp", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"removed from the router at {lab.lan_v4}: external "
                                  "tcp/51413 → 192.168.77.10:51413, opened by UPnP, "
                                  "description 'Transmission'")
    left = {(r[0], r[1]) for r in upnpc_list(lab)}
    assert ("TCP", 51413) not in left
    assert ("UDP", 18200) in left  # only the one asked for
    rules = lab.run(lab.router, "nft", "list", "table", "inet", "mamori_upnp").stdout
    assert "dport 51413" not in rules


def test_a_router_that_refuses_this_host_is_control_open_false(tmp_path: Path) -> None:
    cfg = LabConfig(upnp_acl_block=("192.168.77.10",))
    with running_router_lab(tmp_path, cfg) as lab:
        done = mamori(lab, "router", "show", "--format", "json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["found"] is True  # it answered SSDP
    assert view["control_open"] is False
    assert "refused" in view["error"]
    assert view["external_address"] is None and view["nat"] == "unknown"
    assert view["mappings"] == []


def test_cgnat_wan_address_is_not_told_by_miniupnpd(tmp_path: Path) -> None:
    """miniupnpd hides a reserved external address (100.64.1.2) over UPnP and NAT-PMP alike
    while its WAN is up: the view says the router has no public IPv4 address (likely), never
    that it is public."""
    with running_router_lab(tmp_path, LabConfig(wan_v4="100.64.1.2")) as lab:
        done = mamori(lab, "router", "show", "--format", "json")
        table = mamori(lab, "router", "show")
    view = json.loads(done.stdout)
    assert view["found"] is True
    assert view["external_address"] is None
    # up (GetStatusInfo: Connected) but no address told: no usable public IPv4 (likely)
    assert (view["nat"], view["connection_status"]) == ("no-public-ipv4", "Connected")
    evidence = "\n".join(view["evidence"])
    assert "did not tell its external address" in evidence
    assert "POST GetStatusInfo: HTTP 200, NewConnectionStatus='Connected'" in evidence
    assert "NAT-PMP external address request to 192.168.77.1: network failure" in evidence
    assert ("NAT: no public IPv4 address: the router reports no public IPv4 address (behind "
            "CGNAT or another NAT): not reachable over IPv4 from the internet, likely"
            ) in table.stdout, table.stdout
    assert "(WAN connection: Connected)" in table.stdout


def test_a_router_whose_wan_link_is_down_is_not_called_cgnat(tmp_path: Path) -> None:
    """Same CGNAT WAN, but the link is down: miniupnpd says Disconnected and NAT-PMP
    "network failure", exactly what it says for a reserved address. Not a no-public-IPv4
    verdict: the router is not connected, so nothing is judged."""
    with running_router_lab(tmp_path, LabConfig(wan_v4="100.64.1.2")) as lab:
        lab.run(lab.router, "ip", "link", "set", lab.wan_if, "down", check=True)
        done = mamori(lab, "router", "show", "--format", "json")
    view = json.loads(done.stdout)
    assert view["found"] is True and view["external_address"] is None
    assert (view["nat"], view["connection_status"]) == ("unknown", "Disconnected")
    evidence = "\n".join(view["evidence"])
    assert "NAT-PMP external address request to 192.168.77.1: network failure" in evidence
    assert "WAN connection is 'Disconnected': not connected, not judged CGNAT" in evidence


def test_without_miniupnpd_nothing_is_found_and_nothing_hangs(tmp_path: Path) -> None:
    with running_router_lab(tmp_path, LabConfig(miniupnpd=False)) as lab:
        done = mamori(lab, "router", "show", "--format", "json")
    view = json.loads(done.stdout)
    assert view["found"] is False
    assert "no UPnP IGD answered SSDP" in view["error"]
    assert "NAT-PMP: no answer" in view["error"]


def test_a_natpmp_only_miniupnpd_tells_its_address_over_natpmp_and_pcp(tmp_path: Path) -> None:
    with running_router_lab(tmp_path, LabConfig(enable_upnp=False)) as lab:
        done = mamori(lab, "router", "show", "--format", "json")
    view = json.loads(done.stdout)
    assert view["found"] is True
    assert view["protocol"] == "pcp"  # miniupnpd answers PCP ANNOUNCE as well
    assert (view["external_address"], view["nat"]) == (lab.wan_v4, "public")
    assert view["control_open"] is True
    assert view["mappings"] == []  # NAT-PMP/PCP cannot list mappings
    evidence = "\n".join(view["evidence"])
    assert f"NAT-PMP external address request to {lab.lan_v4}: success, {lab.wan_v4}" in evidence
    assert "PCP ANNOUNCE to 192.168.77.1: a PCP server answered" in evidence


def test_miniupnpd_deny_rules_gate_adding_not_reading(tmp_path: Path) -> None:
    """miniupnpd's own deny rule for the home host refuses its AddPortMapping, yet its reads
    are answered: mamori (read-only) says the router answered, and that it tried no write."""
    rules = ("deny 0-65535 192.168.77.10/32 0-65535",
             "allow 1024-65535 192.168.77.0/24 1024-65535")
    with running_router_lab(tmp_path, LabConfig(upnp_rules=rules)) as lab:
        added = upnpc(lab, "-e", "Transmission", "-a", lab.home_v4, "51413", "51413", "TCP")
        done = mamori(lab, "router", "show", "--format", "json")
        check = lab.run(lab.home, sys.executable, "-c",
                        "from mamori.audit.router import read_router;"
                        "from mamori.audit.router_findings import router_results;"
                        "r = router_results(read_router());"
                        "print([x.summary for x in r if x.check_id == 'router-upnp-open'][0])")
    assert "failed with code 718" in added or "failed with code 606" in added, added
    view = json.loads(done.stdout)
    assert view["mappings"] == []
    assert view["control_open"] is True
    assert "read requests only: mamori adds no mapping" in check.stdout, check.stderr


SNIFFER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 1900))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.255.255.250") + socket.inet_aton("10.99.0.2"))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    s.settimeout(max(0.05, end - time.monotonic()))
    try:
        data, peer = s.recvfrom(2048)
    except TimeoutError:
        break
    print("got", data.split(b"\r\n", 1)[0].decode("latin-1"), peer[0], flush=True)
"""


def test_ssdp_multicast_leaves_only_by_the_gateways_interface(tmp_path: Path) -> None:
    """The home host gets a second interface whose route would take multicast: mamori's
    M-SEARCH must still go only out of the interface that leads to the gateway (the control
    datagram, sent the default way, shows the sniffer would have heard it)."""
    import os
    import subprocess
    import time

    with running_router_lab(tmp_path) as lab:
        sniff = f"mlab-snif-{os.getpid()}"
        try:
            for argv in (["netns", "add", sniff],
                         ["link", "add", "eth1", "netns", lab.home, "type", "veth", "peer",
                          "name", "sn0", "netns", sniff],
                         ["-n", lab.home, "addr", "add", "10.99.0.1/24", "dev", "eth1"],
                         ["-n", sniff, "addr", "add", "10.99.0.2/24", "dev", "sn0"],
                         ["-n", lab.home, "link", "set", "eth1", "up"],
                         ["-n", sniff, "link", "set", "sn0", "up"],
                         ["-n", sniff, "link", "set", "lo", "up"],
                         ["-n", lab.home, "route", "add", "239.0.0.0/8", "dev", "eth1"]):
                subprocess.run(["ip", *argv], check=True, capture_output=True)
            log = tmp_path / "sniffer.log"
            proc = lab.popen(sniff, [sys.executable, "-c", SNIFFER, "12"], log)
            end = time.monotonic() + 10
            while "ready" not in log.read_text() and time.monotonic() < end:
                time.sleep(0.05)
            done = mamori(lab, "router", "show", "--format", "json")
            lab.run(lab.home, sys.executable, "-c",
                    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                    "s.sendto(b'CONTROL * HTTP/1.1\\r\\n\\r\\n', ('239.255.255.250', 1900))")
            time.sleep(0.5)
            proc.terminate()
            proc.wait(timeout=5)
            heard = log.read_text()
        finally:
            subprocess.run(["ip", "netns", "del", sniff], capture_output=True, check=False)
    assert json.loads(done.stdout)["found"] is True
    assert "got CONTROL * HTTP/1.1 10.99.0.1" in heard, heard
    assert "M-SEARCH" not in heard, heard
