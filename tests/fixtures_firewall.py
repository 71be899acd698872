"""Helpers for the firewall tests: namespace pairs, ruleset loaders, a runner inside a namespace.

Every ruleset is loaded *inside* a namespace this module creates (names start "mfw-"), never
in the root namespace. Addresses: 10.210.<n>.0/30 on a veth pair between the two namespaces
only; nothing routes out of them. Port 2024 is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mamori.audit.runner import DEFAULT_TIMEOUT, CommandResult, SystemRunner
from netns import veth_pair


def netns_unavailable() -> str | None:
    """None when network namespaces (and nft) can be used here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "nft", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"mfw-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns unavailable: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NetnsRunner:
    """The CommandRunner seam, run inside one network namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.inner = SystemRunner()

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        args = tuple(argv)
        if shutil.which(args[0], path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return CommandResult(args, 127, "", f"{args[0]}: not installed")
        res = self.inner.run(["ip", "netns", "exec", self.ns, *args], timeout)
        return CommandResult(args, res.returncode, res.stdout, res.stderr)


@dataclass
class Pair:
    near: str  # the outside client
    far: str  # the host whose firewall is judged
    near_ip: str
    far_ip: str
    far_dev: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def exec(self, ns: str, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, *args],
            input=stdin,
            text=True,
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    def nft(self, script: str) -> None:
        self.exec(self.far, "nft", "-f", "-", stdin=script)

    def iptables_restore(self, text: str, family: int = 4) -> None:
        self.exec(self.far, "ip6tables-restore" if family == 6 else "iptables-restore", stdin=text)

    def runner(self) -> NetnsRunner:
        return NetnsRunner(self.far)

    def listen(self, ports: Sequence[int]) -> None:
        """TCP listeners on 0.0.0.0:<ports> in the far namespace, accepting and closing."""
        code = f"""
            import select, socket, sys
            socks = []
            for p in {list(ports)!r}:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", p)); s.listen(16); socks.append(s)
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
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

    def connect(self, ports: Sequence[int], timeout: float = 1.0) -> dict[int, str]:
        """Real TCP connects from the near namespace to far_ip:<ports>, all at once:
        port -> "open", "refused" or "timeout"."""
        code = f"""
            import json, socket, threading
            res = {{}}
            def one(p):
                s = socket.socket(); s.settimeout({timeout})
                try:
                    s.connect(({self.far_ip!r}, p)); res[p] = "open"
                except ConnectionRefusedError:
                    res[p] = "refused"
                except OSError:
                    res[p] = "timeout"
                finally:
                    s.close()
            ts = [threading.Thread(target=one, args=(p,)) for p in {list(ports)!r}]
            [t.start() for t in ts]; [t.join() for t in ts]
            print(json.dumps(res))
        """
        out = self.exec(self.near, sys.executable, "-c", textwrap.dedent(code))
        return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


@contextlib.contextmanager
def netns_pair(n: int) -> Iterator[Pair]:
    """Namespaces mfw-n…/mfw-f… joined by a veth: near 10.210.<n>.1, far 10.210.<n>.2.
    Both are deleted at the end, whatever happens."""
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    tag = f"{os.getpid() % 100000}-{n}"
    near, far = f"mfw-n{tag}", f"mfw-f{tag}"
    dev_n, dev_f = f"mfwn{tag}"[:15], f"mfwf{tag}"[:15]
    pair = Pair(near, far, f"10.210.{n}.1", f"10.210.{n}.2", dev_f)

    with veth_pair(near, far, (dev_n, dev_f), ([f"{pair.near_ip}/30"], [f"{pair.far_ip}/30"]),
                   pair.procs):
        yield pair


@contextlib.contextmanager
def ufw_root(tmp: Path) -> Iterator[Path]:
    """A private copy of ufw's files, so `ufw --rootdir/--datadir` never touches /etc/ufw.

    Its sysctl file and module list are emptied: sysctl and modprobe are not per-namespace.
    """
    for src, dst in (
        ("/etc/ufw", "etc/ufw"),
        ("/lib/ufw", "lib/ufw"),
        ("/usr/share/ufw", "usr/share/ufw"),
    ):
        shutil.copytree(src, tmp / dst, symlinks=True)
    (tmp / "etc/default").mkdir(parents=True)
    text = Path("/etc/default/ufw").read_text(encoding="utf-8")
    lines = [
        "IPT_SYSCTL="
        if ln.startswith("IPT_SYSCTL=")
        else 'IPT_MODULES=""'
        if ln.startswith("IPT_MODULES=")
        else ln
        for ln in text.splitlines()
    ]
    (tmp / "etc/default/ufw").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp / "etc/ufw/sysctl.conf").write_text("", encoding="utf-8")
    yield tmp


# ---- rulesets (loaded only inside test namespaces) ------------------------------------------

DEFAULT_ACCEPT_NFT = """
table inet filter {
  chain input { type filter hook input priority filter; policy accept; }
}
"""

DEFAULT_DROP_NFT = """
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    iif lo accept
    tcp dport { 22, 443 } accept
    ip protocol icmp accept
  }
}
"""

DEFAULT_DROP_IPTABLES = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,443 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
COMMIT
"""


ADDRESS_SET_PORTS = [22, 8080, 9090]


def address_set_nft(allowed: Sequence[str]) -> str:
    return f"""
table inet filter {{
  set allowed_src {{ type ipv4_addr; flags interval; elements = {{ {", ".join(allowed)} }} }}
  set lan_only {{ type ipv4_addr; flags interval; elements = {{ 10.99.0.0/16 }} }}
  chain input {{
    type filter hook input priority filter; policy drop;
    ct state vmap {{ established : accept, related : accept, invalid : drop }}
    iifname "lo" accept
    ip saddr @allowed_src tcp dport 8080 accept
    ip saddr @lan_only tcp dport 9090 accept
  }}
}}
"""


# What ufw 0.36 writes for `default deny incoming; allow 22/tcp; limit 2222/tcp;
# allow from 10.99.0.0/16 to any port 9090 proto tcp`: iptables-save of the real ufw run in a
# test namespace, cut to the INPUT path (FORWARD/OUTPUT chains left out). Loaded with
# iptables-restore when ufw itself is not installed.
UFW_SAVE = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-after-input - [0:0]
:ufw-after-logging-input - [0:0]
:ufw-before-input - [0:0]
:ufw-before-logging-input - [0:0]
:ufw-logging-allow - [0:0]
:ufw-logging-deny - [0:0]
:ufw-not-local - [0:0]
:ufw-reject-input - [0:0]
:ufw-skip-to-policy-input - [0:0]
:ufw-track-input - [0:0]
:ufw-user-input - [0:0]
:ufw-user-limit - [0:0]
:ufw-user-limit-accept - [0:0]
:ufw-user-logging-input - [0:0]
-A INPUT -j ufw-before-logging-input
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A INPUT -j ufw-after-logging-input
-A INPUT -j ufw-reject-input
-A INPUT -j ufw-track-input
-A ufw-after-input -p udp -m udp --dport 137 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 138 -j ufw-skip-to-policy-input
-A ufw-after-input -p tcp -m tcp --dport 139 -j ufw-skip-to-policy-input
-A ufw-after-input -p tcp -m tcp --dport 445 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 67 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 68 -j ufw-skip-to-policy-input
-A ufw-after-input -m addrtype --dst-type BROADCAST -j ufw-skip-to-policy-input
-A ufw-after-logging-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j ufw-logging-deny
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -p icmp -m icmp --icmp-type 3 -j ACCEPT
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-input -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A ufw-before-input -j ufw-not-local
-A ufw-before-input -d 224.0.0.251/32 -p udp -m udp --dport 5353 -j ACCEPT
-A ufw-before-input -d 239.255.255.250/32 -p udp -m udp --dport 1900 -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-logging-allow -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW ALLOW] "
-A ufw-logging-deny -m conntrack --ctstate INVALID -m limit --limit 3/min --limit-burst 10 -j RETURN
-A ufw-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN
-A ufw-not-local -m addrtype --dst-type MULTICAST -j RETURN
-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN
-A ufw-not-local -m limit --limit 3/min --limit-burst 10 -j ufw-logging-deny
-A ufw-not-local -j DROP
-A ufw-skip-to-policy-input -j DROP
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource
-A ufw-user-input -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j ufw-user-limit
-A ufw-user-input -p tcp -m tcp --dport 2222 -j ufw-user-limit-accept
-A ufw-user-input -s 10.99.0.0/16 -p tcp -m tcp --dport 9090 -j ACCEPT
-A ufw-user-limit -m limit --limit 3/min -j LOG --log-prefix "[UFW LIMIT BLOCK] "
-A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable
-A ufw-user-limit-accept -j ACCEPT
COMMIT
"""  # noqa: E501

# `firewall-cmd --list-all-zones` (excerpt) and `--info-service` in firewalld 1.3's format:
# firewalld cannot run here (it would manage the root namespace's firewall), so its outputs
# are replayed.
FIREWALLD_ZONES = """block
  target: %%REJECT%%
  icmp-block-inversion: no
  interfaces: 
  sources: 
  services: 
  ports: 
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 

public (default, active)
  target: default
  icmp-block-inversion: no
  interfaces: eth0
  sources: 
  services: dhcpv6-client ssh
  ports: 8443/tcp 60000-61000/udp
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 
\trule family="ipv4" source address="192.168.1.0/24" port port="3306" protocol="tcp" accept
\trule family="ipv4" port port="23" protocol="tcp" reject

internal (active)
  target: default
  icmp-block-inversion: no
  interfaces: eth1
  sources: 
  services: ssh samba mdns
  ports: 
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 

trusted (active)
  target: ACCEPT
  icmp-block-inversion: no
  interfaces: 
  sources: 10.8.0.0/24
  services: 
  ports: 
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 
"""  # noqa: W291

FIREWALLD_SERVICES = {
    "ssh": "ssh\n  ports: 22/tcp\n  protocols: \n  source-ports: \n  modules: \n",
    "dhcpv6-client": "dhcpv6-client\n  ports: 546/udp\n  protocols: \n",
    "samba": "samba\n  ports: 137/udp 138/udp 139/tcp 445/tcp\n  protocols: \n",
    "mdns": "mdns\n  ports: 5353/udp\n  protocols: \n",
}
