"""snmp-default-community and snmp-writable-community against real snmpd: "public" read-only
plus "private" read-write, only "private" (read-only: a vendor default other than "public",
which the sweep's "public" request never hears), and the hardened twin on a random community.
Plus `mamori scan --udp` finding and checking the "private"-only agent end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import fixtures_snmp as fsn
from checks_helpers import assert_finding, assert_passed, run_check, yes_server
from conftest import run_mamori
from daemons import Daemon, running_all
from mamori.checks.observation import CheckOptions
from mamori.model import CheckStatus, Confidence, Proto, Severity
from mamori.net.stream import Limits
from mamori.protocols import snmp

pytestmark = pytest.mark.daemon

RW, PRIVATE_ONLY, HARD = "127.0.84.31", "127.0.84.32", "127.0.84.33"
HONEY = "127.0.84.34"
PORT = 161  # the real port: the scan asks other communities only where SNMP is expected
DEFAULTS, WRITABLE = "snmp-default-community", "snmp-writable-community"
# snmpd on loopback answers in milliseconds: a community it ignores costs 2 x 0.5 s here, not
# the default 2 x 3 s (the checks' behaviour is the same; only the wait for silence is shorter).
FAST = CheckOptions(limits=Limits(read_cap=65536, idle_timeout=0.5, deadline=8.0,
                                  connect_timeout=3.0))


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    work = tmp_path_factory.mktemp("snmp")
    with running_all({
        "rw": lambda: fsn.start_snmpd_access(
            work, RW, PORT, "rocommunity public 127.0.0.0/8\nrwcommunity private 127.0.0.0/8\n"),
        "private-only": lambda: fsn.start_snmpd_access(
            work, PRIVATE_ONLY, PORT, "rocommunity private 127.0.0.0/8\n"),
        "hardened": lambda: fsn.start_snmpd_access(
            work, HARD, PORT, "rocommunity mamori-Zq81-not-a-default 127.0.0.0/8\n"),
    }) as started:
        yield started


def test_read_write_private_is_proven_by_a_set_to_the_same_value(
        agents: dict[str, Daemon]) -> None:
    result = run_check(WRITABLE, RW, PORT, "snmp", proto=Proto.UDP, options=FAST)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.CRITICAL
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["write_community"] == "private" and facts["set_reply"] == "noError"
    # sysLocation is fixed by snmpd.conf: the agent refuses it, sysContact is then used.
    assert "sysLocation.0" in facts["exchanges"] and "notWritable" in facts["exchanges"]
    assert facts["write_object"] == "sysContact.0"
    # The value is unchanged: read it back.
    again = snmp.parse_response(_udp_get(RW, "public", snmp.SYS_CONTACT))
    assert again is not None and again.value(snmp.SYS_CONTACT) == facts["write_value"]
    assert result.evidence.request  # the exact SET sent


def test_read_write_agent_answers_defaults(agents: dict[str, Daemon]) -> None:
    result = run_check(DEFAULTS, RW, PORT, "snmp", proto=Proto.UDP, options=FAST)
    assert_finding(result)
    assert result.severity is Severity.HIGH
    assert result.evidence is not None
    assert result.evidence.facts["readable"] == "public private"


def test_private_only_read_only_agent(agents: dict[str, Daemon]) -> None:
    defaults = run_check(DEFAULTS, PRIVATE_ONLY, PORT, "snmp", proto=Proto.UDP, options=FAST)
    assert_finding(defaults)
    assert defaults.evidence is not None
    assert defaults.evidence.facts["readable"] == "private"
    assert defaults.evidence.facts["grade"] == "vendor"
    writable = run_check(WRITABLE, PRIVATE_ONLY, PORT, "snmp", proto=Proto.UDP, options=FAST)
    assert_passed(writable)
    assert writable.evidence is not None
    assert "noAccess" in writable.evidence.facts["exchanges"]


def test_hardened_agent_is_clean(agents: dict[str, Daemon]) -> None:
    for check_id in (DEFAULTS, WRITABLE):
        result = run_check(check_id, HARD, PORT, "snmp", proto=Proto.UDP, options=FAST)
        assert_passed(result)
        assert result.evidence is not None
        assert "'private' -> no answer" in result.evidence.facts["exchanges"]


def test_yes_server_is_not_tested() -> None:
    with yes_server(HONEY, PORT):
        for check_id in (DEFAULTS, WRITABLE):
            result = run_check(check_id, HONEY, PORT, "snmp", proto=Proto.UDP)
            assert result.status is CheckStatus.NOT_TESTED, result.summary


def test_scan_finds_and_checks_an_agent_that_only_knows_private(
        agents: dict[str, Daemon], tmp_path: Path) -> None:
    proc = run_mamori("scan", PRIVATE_ONLY, "-p", f"U:{PORT}", "--udp", "--format", "json",
                      "--checks", f"{DEFAULTS},{WRITABLE},snmp-amplification",
                      "--db", str(tmp_path / "m.db"), timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    (endpoint,) = [e for e in host["endpoints"] if e["port"] == PORT]
    assert endpoint["state"] == "open"
    assert endpoint["service"]["name"] == "snmp"
    assert endpoint["service"]["extra"]["community"] == "private"
    checks = {c["check_id"]: c for c in doc["checks"]}
    assert checks[DEFAULTS]["status"] == "finding"
    assert checks[WRITABLE]["status"] == "passed"
    # The amplification check asks with the community the scan heard, not "public" into
    # silence.
    assert "'private'" in checks["snmp-amplification"]["evidence"]["test"]


def _udp_get(host: str, community: str, oid: str) -> bytes:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(snmp.build_get((oid,), community=community), (host, PORT))
        return s.recv(4096)
