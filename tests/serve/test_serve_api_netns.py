"""The outside view across two network namespaces, over IPv4 and IPv6: real ``mamori serve``
(the CLI, embedded backend; one process per address, as serve binds one address, both on one
SQLite database) in an "internet" namespace at 11.0.0.1 and 2a0e:8b00:1::1, and
``probe_from_outside`` in a "home" namespace at 11.0.0.10 and 2a0e:8b00:1::10, public-looking
addresses that exist only on this test's veth pair (serve's scope refuses 203.0.113/24 and
2001:db8::/32 as reserved). The service's name resolves to both addresses through the home
namespace's own hosts file (``ip netns exec`` mounts /etc/netns/<ns>/hosts), so one URL gives
one request per family, each over its family.

Proven: one check per family, each of the address it came from (seen_address), an open and a
closed port per family, and the service's database holds exactly those two checks; with only a
ULA left on the home side, the IPv6 request is not sent and the reason says so.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from netns import ip, veth_pair
from sweep_fixtures import netns_available

SERVICE_V4, SERVICE_V6 = "11.0.0.1", "2a0e:8b00:1::1"
HOME_V4, HOME_V6 = "11.0.0.10", "2a0e:8b00:1::10"
NAME = "outside.mamori.test"
SERVE_PORT, OPEN_PORT, CLOSED_PORT = 8088, 18080, 18081

CLIENT = r"""
import json, socket, sys, time
from mamori.audit.outside import probe_from_outside
from mamori.model.base import Proto

url, v4, v6, service4, service6, open_port, closed_port = sys.argv[1:8]
listeners = [socket.create_server((v4, int(open_port))),
             socket.create_server((v6, int(open_port)), family=socket.AF_INET6)]
end = time.monotonic() + 30
for service in (service4, service6):
    while True:  # the service may still be starting
        try:
            socket.create_connection((service, int(url.rsplit(":", 1)[1])), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
results = probe_from_outside(url, [(Proto.TCP, int(open_port)), (Proto.TCP, int(closed_port))],
                             [4, 6], deadline=90)
print(json.dumps([{"family": r.family, "seen": r.seen_address, "error": r.error,
                   "id": r.check_id, "ports": {str(p.port): p.state.value for p in r.ports}}
                  for r in results]))
"""


ONLY_V6 = r"""
import json, sys
from mamori.audit.outside import probe_from_outside
from mamori.model.base import Proto

(r,) = probe_from_outside(sys.argv[1], [(Proto.TCP, int(sys.argv[2]))], [6], deadline=30)
print(json.dumps({"family": r.family, "seen": r.seen_address, "error": r.error}))
"""


@contextmanager
def hosts_file(ns: str, text: str) -> Iterator[None]:
    folder = Path("/etc/netns") / ns
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts").write_text(text)
    try:
        yield
    finally:
        (folder / "hosts").unlink(missing_ok=True)
        folder.rmdir()


def test_one_request_per_family_each_seen_from_its_own_address(tmp_path: Path) -> None:
    why = netns_available()
    if why is not None:
        pytest.skip(why)
    tag = str(os.getpid() % 100000)
    home, net = f"mamori-oh{tag}", f"mamori-oi{tag}"
    procs: list[subprocess.Popen[str]] = []
    db = tmp_path / "serve.db"
    commands = []
    for bind in (SERVICE_V4, SERVICE_V6):  # one process per address: serve binds one address
        settings = tmp_path / f"settings-{bind.replace(':', '_')}.toml"
        settings.write_text(
            "[serve]\n"
            f'bind = "{bind}"\nport = {SERVE_PORT}\npublic_url = "http://{NAME}:{SERVE_PORT}"\n'
            f'allowed_hosts = ["{NAME}"]\n'
            f'excluded_ports = "2024"\ndb = "{db}"\nprobe_timeout = 0.5\n'
            'secret_key = "netns-test-secret-0123456789abcdef0123"\n')
        commands.append(["ip", "netns", "exec", net, sys.executable, "-m", "mamori", "serve",
                         "--settings", str(settings)])
    logs: list[str] = []
    with veth_pair(home, net, (f"moh{tag}"[:15], f"moi{tag}"[:15]),
                   ([f"{HOME_V4}/24", f"{HOME_V6}/64"], [f"{SERVICE_V4}/24", f"{SERVICE_V6}/64"]),
                   procs), hosts_file(home, f"{SERVICE_V4} {NAME}\n{SERVICE_V6} {NAME}\n"):
        servers = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for cmd in commands]
        procs.extend(servers)
        try:
            client = subprocess.run(
                ["ip", "netns", "exec", home, sys.executable, "-c", CLIENT,
                 f"http://{NAME}:{SERVE_PORT}", HOME_V4, HOME_V6, SERVICE_V4, SERVICE_V6,
                 str(OPEN_PORT), str(CLOSED_PORT)],
                capture_output=True, text=True, timeout=180)
            # Now the home side keeps only a ULA (fd00:13::10) with a route to the service:
            # the IPv6 request would not show the internet a global address, so none is sent.
            dev = f"moh{tag}"[:15]
            ip("-n", home, "addr", "del", f"{HOME_V6}/64", "dev", dev)
            ip("-n", home, "addr", "add", "fd00:13::10/64", "dev", dev, "nodad")
            ip("-n", home, "-6", "route", "add", "2a0e:8b00:1::/64", "dev", dev)
            ula = subprocess.run(
                ["ip", "netns", "exec", home, sys.executable, "-c", ONLY_V6,
                 f"http://{NAME}:{SERVE_PORT}", str(OPEN_PORT)],
                capture_output=True, text=True, timeout=60)
        finally:
            for server in servers:
                server.terminate()
                logs.append(server.communicate(timeout=15)[0])
    log = "\n".join(logs)
    assert client.returncode == 0, client.stderr[-2000:] + log[-2000:]
    v4, v6 = json.loads(client.stdout)
    assert v4 == {"family": 4, "seen": HOME_V4, "error": None, "id": v4["id"],
                  "ports": {str(OPEN_PORT): "open", str(CLOSED_PORT): "closed"}}, log[-2000:]
    assert v6 == {"family": 6, "seen": HOME_V6, "error": None, "id": v6["id"],
                  "ports": {str(OPEN_PORT): "open", str(CLOSED_PORT): "closed"}}, log[-2000:]
    assert v4["id"] != v6["id"]
    assert ula.returncode == 0, ula.stderr[-2000:]
    assert json.loads(ula.stdout) == {
        "family": 6, "seen": None,
        "error": "not tested over IPv6: this host has no global IPv6 address "
                 "(it would send from fd00:13::10)"}
    with sqlite3.connect(db) as conn:  # the service's own record: one check per family
        peers = sorted(r[0] for r in conn.execute("select peer from web_checks"))
        targets = sorted(r[0] for r in conn.execute("select targets from scans"))
    assert peers == sorted([HOME_V4, HOME_V6])
    assert targets == sorted([json.dumps([HOME_V4]), json.dumps([HOME_V6])])
