"""dns-open-resolver and dns-amplification against real unbound: open, then refusing.

The world: the test's own authoritative server for "." (fixtures_dns.fake_root) on
127.0.61.10, and unbound instances whose only upstream is that server (a stub zone for ".").
Nothing here can reach the Internet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import daemons as dm
import fixtures_dns as fd
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.observation import CheckOptions
from mamori.model import CheckStatus, Confidence, Proto, Severity

pytestmark = pytest.mark.daemon
AUTH_PORT = 5300
OPEN = "127.0.61.11"
CLOSED = "127.0.61.12"
PORT = 5301
ASK_OUTSIDE = CheckOptions(resolver_check_name=fd.OUTSIDE_NAME,
                           resolver_check_addresses=(fd.OUTSIDE_ADDRESS,))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dm.Daemon]]:
    with fd.fake_root(fd.AUTH_HOST, AUTH_PORT):
        with dm.running_all({
            name: lambda name=name, host=host, open_to_all=open_to_all: fd.start_unbound_resolver(
                tmp_path_factory.mktemp(f"unbound-{name}"), host, PORT,
                auth=(fd.AUTH_HOST, AUTH_PORT), open_to_all=open_to_all)
            for name, host, open_to_all in (("open", OPEN, True), ("closed", CLOSED, False))
        }) as daemons:
            yield daemons


def _dns(check_id: str, host: str, port: int = PORT,
         options: CheckOptions | None = None):  # type: ignore[no-untyped-def]
    return run_check(check_id, host, port, "dns", proto=Proto.UDP, options=options)


def test_unbound_listens_only_on_its_loopback_address(world: dict[str, dm.Daemon]) -> None:
    assert dm.listeners_on_wildcard([d.proc.pid for d in world.values()]) == []


def test_open_resolver_is_a_confirmed_finding(world: dict[str, dm.Daemon]) -> None:
    result = _dns("dns-open-resolver", OPEN, options=ASK_OUTSIDE)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.HIGH
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["query"] == f"{fd.OUTSIDE_NAME} A"
    assert facts["answers"] == fd.OUTSIDE_ADDRESS
    assert facts["rcode"] == "NOERROR" and facts["aa"] == "no"
    assert "outside" in (result.evidence.request or "")
    assert fd.OUTSIDE_ADDRESS in result.summary


def test_refusing_resolver_passes(world: dict[str, dm.Daemon]) -> None:
    result = _dns("dns-open-resolver", CLOSED, options=ASK_OUTSIDE)
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["rcode"] == "REFUSED"


def test_an_unverifiable_answer_is_only_likely(world: dict[str, dm.Daemon]) -> None:
    # The resolver recursed, but its answer is not the address we know to be true.
    options = CheckOptions(resolver_check_name=fd.OUTSIDE_NAME,
                           resolver_check_addresses=("203.0.113.9",))
    result = _dns("dns-open-resolver", OPEN, options=options)
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY
    assert result.severity is Severity.MEDIUM


def test_an_authoritative_answer_is_not_recursion(world: dict[str, dm.Daemon]) -> None:
    # The fake root serves outside.test itself (AA set): answering its own zone is its job.
    result = _dns("dns-open-resolver", fd.AUTH_HOST, AUTH_PORT, options=ASK_OUTSIDE)
    assert_passed(result)
    assert result.evidence is not None and result.evidence.facts["aa"] == "yes"


def test_a_name_that_does_not_exist_is_no_proof(world: dict[str, dm.Daemon]) -> None:
    options = CheckOptions(resolver_check_name="nothing-here.outside.test",
                           resolver_check_addresses=(fd.OUTSIDE_ADDRESS,))
    result = _dns("dns-open-resolver", OPEN, options=options)
    assert_passed(result)
    assert result.evidence is not None and result.evidence.facts["rcode"] == "NXDOMAIN"


def test_nothing_listening_is_not_tested() -> None:
    result = _dns("dns-open-resolver", "127.0.61.13", options=ASK_OUTSIDE)
    assert result.status is CheckStatus.NOT_TESTED
    assert "refused" in result.summary


def test_open_resolver_amplifies(world: dict[str, dm.Daemon]) -> None:
    result = _dns("dns-amplification", OPEN)
    assert_finding(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert float(facts["factor"]) >= 5
    assert int(facts["bytes_in"]) > 5 * int(facts["bytes_out"])
    assert facts["rcode"] == "NOERROR" and int(facts["answer_records"]) == 13
    assert f"x{facts['factor']}" in result.summary


def test_refusing_resolver_does_not_amplify(world: dict[str, dm.Daemon]) -> None:
    result = _dns("dns-amplification", CLOSED)
    assert_passed(result)
    assert result.evidence is not None
    assert float(result.evidence.facts["factor"]) < 1
