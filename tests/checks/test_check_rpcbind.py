"""rpcbind-dump-exposed against Debian's rpcbind: answering DUMP to the network, and its twin
that TCP wrappers make refuse every call (issue #14). Each on its own 127.0.85.x address.

A hardened rpcbind cannot be "bound to loopback only" here, where every address is loopback:
the twin is the other supported hardening, ``rpcbind: ALL`` in hosts.deny, which makes the
real daemon answer DUMP with an RPC authentication error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
import fake_servers
import fixtures_breadth as fb
from checks_helpers import assert_finding, assert_passed
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.checks.probes.rpc import describe
from mamori.cli.scan import select_ports
from mamori.identify.engine import identify_udp, udp_payload
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    PortState,
    Proto,
    Reason,
    Service,
)
from mamori.protocols import sunrpc
from threaded_server import ThreadedServer

pytestmark = pytest.mark.daemon

OPEN, WRAPPED, BARE, NOT_RPC = "127.0.85.30", "127.0.85.31", "127.0.85.32", "127.0.85.33"


def check(host: str, port: int = 111) -> CheckResult:
    spec = load_check(CATALOG_DIR / "rpcbind-dump-exposed.yaml")
    ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name="rpcbind")))
    assert len(results) == 1, results
    return results[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Lab]:
    base = tmp_path_factory.mktemp("rpcbind")
    with dm.running_lab({
        "open": lambda: fb.start_rpcbind(base / "open", OPEN, wrapped=False),
        "wrapped": lambda: fb.start_rpcbind(base / "wrapped", WRAPPED, wrapped=True),
        "bare": lambda: fb.start_rpcbind(base / "bare", BARE, wrapped=False),
    }) as running:
        if "open" in running:
            assert fb.register_rpc_program(OPEN, sunrpc.MOUNT, 3, 20048)
            assert fb.register_rpc_program(OPEN, 100003, 3, 2049)
        yield running


def test_rpcbind_answering_dump_lists_its_services(lab: dm.Lab) -> None:
    lab.need("open")
    result = check(OPEN)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert "mountd (100005) v3 tcp/20048" in facts["programs"], facts
    assert "nfs (100003) v3 tcp/2049" in facts["programs"], facts
    assert "portmapper (100000) v2,3,4 tcp/111 udp/111" in facts["programs"], facts
    assert facts["other_programs"] == "2"
    assert "PMAPPROC_DUMP" in result.evidence.reply and "DUMP" in result.evidence.request
    assert "lists its services" in result.summary


def test_rpcbind_with_only_itself_registered_is_a_low_finding(lab: dm.Lab) -> None:
    lab.need("bare")
    result = check(BARE)
    assert_finding(result)
    assert result.evidence is not None
    assert result.evidence.facts["other_programs"] == "0"
    assert result.severity.value == "low"


def test_rpcbind_refusing_calls_from_the_network_passes(lab: dm.Lab) -> None:
    lab.need("wrapped")
    result = check(WRAPPED)
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["dump"] == "refused: denied: authentication error (too weak)"


def test_a_peer_that_is_not_rpc_is_not_tested() -> None:
    def http(conn: object) -> None:
        conn.recv(100)  # type: ignore[attr-defined]
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")  # type: ignore[attr-defined]

    with ThreadedServer(NOT_RPC, 11111, http):
        result = check(NOT_RPC, 11111)
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "ONC RPC" in result.summary


def test_describe_groups_versions_and_ports() -> None:
    maps = [sunrpc.Mapping(100000, v, p, 111) for v in (4, 2) for p in (6, 17)]
    maps.append(sunrpc.Mapping(391002, 1, 6, 700))
    assert describe(maps) == ["portmapper (100000) v2,4 tcp/111 udp/111",
                              "program (391002) v1 tcp/700"]


def test_refusals_parse_and_never_raise() -> None:
    denied = bytes.fromhex("800000140000123400000001000000010000000100000005")
    assert sunrpc.parse_refusal(denied, 0x1234) == "denied: authentication error (too weak)"
    assert sunrpc.parse_refusal(denied, 0x1235) is None
    for cut in range(len(denied)):
        assert sunrpc.parse_refusal(denied[:cut], 0x1234) is None


def test_udp_sweep_covers_111_and_names_rpcbind(lab: dm.Lab) -> None:
    assert 111 in select_ports("22", None, True, None)[1]  # --udp alone sweeps 111
    lab.need("open")
    payload = udp_payload(111)
    assert payload, "no UDP payload for port 111: the sweep would send an empty datagram"
    reply = asyncio.run(fake_servers.udp_ask(OPEN, 111, payload))
    service = identify_udp(111, reply)
    assert service is not None and service.name == "rpcbind", (reply, service)
    assert service.confidence == "confirmed"


def test_scan_udp_names_rpcbind_on_111_and_checks_it_over_tcp(
    lab: dm.Lab, tmp_path: Path
) -> None:
    import json

    from conftest import run_mamori

    lab.need("open")
    proc = run_mamori("scan", OPEN, "-p", "T:111", "--udp", "--format", "json",
                      "--db", f"{tmp_path}/m.db")
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    by_port = {(e["proto"], e["port"]): e for e in host["endpoints"]}
    assert by_port[("udp", 111)]["service"]["name"] == "rpcbind", by_port.get(("udp", 111))
    assert by_port[("tcp", 111)]["service"]["name"] == "rpcbind"
    assert "rpcbind-dump-exposed" in json.dumps(doc)
