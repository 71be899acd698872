"""`mamori scan` end to end against real daemons: sweep, identify, store, JSON — as a user runs it.

The daemons listen on ports they never use, so a name can only come from what answers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import daemons as dm
from conftest import ROOT, run_mamori

pytestmark = pytest.mark.daemon
HOST = "127.0.42.1"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    base = tmp_path_factory.mktemp("scan-daemons")
    ports = {"ssh": 4222, "http": 4280, "redis": 4379, "dns": 4353}
    with dm.running_all({
        "ssh": lambda: dm.start_sshd(_mkdir(base / "ssh"), HOST, ports["ssh"]),
        "http": lambda: dm.start_nginx(_mkdir(base / "http"), HOST, ports["http"]),
        "redis": lambda: dm.start_redis(_mkdir(base / "redis"), HOST, ports["redis"]),
        "dns": lambda: dm.start_unbound(_mkdir(base / "dns"), HOST, ports["dns"]),
    }):
        yield ports


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_scan_names_services_on_unusual_ports(tmp_path: Path, daemons: dict[str, int]) -> None:
    tcp = ",".join(str(p) for p in daemons.values())
    proc = run_mamori(
        "scan", HOST, "-p", f"T:{tcp},4000-4010,U:{daemons['dns']},4999", "--udp",
        "--format", "json", "--db", str(tmp_path / "m.db"),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # The real output of a real scan, services and UDP included, matches the published schema.
    schema = json.loads((ROOT / "docs" / "schema" / "scan-v1.json").read_text())
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)
    (host,) = doc["hosts"]
    found = {(e["proto"], e["port"]): e for e in host["endpoints"]}
    names = {k: (e["service"] or {}).get("name") for k, e in found.items()}
    assert names[("tcp", daemons["ssh"])] == "ssh"
    assert found[("tcp", daemons["ssh"])]["service"]["product"] == "OpenSSH"
    assert names[("tcp", daemons["http"])] == "http"
    assert found[("tcp", daemons["http"])]["service"]["product"] == "nginx"
    assert names[("tcp", daemons["redis"])] == "redis"
    assert names[("tcp", daemons["dns"])] == "dns"
    # UDP: unbound answers the DNS payload; the closed UDP port is counted, not listed as open.
    assert found[("udp", daemons["dns"])]["state"] == "open"
    assert names[("udp", daemons["dns"])] == "dns"
    assert ("udp", 4999) not in found or found[("udp", 4999)]["state"] != "open"
    # Every TCP port we did not start is closed, and said so.
    assert host["not_shown"]["tcp"]["closed"] == 11
    assert all(e["state"] == "open" for k, e in found.items() if k[0] == "tcp")


def test_table_report_shows_product_and_version(tmp_path: Path, daemons: dict[str, int]) -> None:
    proc = run_mamori("scan", HOST, "-p", str(daemons["ssh"]), "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 0, proc.stderr
    assert f"{daemons['ssh']}/tcp" in proc.stdout and "OpenSSH" in proc.stdout


@pytest.fixture
def v6_listener() -> Iterator[int]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def test_ipv6_scan_through_the_cli(tmp_path: Path, v6_listener: int) -> None:
    proc = run_mamori("scan", "::1", "-p", f"{v6_listener},{v6_listener + 1}", "--no-identify",
                      "-f", "json", "--db", str(tmp_path / "m.db"))
    assert proc.returncode == 0, proc.stderr
    (host,) = json.loads(proc.stdout)["hosts"]
    assert host["address"] == "::1"
    assert [e["port"] for e in host["endpoints"] if e["state"] == "open"] == [v6_listener]
