"""UDP amplifier checks, each both ways: real daemons where Debian has one (memcached, snmpd,
ntpsec), faithful servers speaking the real protocol bytes where it has none (NTP mode 6/7 of
ntpd 4.2.x, SSDP as miniupnpd, an mDNS responder). DNS amplification is in test_check_dns.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import daemons as dm
import fixtures_dns as fd
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.observation import CheckOptions
from mamori.model import CheckResult, CheckStatus, Confidence, Proto, Severity
from mamori.net.stream import Limits

pytestmark = pytest.mark.daemon
# Hardened servers stay silent: wait one second per try, not three.
QUICK = CheckOptions(limits=Limits(read_cap=65536, idle_timeout=1.0, deadline=6.0,
                                   connect_timeout=1.0))


def _udp(check_id: str, host: str, port: int, service: str,
         options: CheckOptions | None = None) -> CheckResult:
    return run_check(check_id, host, port, service, proto=Proto.UDP, options=options)


def _facts(result: CheckResult) -> dict[str, str]:
    assert result.evidence is not None
    return dict(result.evidence.facts)


def _assert_amplifies(result: CheckResult, at_least: float) -> dict[str, str]:
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    facts = _facts(result)
    factor = float(facts["factor"])
    assert factor >= at_least, facts
    # The factor is what was measured: reply bytes over request bytes (all tries).
    assert abs(int(facts["bytes_in"]) / int(facts["bytes_out"]) - factor) < 0.1
    assert f"x{facts['factor']}" in result.summary
    return facts


# --- NTP ---------------------------------------------------------------------------------------


def test_ntp_monlist_is_a_high_finding() -> None:
    with fd.UdpServer("127.0.61.21", 1123, fd.ntp_responder(monlist=True, mode6=True)):
        result = _udp("ntp-amplification", "127.0.61.21", 1123, "ntp")
    facts = _assert_amplifies(result, 50)
    assert facts["grade"] == "monlist" and facts["monlist_entries"] == "60"
    assert facts["monlist_clients"].startswith("198.18.0.1")
    assert int(facts["datagrams"]) == 10
    assert result.severity is Severity.HIGH


def test_ntp_readvar_without_monlist_is_a_medium_finding() -> None:
    # ntpd 4.2.7p26+: monlist gone (error reply), mode 6 still open without noquery.
    with fd.UdpServer("127.0.61.22", 1123, fd.ntp_responder(monlist=False, mode6=True)):
        result = _udp("ntp-amplification", "127.0.61.22", 1123, "ntp")
    facts = _assert_amplifies(result, 10)
    assert facts["grade"] == "readvar" and facts["ntp_version"].startswith("ntpd 4.2.8")
    assert facts["mode7_factor"] == "0.2"  # the 8-byte error reply to a 48-byte request
    assert result.severity is Severity.MEDIUM


def test_ntp_with_noquery_passes() -> None:
    with fd.UdpServer("127.0.61.23", 1123, fd.ntp_responder(monlist=True, mode6=True,
                                                            noquery=True)):
        result = _udp("ntp-amplification", "127.0.61.23", 1123, "ntp", QUICK)
    assert_passed(result)


def test_real_ntpsec_with_noquery_passes(tmp_path: Path) -> None:
    with dm.running(fd.start_ntpsec, tmp_path, "127.0.61.20", noquery=True) as daemon:
        assert dm.listeners_on_wildcard([daemon.proc.pid]) == []
        result = _udp("ntp-amplification", "127.0.61.20", 123, "ntp", QUICK)
    assert_passed(result)
    assert _facts(result)["factor"] == "0.0"


# --- memcached ---------------------------------------------------------------------------------


def test_memcached_over_udp_is_a_finding(tmp_path: Path) -> None:
    with dm.running(dm.start_memcached, tmp_path, "127.0.61.30", 21211, udp=True) as daemon:
        assert dm.listeners_on_wildcard([daemon.proc.pid]) == []
        result = _udp("memcached-udp-amplification", "127.0.61.30", 21211, "memcached")
    facts = _assert_amplifies(result, 50)
    assert facts["memcached_version"].startswith("1.")
    assert int(facts["datagrams"]) >= 2  # stats does not fit one 1400-byte frame
    assert "stats" in (result.evidence.request or "")  # type: ignore[union-attr]


def test_memcached_without_udp_passes(tmp_path: Path) -> None:
    # The fix memcached offers is -U 0: the UDP port is closed (ICMP port unreachable),
    # and a closed port amplifies nothing.
    with dm.running(dm.start_memcached, tmp_path, "127.0.61.31", 21211, udp=False):
        result = _udp("memcached-udp-amplification", "127.0.61.31", 21211, "memcached")
    assert_passed(result)
    assert "port unreachable" in (result.evidence.test if result.evidence else "")


# --- SNMP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snmpds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with dm.running_all({
        host: lambda host=host, community=community: dm.start_snmpd(
            tmp_path_factory.mktemp("snmpd"), host, 1161, community=community)
        for host, community in (("127.0.61.40", "public"),
                                ("127.0.61.41", "n0t-public-" + "x" * 12))
    }) as snmpds:
        assert dm.listeners_on_wildcard([d.proc.pid for d in snmpds.values()]) == []
        yield


def test_snmp_public_getbulk_is_a_finding(snmpds: None) -> None:
    result = _udp("snmp-amplification", "127.0.61.40", 1161, "snmp")
    facts = _assert_amplifies(result, 5)
    assert facts["community"] == "public"
    assert facts["first_oid"] == "1.3.6.1.2.1.1.1.0" and "Linux" in facts["first_value"]


def test_snmp_with_another_community_passes(snmpds: None) -> None:
    result = _udp("snmp-amplification", "127.0.61.41", 1161, "snmp", QUICK)
    assert_passed(result)


# --- SSDP --------------------------------------------------------------------------------------


def test_ssdp_answering_unicast_is_a_finding() -> None:
    host = "127.0.61.50"
    with fd.UdpServer(host, 1900, fd.ssdp_responder(host, lan=None)):
        result = _udp("ssdp-amplification", host, 1900, "ssdp")
    facts = _assert_amplifies(result, 5)
    assert facts["answers"] == str(len(fd.SSDP_TARGETS))
    assert "MiniUPnPd" in facts["server"] and facts["location"].endswith("/rootDesc.xml")


def test_ssdp_answering_only_its_lan_passes() -> None:
    host = "127.0.61.51"
    with fd.UdpServer(host, 1900, fd.ssdp_responder(host, lan="192.168.1.")):
        result = _udp("ssdp-amplification", host, 1900, "ssdp", QUICK)
    assert_passed(result)


# --- mDNS --------------------------------------------------------------------------------------


def test_mdns_answering_unicast_from_anywhere_is_a_finding() -> None:
    with fd.UdpServer("127.0.61.60", 5353, fd.mdns_responder(on_link=None)) as server:
        result = _udp("mdns-unicast-amplification", "127.0.61.60", 5353, "mdns")
    facts = _assert_amplifies(result, 2)
    assert "_smb._tcp.local" in facts["services"]
    assert facts["answer_records"] == str(len(fd.MDNS_SERVICES))
    assert server.received  # the query really went to the responder


def test_mdns_answering_only_on_link_passes() -> None:
    with fd.UdpServer("127.0.61.61", 5353, fd.mdns_responder(on_link="192.168.1.")):
        result = _udp("mdns-unicast-amplification", "127.0.61.61", 5353, "mdns", QUICK)
    assert_passed(result)


# --- what is never a finding -------------------------------------------------------------------


@pytest.mark.parametrize("check_id,service", [
    ("ntp-amplification", "ntp"), ("memcached-udp-amplification", "memcached"),
    ("ssdp-amplification", "ssdp"), ("mdns-unicast-amplification", "mdns"),
    ("snmp-amplification", "snmp"), ("dns-amplification", "dns"),
])
def test_a_large_reply_that_is_not_the_protocol_is_not_tested(check_id: str,
                                                              service: str) -> None:
    # 1,400 bytes of noise for any datagram: a big factor, but no valid reply.
    noise = bytes(range(256)) * 5 + b"\x00" * 120
    with fd.UdpServer("127.0.61.70", 4999, lambda _d, _p: [noise[:1400]]):
        result = _udp(check_id, "127.0.61.70", 4999, service, QUICK)
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "garbage" in result.summary
