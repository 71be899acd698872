"""Real bind9 and unbound answering with CNAME chains (addresses 127.0.74.0/24).

Each serves one zone itself with ``www CNAME host`` and ``host A ...``, and recurses for the
other's zone, to the other only (open to 127.0.0.0/8: the open-resolver misconfiguration):

    bind9   127.0.74.12: primary for bind.test, forwards unbound.test to unbound
    unbound 127.0.74.11: local-data for unbound.test, stub-zone bind.test to bind9

Both compress the CNAME target in their answers (a pointer into the owner name), as real
servers do. Nothing else is reachable: the root is "delegated" to 127.0.74.254, where nothing
listens, so neither daemon ever asks the Internet.
"""

from __future__ import annotations

from pathlib import Path

import daemons as dm

UNBOUND_HOST = "127.0.74.11"
BIND_HOST = "127.0.74.12"
NOWHERE = "127.0.74.254"  # the "root servers": nothing listens here
PORT = 5302
BIND_NAME, BIND_ADDRESS = "www.bind.test", "127.0.74.21"
UNBOUND_NAME, UNBOUND_ADDRESS = "www.unbound.test", "127.0.74.22"


def start_unbound_cname(workdir: Path, host: str = UNBOUND_HOST, port: int = PORT) -> dm.Daemon:
    unbound = dm._need("/usr/sbin/unbound")
    pid = workdir / "unbound.pid"
    cfg = workdir / "unbound.conf"
    cfg.write_text(
        "server:\n"
        f"  interface: {host}@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n"
        f"  username: \"\"\n  directory: \"{workdir}\"\n  pidfile: \"{pid}\"\n"
        "  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  do-ip6: no\n  do-tcp: no\n"
        f"  outgoing-interface: {host}\n  do-not-query-localhost: no\n"
        "  access-control: 127.0.0.0/8 allow\n"
        '  module-config: "iterator"\n  qname-minimisation: no\n  hide-version: yes\n'
        "  num-threads: 1\n  outgoing-range: 16\n"
        '  local-zone: "test." nodefault\n'
        '  local-zone: "unbound.test." static\n'
        f'  local-data: "{UNBOUND_NAME}. 300 IN CNAME host.unbound.test."\n'
        f'  local-data: "host.unbound.test. 300 IN A {UNBOUND_ADDRESS}"\n'
        f'stub-zone:\n  name: "bind.test."\n  stub-addr: {BIND_HOST}@{port}\n'
        f'stub-zone:\n  name: "."\n  stub-addr: {NOWHERE}@53\n'
        "remote-control:\n  control-enable: no\n"
    )
    proc, log = dm._spawn([unbound, "-d", "-c", str(cfg)], workdir, "unbound.log")
    d = dm.Daemon("unbound", host, port, proc, workdir, pid, log)
    return dm._started(d, lambda: dm.wait_udp(host, port, proc=proc))


BIND_ZONE = f"""$TTL 300
@     IN SOA ns.bind.test. hostmaster.bind.test. 1 3600 900 604800 300
@     IN NS  ns.bind.test.
ns    IN A   {BIND_HOST}
www   IN CNAME host
host  IN A   {BIND_ADDRESS}
"""


def start_bind9(workdir: Path, host: str = BIND_HOST, port: int = PORT) -> dm.Daemon:
    """named in the foreground (``-g``), IPv4 only, on host:port (adds host/32 on lo: named
    listens only on interface addresses), recursion open to anyone, no control channel."""
    named = dm._need("/usr/sbin/named")
    undo = dm.add_lo_alias(host)
    (workdir / "bind.test.zone").write_text(BIND_ZONE)
    (workdir / "root.hint").write_text(f".  3600000 NS a.root.test.\n"
                                       f"a.root.test. 3600000 A {NOWHERE}\n")
    pid = workdir / "named.pid"
    cfg = workdir / "named.conf"
    cfg.write_text(
        "options {\n"
        f'  directory "{workdir}";\n  pid-file "{pid}";\n'
        f'  session-keyfile "{workdir}/session.key";\n'
        f'  managed-keys-directory "{workdir}";\n'
        f"  listen-on port {port} {{ {host}; }};\n  listen-on-v6 {{ none; }};\n"
        f"  query-source address {host};\n"
        "  recursion yes;\n  allow-recursion { any; };\n  allow-query-cache { any; };\n"
        "  dnssec-validation no;\n  notify no;\n  version none;\n"
        "};\n"
        "controls { };\n"
        'zone "." { type hint; file "root.hint"; };\n'
        'zone "bind.test" { type primary; file "bind.test.zone"; };\n'
        'zone "unbound.test" { type forward; forward only; '
        f"forwarders {{ {UNBOUND_HOST} port {port}; }}; }};\n"
    )
    proc, log = dm._spawn([named, "-g", "-4", "-n", "1", "-c", str(cfg)], workdir, "named.log")
    d = dm.Daemon("named", host, port, proc, workdir, pid, log, cleanup=[undo])
    return dm._started(d, lambda: dm.wait_udp(host, port, proc=proc))
