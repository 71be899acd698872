"""A home network in three network namespaces: "internet" -- "router" -- "home".

The router namespace does IPv4 NAT with nftables (masquerade out of its WAN veth, optional
DNAT forwards to the home host), routes IPv6 with a forward filter that lets only the chosen
TCP ports in towards home, and runs real **miniupnpd** (Debian ``miniupnpd-nftables``) on its
LAN side with a config written here (secure_mode, allow/deny rules, ``ext_ip``). Every address
below exists only on the test's veths; nothing in the namespaces has a route off the machine.

    with router_lab(tmp_path, LabConfig()) as lab:
        lab.run(lab.home, "upnpc", "-m", lab.home_if, "-a", lab.home_v4, "51413", "51413", "TCP")
        out = lab.run(lab.home, sys.executable, "-m", "mamori", "router", "show")

Addresses (the three #13 engineers agree on these): internet 11.0.0.1/24, 2a0e:8b00:1::1/64;
router WAN 11.0.0.2/24, 2a0e:8b00:1::2/64; router LAN 192.168.77.1/24, fd77::1/64,
2a0e:8b00:77::1/64; home 192.168.77.10/24, fd77::10/64, 2a0e:8b00:77::10/64. The CGNAT variant
puts the WAN on 100.64.1.2/24 (the "ISP" side on 100.64.1.1). miniupnpd's HTTP port is 5000,
NAT-PMP/PCP on 5351.

Namespace names carry the process id and a counter, so parallel runs by others do not collide.
``router_lab`` raises ``DaemonUnavailable`` when a tool is missing or we are not root; tests use
``running_router_lab``, which skips with the reason instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemons import DaemonUnavailable

_COUNTER = itertools.count()

MINIUPNPD_HTTP_PORT = 5000


@dataclass(frozen=True)
class LabConfig:
    """What the lab's router looks like; every field has the everyday home-router default."""

    wan_v4: str = "11.0.0.2"  # the router's WAN address (100.64.1.2 for the CGNAT variant)
    wan_peer_v4: str = ""  # the "internet" side of the WAN link; "" = .1 of wan_v4's /24
    miniupnpd: bool = True
    secure_mode: bool = True  # miniupnpd: a client may map only to its own address
    # miniupnpd allow/deny rules in its own syntax ("allow 1024-65535 192.168.77.0/24
    # 1024-65535"); empty = allow the LAN, deny the rest
    upnp_rules: tuple[str, ...] = ()
    enable_natpmp: bool = True
    enable_upnp: bool = True  # False: a NAT-PMP/PCP-only gateway
    # force_igd_desc_v1 (Debian's miniupnpd 2.3.1 still turns a lease of 0 into a week)
    igd_v1: bool = True
    # (proto, external port, internal port): DNAT forwards from the WAN to the home host
    dnat: tuple[tuple[str, int, int], ...] = ()
    v6_forward_ports: tuple[int, ...] = ()  # TCP ports the router's IPv6 filter lets in to home
    miniupnpd_extra: tuple[str, ...] = ()  # more config lines, as written
    # LAN hosts the router refuses UPnP/NAT-PMP control from: their TCP to miniupnpd's HTTP
    # port is reset, NAT-PMP/PCP rejected; SSDP still answers. An ACL in front of the daemon:
    # miniupnpd's own allow/deny rules gate only AddPortMapping, reads are answered to all.
    upnp_acl_block: tuple[str, ...] = ()


@dataclass
class RouterLab:
    """The running lab: namespace names, addresses, and helpers to run commands in them."""

    internet: str
    router: str
    home: str
    config: LabConfig
    workdir: Path
    internet_v4: str = "11.0.0.1"
    internet_v6: str = "2a0e:8b00:1::1"
    wan_v4: str = "11.0.0.2"
    wan_v6: str = "2a0e:8b00:1::2"
    lan_v4: str = "192.168.77.1"
    lan_ula: str = "fd77::1"
    lan_v6: str = "2a0e:8b00:77::1"
    home_v4: str = "192.168.77.10"
    home_ula: str = "fd77::10"
    home_v6: str = "2a0e:8b00:77::10"
    wan_if: str = "wan0"  # in the router namespace
    lan_if: str = "lan0"  # in the router namespace
    home_if: str = "eth0"  # in the home namespace
    inet_if: str = "up0"  # in the internet namespace
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, ns: str, *argv: str) -> list[str]:
        """The command line that runs ``argv`` inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def run(
        self, ns: str, *argv: str, check: bool = False, timeout: float = 60.0,
        input: str | None = None, env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``ns`` and wait (bounded); text output captured."""
        return subprocess.run(
            self.argv(ns, *argv), capture_output=True, text=True, check=check, timeout=timeout,
            input=input, env={**os.environ, **(env or {})},
        )

    def popen(self, ns: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running helper in ``ns`` (stopped when the lab closes)."""
        out = open(log, "wb")
        proc = subprocess.Popen(
            self.argv(ns, *argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    @property
    def miniupnpd_log(self) -> Path:
        return self.workdir / "miniupnpd.log"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise DaemonUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _nsrun(ns: str, *argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          input=stdin)
    if done.returncode != 0:
        raise DaemonUnavailable(f"{ns}: {' '.join(argv)}: {done.stderr.strip()[-500:]}")


def _nft_rules(lab: RouterLab) -> str:
    c = lab.config
    dnat = "".join(
        f"    iifname \"{lab.wan_if}\" {p} dport {ext} dnat to {lab.home_v4}:{inner}\n"
        for p, ext, inner in c.dnat
    )
    v6_ports = ", ".join(str(p) for p in c.v6_forward_ports)
    v6_allow = (f"    iifname \"{lab.wan_if}\" oifname \"{lab.lan_if}\" tcp dport {{ {v6_ports} }}"
                " accept\n") if c.v6_forward_ports else ""
    blocked = ", ".join(c.upnp_acl_block)
    acl = (
        "table ip mamori_lab_acl {\n"
        "  chain input {\n    type filter hook input priority 0; policy accept;\n"
        f"    ip saddr {{ {blocked} }} tcp dport {MINIUPNPD_HTTP_PORT} reject with tcp reset\n"
        f"    ip saddr {{ {blocked} }} udp dport 5351 reject\n"
        "  }\n}\n"
    ) if c.upnp_acl_block else ""
    return acl + (
        "table ip mamori_lab_nat {\n"
        "  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n"
        f"{dnat}  }}\n"
        "  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n"
        f"    oifname \"{lab.wan_if}\" masquerade\n  }}\n"
        "}\n"
        "table ip6 mamori_lab_v6 {\n"
        "  chain forward {\n    type filter hook forward priority 0; policy accept;\n"
        "    ct state established,related accept\n"
        "    icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept\n"
        f"{v6_allow}"
        f"    iifname \"{lab.wan_if}\" oifname \"{lab.lan_if}\" drop\n  }}\n"
        "}\n"
        # miniupnpd's own chains (its nftables backend adds rules, it does not make tables)
        "table inet mamori_upnp {\n"
        "  chain forward {\n    type filter hook forward priority 0; policy accept;\n"
        "    jump miniupnpd\n  }\n"
        "  chain miniupnpd {\n  }\n"
        "  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n"
        "    jump prerouting_miniupnpd\n  }\n"
        "  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n"
        "    jump postrouting_miniupnpd\n  }\n"
        "  chain prerouting_miniupnpd {\n  }\n"
        "  chain postrouting_miniupnpd {\n  }\n"
        "}\n"
    )


def _miniupnpd_conf(lab: RouterLab) -> str:
    c = lab.config
    rules = c.upnp_rules or (
        "allow 1024-65535 192.168.77.0/24 1024-65535",
        "deny 0-65535 0.0.0.0/0 0-65535",
    )
    lines = [
        f"ext_ifname={lab.wan_if}",
        f"listening_ip={lab.lan_if}",
        f"http_port={MINIUPNPD_HTTP_PORT}",
        f"enable_natpmp={'yes' if c.enable_natpmp else 'no'}",
        f"enable_upnp={'yes' if c.enable_upnp else 'no'}",
        f"secure_mode={'yes' if c.secure_mode else 'no'}",
        "system_uptime=yes",
        f"force_igd_desc_v1={'yes' if c.igd_v1 else 'no'}",
        "notify_interval=60",
        "clean_ruleset_interval=600",
        "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
        "serial=12345678",
        "model_number=1",
        f"lease_file={lab.workdir / 'upnp.leases'}",
        "upnp_table_name=mamori_upnp",
        "upnp_nat_table_name=mamori_upnp",
        "upnp_forward_chain=miniupnpd",
        "upnp_nat_chain=prerouting_miniupnpd",
        "upnp_nat_postrouting_chain=postrouting_miniupnpd",
        *c.miniupnpd_extra,
        *rules,
    ]
    return "\n".join(lines) + "\n"


def _wait_port(lab: RouterLab, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until miniupnpd listens: its HTTP port (TCP), or NAT-PMP's 5351 (UDP) without UPnP."""
    end = time.monotonic() + timeout
    http = lab.config.enable_upnp
    want = f":{MINIUPNPD_HTTP_PORT if http else 5351:04X} "
    files = ("/proc/net/tcp", "/proc/net/tcp6") if http else ("/proc/net/udp", "/proc/net/udp6")
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = lab.miniupnpd_log.read_text(errors="replace")[-1500:]
            raise DaemonUnavailable(f"miniupnpd exited with {proc.returncode}:\n{tail}")
        table = subprocess.run(lab.argv(lab.router, "cat", *files), capture_output=True,
                               text=True).stdout
        if any(want in line and (" 0A " in line or not http) for line in table.splitlines()):
            return
        time.sleep(0.05)
    raise DaemonUnavailable("miniupnpd did not listen within 10 s")


def _build(lab: RouterLab) -> None:
    c = lab.config
    peer = c.wan_peer_v4 or str(ipaddress.ip_network(f"{c.wan_v4}/24", strict=False)[1])
    lab.wan_v4, lab.internet_v4 = c.wan_v4, peer
    for ns in (lab.internet, lab.router, lab.home):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        _ip("netns", "add", ns)
    _ip("link", "add", lab.inet_if, "netns", lab.internet, "type", "veth", "peer", "name",
        lab.wan_if, "netns", lab.router)
    _ip("link", "add", lab.lan_if, "netns", lab.router, "type", "veth", "peer", "name",
        lab.home_if, "netns", lab.home)
    plan = (
        (lab.internet, lab.inet_if, (f"{peer}/24", f"{lab.internet_v6}/64")),
        (lab.router, lab.wan_if, (f"{lab.wan_v4}/24", f"{lab.wan_v6}/64")),
        (lab.router, lab.lan_if, (f"{lab.lan_v4}/24", f"{lab.lan_ula}/64", f"{lab.lan_v6}/64")),
        (lab.home, lab.home_if, (f"{lab.home_v4}/24", f"{lab.home_ula}/64",
                                 f"{lab.home_v6}/64")),
    )
    for ns, dev, addrs in plan:
        for addr in addrs:
            _ip("-n", ns, "addr", "add", addr, "dev", dev, *(["nodad"] if ":" in addr else []))
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", lab.home, "route", "add", "default", "via", lab.lan_v4)
    _ip("-n", lab.home, "-6", "route", "add", "default", "via", lab.lan_v6)
    _ip("-n", lab.router, "route", "add", "default", "via", peer)
    _ip("-n", lab.router, "-6", "route", "add", "default", "via", lab.internet_v6)
    _ip("-n", lab.internet, "-6", "route", "add", "2a0e:8b00:77::/64", "via", lab.wan_v6)
    _nsrun(lab.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    _nsrun(lab.router, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
    _nsrun(lab.router, "nft", "-f", "-", stdin=_nft_rules(lab))
    if c.miniupnpd:
        conf = lab.workdir / "miniupnpd.conf"
        conf.write_text(_miniupnpd_conf(lab))
        proc = lab.popen(lab.router, ["miniupnpd", "-d", "-f", str(conf), "-P",
                                      str(lab.workdir / "miniupnpd.pid")], lab.miniupnpd_log)
        _wait_port(lab, proc)


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_router_lab(workdir: Path, config: LabConfig | None = None) -> Iterator[RouterLab]:
    """``router_lab`` for tests: skipped with the reason when the lab cannot be built here."""
    try:
        cm = router_lab(workdir, config)
        lab = cm.__enter__()
    except DaemonUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield lab
    finally:
        cm.__exit__(None, None, None)


@contextlib.contextmanager
def router_lab(workdir: Path, config: LabConfig | None = None) -> Iterator[RouterLab]:
    """Build the three namespaces (and miniupnpd unless ``config.miniupnpd`` is False), yield
    the running lab, and tear everything down whatever happens."""
    if os.geteuid() != 0:
        raise DaemonUnavailable("the router lab needs root (network namespaces, nftables)")
    for tool in ("ip", "nft", *(("miniupnpd",) if (config or LabConfig()).miniupnpd else ())):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise DaemonUnavailable(f"{tool} not installed: run scripts/install-test-deps")
    n = next(_COUNTER)
    tag = f"{os.getpid()}-{n}"
    lab = RouterLab(internet=f"mlab-inet-{tag}", router=f"mlab-rtr-{tag}",
                    home=f"mlab-home-{tag}", config=config or LabConfig(), workdir=workdir)
    try:
        _build(lab)
        yield lab
    finally:
        _stop(lab.procs)
        for ns in (lab.internet, lab.router, lab.home):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
