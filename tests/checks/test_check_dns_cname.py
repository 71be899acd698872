"""dns-open-resolver against real bind9 and real unbound answering with CNAME chains whose
targets are compression pointers (as real servers send them): the check must follow the
chain to the address. See fixtures_dns_cname for the two daemons (127.0.74.0/24)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import daemons as dm
import fixtures_dns_cname as fc
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.observation import CheckOptions
from mamori.model import CheckResult, Confidence, Proto, Severity
from mamori.protocols import dns
from mamori.protocols.dns_edns import TYPE_CNAME

pytestmark = pytest.mark.daemon


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dm.Daemon]]:
    with dm.running_all({
        "unbound": lambda: fc.start_unbound_cname(tmp_path_factory.mktemp("unbound-cname")),
        "bind9": lambda: fc.start_bind9(tmp_path_factory.mktemp("bind9-cname")),
    }) as daemons:
        yield daemons


def ask(host: str, name: str, address: str) -> CheckResult:
    options = CheckOptions(resolver_check_name=name, resolver_check_addresses=(address,))
    return run_check("dns-open-resolver", host, fc.PORT, "dns", proto=Proto.UDP,
                     options=options)


def reply(host: str, name: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(dns.build_query(name, dns.TYPE_A, txid=0x4D4D), (host, fc.PORT))
        return s.recv(4096)


@pytest.mark.parametrize(("host", "name"), [(fc.UNBOUND_HOST, fc.BIND_NAME),
                                            (fc.BIND_HOST, fc.UNBOUND_NAME),
                                            (fc.BIND_HOST, fc.BIND_NAME)])
def test_the_daemons_compress_the_cname_target(world: dict[str, dm.Daemon], host: str,
                                               name: str) -> None:
    """The premise: the CNAME's rdata ends in a pointer (0b11 in the top bits)."""
    msg = dns.parse_message(reply(host, name))
    assert msg is not None
    (cname,) = [r for r in msg.answers if r.rtype == TYPE_CNAME]
    assert len(cname.data) >= 2 and cname.data[-2] & 0xC0 == 0xC0, cname.data.hex()
    assert cname.text == (name.replace("www.", "host."),)


@pytest.mark.parametrize(("server", "host", "name", "address"), [
    ("unbound", fc.UNBOUND_HOST, fc.BIND_NAME, fc.BIND_ADDRESS),
    ("bind9", fc.BIND_HOST, fc.UNBOUND_NAME, fc.UNBOUND_ADDRESS),
])
def test_open_resolver_with_a_cname_answer_is_a_confirmed_finding(
    world: dict[str, dm.Daemon], server: str, host: str, name: str, address: str,
) -> None:
    world_daemon = world[server]
    assert world_daemon.host == host
    result = ask(host, name, address)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED and result.severity is Severity.HIGH
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["answers"] == address and facts["aa"] == "no" and facts["rcode"] == "NOERROR"
    assert address in result.summary


def test_an_authoritative_cname_answer_reports_the_address(world: dict[str, dm.Daemon]) -> None:
    # bind9 answering its own zone: not recursion, but the chain is still followed.
    result = ask(fc.BIND_HOST, fc.BIND_NAME, fc.BIND_ADDRESS)
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["aa"] == "yes"
    assert result.evidence.facts["answers"] == fc.BIND_ADDRESS
