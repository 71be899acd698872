"""TLS checks against real servers: openssl s_server misconfigured one way each, nginx
hardened (TLS 1.2+, a good chain from the test CA), and a faithful SSLv3 responder (Debian's
OpenSSL 3 has SSLv3 compiled out, so no real daemon here can speak it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_crypto as fc
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.catalog import default_catalog
from mamori.checks.engine import run_checks
from mamori.checks.observation import CheckOptions
from mamori.checks.probes.tls_chain import judge_certificate
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
from mamori.protocols import tls as proto

TLS_CHECKS = sorted(c for c in default_catalog() if c.startswith("tls-"))

HOSTS = {
    "tls1": ("127.0.66.1", 16401),
    "tls11": ("127.0.66.2", 16402),
    "weak": ("127.0.66.3", 16403),
    "unknown-ca": ("127.0.66.4", 16404),
    "wrong-name": ("127.0.66.5", 16405),
    "nginx": ("127.0.66.10", 16410),
    "sslv3": ("127.0.66.11", 16411),
}
OLD = "DEFAULT@SECLEVEL=0"


@dataclass
class Lab:
    pki: fc.Pki
    options: CheckOptions


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("tls")
    pki = fc.make_pki(work / "pki", [h for h, _ in HOSTS.values()])
    starts = [
        lambda: fc.start_s_server(work, *HOSTS["tls1"], pki.expired, "-tls1", "-cipher", OLD),
        lambda: fc.start_s_server(work, *HOSTS["tls11"], pki.future, "-tls1_1", "-cipher", OLD),
        lambda: fc.start_s_server(work, *HOSTS["weak"], pki.self_signed, "-no_tls1",
                                  "-no_tls1_1", "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"),
        lambda: fc.start_s_server(work, *HOSTS["unknown-ca"], pki.unknown_ca),
        lambda: fc.start_s_server(work, *HOSTS["wrong-name"], pki.wrong_name),
        lambda: fc.start_nginx_tls(work / "nginx", *HOSTS["nginx"], pki.good),
    ]
    with dm.running_all({str(i): start for i, start in enumerate(starts)}) as daemons:
        assert not dm.listeners_on_wildcard([d.proc.pid for d in daemons.values()])
        with fc.Sslv3Responder(*HOSTS["sslv3"]):
            yield Lab(pki, CheckOptions(ca_file=str(pki.ca_file)))


def _run_all(name: str, options: CheckOptions, hostname: str | None) -> dict[str, CheckResult]:
    host, port = HOSTS[name]
    specs = [default_catalog()[c] for c in TLS_CHECKS]
    ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks(specs, ep, Service("https", tls=True), hostname=hostname,
                                     options=options))
    return {r.check_id: r for r in results}


# Each misconfigured server shows exactly its own problems: the other checks pass (never
# "not tested"), which also proves they do not fire on a neighbour's problem.
@pytest.mark.daemon
@pytest.mark.parametrize("name,expected", [
    ("tls1", {"tls-1-0-accepted", "tls-certificate-expired"}),
    ("tls11", {"tls-1-1-accepted", "tls-certificate-not-yet-valid"}),
    ("weak", {"tls-weak-ciphers", "tls-certificate-self-signed"}),
    ("unknown-ca", {"tls-certificate-untrusted"}),
    ("wrong-name", {"tls-certificate-name-mismatch"}),
    ("nginx", set()),
])
def test_each_server_shows_exactly_its_problems(lab: Lab, name: str, expected: set[str]) -> None:
    results = _run_all(name, lab.options, hostname="mamori.test")
    assert set(results) == set(TLS_CHECKS)
    findings = {c for c, r in results.items() if r.status is CheckStatus.FINDING}
    # The SSLv3 check's real-daemon half: every OpenSSL server here refuses SSLv3.
    assert findings == expected, {c: results[c].summary for c in findings ^ expected}
    for check_id in expected:
        assert_finding(results[check_id])
    for check_id in set(TLS_CHECKS) - expected:
        assert_passed(results[check_id])


@pytest.mark.daemon
def test_old_versions_evidence(lab: Lab) -> None:
    r10 = run_check("tls-1-0-accepted", *HOSTS["tls1"], "https", tls=True)
    assert_finding(r10)
    assert r10.evidence is not None and r10.evidence.facts["version"] == "TLSv1.0"
    assert "TLSv1.0 at most" in r10.evidence.test
    r11 = run_check("tls-1-1-accepted", *HOSTS["tls11"], "https", tls=True)
    assert r11.evidence is not None and r11.evidence.facts["version"] == "TLSv1.1"
    # nginx (TLS 1.2+) refuses both with an alert: the refusal is part of the evidence.
    refused = run_check("tls-1-0-accepted", *HOSTS["nginx"], "https", tls=True)
    assert_passed(refused)
    assert refused.evidence is not None and refused.evidence.facts.get("refusal")


@pytest.mark.daemon
def test_weak_cipher_evidence_names_the_suite(lab: Lab) -> None:
    result = run_check("tls-weak-ciphers", *HOSTS["weak"], "https", tls=True)
    assert_finding(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["weak_cipher"].startswith("TLS_") and facts["weakness"]
    assert proto.WEAK_SUITES[int(facts["cipher_code"], 16)][0] == facts["weak_cipher"]


@pytest.mark.daemon
def test_sslv3_faithful_server_is_a_finding(lab: Lab) -> None:
    result = run_check("tls-sslv3-accepted", *HOSTS["sslv3"], "https", tls=True)
    assert_finding(result)
    assert result.evidence is not None and result.evidence.facts["version"] == "SSLv3"
    assert_passed(run_check("tls-sslv3-accepted", *HOSTS["nginx"], "https", tls=True))


@pytest.mark.daemon
def test_certificate_evidence(lab: Lab) -> None:
    expired = run_check("tls-certificate-expired", *HOSTS["tls1"], "https", tls=True)
    assert_finding(expired)
    assert expired.evidence is not None
    assert int(expired.evidence.facts["days_expired"]) >= 34
    untrusted = run_check("tls-certificate-untrusted", *HOSTS["unknown-ca"], "https", tls=True,
                          options=lab.options)
    assert untrusted.evidence is not None
    assert "nobody trusts this CA" in untrusted.evidence.facts["trust_detail"]


@pytest.mark.daemon
def test_private_ca_needs_ca_file(lab: Lab) -> None:
    # The test CA is not in the system store: without --ca-file nginx's chain is untrusted,
    # with it the same chain (leaf + intermediate) is trusted.
    without = run_check("tls-certificate-untrusted", *HOSTS["nginx"], "https", tls=True)
    assert_finding(without)
    assert without.evidence is not None and without.evidence.facts["chain_length"] == "2"
    assert_passed(run_check("tls-certificate-untrusted", *HOSTS["nginx"], "https", tls=True,
                            options=lab.options))


@pytest.mark.daemon
def test_name_mismatch_grades(lab: Lab) -> None:
    by_name = run_check("tls-certificate-name-mismatch", *HOSTS["wrong-name"], "https",
                        tls=True, hostname="mamori.test")
    assert by_name.confidence is Confidence.CONFIRMED
    by_address = run_check("tls-certificate-name-mismatch", *HOSTS["wrong-name"], "https",
                           tls=True)
    assert_finding(by_address)
    assert by_address.confidence is Confidence.LIKELY
    assert "other.test" in by_address.summary
    # nginx's certificate names its address too: scanning by address passes.
    assert_passed(run_check("tls-certificate-name-mismatch", *HOSTS["nginx"], "https",
                            tls=True))


def test_nothing_listening_is_not_tested() -> None:
    for check_id in ("tls-1-0-accepted", "tls-certificate-expired"):
        result = run_check(check_id, "127.0.66.20", 16420, "https", tls=True)
        assert result.status is CheckStatus.NOT_TESTED, result.summary


# --- pure parts -------------------------------------------------------------------------------


def test_version_hello_offers_exactly_one_version() -> None:
    for name, code in proto.VERSION_CODES.items():
        hello = proto.build_version_hello(code, proto.BROAD_SUITES, "mamori.test")
        assert hello[0] == 0x16 and int.from_bytes(hello[9:11], "big") == code, name
        assert len(hello) == 5 + int.from_bytes(hello[3:5], "big")
        assert b"\x00\x2b" not in hello[45:] or name != "SSLv3"  # no supported_versions
    reply = fc.Sslv3Responder.reply_to(proto.build_version_hello(0x0300, proto.BROAD_SUITES))
    outcome = proto.parse_hello_outcome(reply)
    assert outcome is not None and outcome.accepted and outcome.version_name == "SSLv3"
    refused = proto.parse_hello_outcome(
        fc.Sslv3Responder.reply_to(proto.build_version_hello(0x0303, proto.BROAD_SUITES)))
    assert refused is not None and not refused.accepted and refused.alert == "protocol_version"
    with pytest.raises(ValueError):
        proto.build_version_hello(0x0304, proto.BROAD_SUITES)


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_hello_outcome_parser_never_raises(data: bytes) -> None:
    proto.parse_hello_outcome(data)


@given(st.integers(min_value=0, max_value=60))
def test_truncated_server_hello_is_none(cut: int) -> None:
    full = fc.Sslv3Responder.reply_to(proto.build_version_hello(0x0300, (0x002F,)))
    assert proto.parse_hello_outcome(full[:cut]) is None or cut >= len(full)


def _cert(names: list[str]) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))


@pytest.mark.parametrize("target,ok", [
    ("www.mamori.test", True), ("WWW.Mamori.Test.", True), ("mamori.test", False),
    ("a.b.mamori.test", False), ("evilmamori.test", False), ("127.0.0.1", False),
])
def test_wildcard_matching(target: str, ok: bool) -> None:
    cert = _cert(["*.mamori.test"])
    fields = judge_certificate([cert], [], target, datetime.now(UTC))
    assert fields["name_match"] == ("yes" if ok else "no")
    assert fields["self_signed"] == "yes" and fields["trusted"] == "no"


def test_self_signed_trusted_by_ca_file_is_trusted(tmp_path: Path) -> None:
    cert = _cert(["mamori.test"])
    fields = judge_certificate([cert], [cert], "mamori.test", datetime.now(UTC))
    assert fields["trusted"] == "yes" and fields["self_signed"] == "yes"
